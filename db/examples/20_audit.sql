-- The audit log: triggers chain every change into per-stream SHA-256 chains;
-- verification recomputes them and names the first broken entry.
\i 01_open_accounts.sql
SELECT seq FROM credits.grant_credits('acme', 1, 1000, 'invoice-2026-11', 'November top-up');
SELECT seq FROM credits.consume('acme', 1, 25, 'scan-7f3a', 'malware scan');
SELECT account_id, status FROM credits.set_account_status('acme', 2, 'frozen');

-- What was logged (a DBA's psql session is audited like an API call).
SELECT stream, seq, source, op, actor FROM audit.log WHERE stream LIKE 'ledger/%' OR op = 'UPDATE'
 ORDER BY stream, seq;
SELECT ok, entries_checked, streams_checked, broken_streams FROM audit.verify();

-- Sign a checkpoint: a Merkle root over every chain head, HMAC with the key file.
SELECT checkpoint_id, streams, entries FROM audit.checkpoint();
SELECT ok, since_checkpoint FROM audit.verify(p_incremental => true);

-- A superuser who edits an entry (after switching the guards off) is named.
UPDATE audit.log SET payload = '{}' WHERE stream = 'ledger/1' AND seq = 2;
ALTER TABLE audit.log DISABLE TRIGGER append_only;
UPDATE audit.log SET payload = replace(payload, '"amount":-25', '"amount":-1') WHERE stream = 'ledger/1' AND seq = 2;
ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only;
SELECT ok, broken_streams, stream, seq, problem FROM audit.verify();
ALTER TABLE audit.log DISABLE TRIGGER append_only;
UPDATE audit.log SET payload = replace(payload, '"amount":-1', '"amount":-25') WHERE stream = 'ledger/1' AND seq = 2;
ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only;
SELECT ok FROM audit.verify();
-- Switching the guard off and on is itself in the log (the DDL watch: a chain per object).
SELECT stream, seq, op, actor, payload::jsonb -> 'added' AS added
  FROM audit.log WHERE stream LIKE 'ddl/%' ORDER BY txid, seq;

-- A top-up by card: the number is encrypted (AES-256-GCM), only the last four digits show.
SELECT entry_id, amount, card, replayed
  FROM vault.top_up('acme', 1, 500, 'card-2026-11', '4242 4242 4242 4242', '12/29', 'Jane Doe', 'subject-jane',
                    '203.0.113.77', 'Mozilla/5.0');
SELECT card, holder, ip_masked FROM vault.get_payment('acme', 3);
SELECT count(*) AS full_card_numbers_in_the_audit_log FROM audit.log WHERE payload LIKE '%4242424242424242%';

-- Erasure destroys the subject's key: the name is gone, the chain still verifies.
SELECT subject_id, payments_affected, replayed FROM privacy.erase_subject('subject-jane', 'gdpr-req-17');
SELECT card, holder, ip_masked FROM vault.get_payment('acme', 3);
SELECT ok FROM audit.verify();
