-- Grant, consume and transfer. Every call names itself with an idempotency key.
\i 01_open_accounts.sql
SELECT entry_id, amount, balance_after, seq, replayed
  FROM credits.grant_credits('acme', 1, 1000, 'invoice-2026-11', 'November top-up');
SELECT entry_id, amount, balance_after, seq, replayed
  FROM credits.consume('acme', 1, 25, 'scan-7f3a', 'malware scan');
-- The same key again (a client retry): the original answer, nothing moves.
SELECT entry_id, amount, balance_after, seq, replayed
  FROM credits.consume('acme', 1, 25, 'scan-7f3a', 'malware scan');
SELECT from_account, to_account, amount, from_balance_after, to_balance_after, replayed
  FROM credits.transfer('acme', 1, 2, 200, 'share-reports', 'monthly share');
SELECT account_id, balance, held, available, entry_seq FROM credits.get_account('acme', 1);
-- History, newest first; pass the last seq as p_before for the next page.
SELECT seq, kind, amount, balance_after, idem_key FROM credits.list_entries('acme', 1, NULL, 2);
SELECT seq, kind, amount, balance_after, idem_key FROM credits.list_entries('acme', 1, 2, 2);
