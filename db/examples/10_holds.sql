-- Reservations (holds) and distributed transactions. A hold counts against
-- available at once; commit captures all or part of it, abort releases it.
\i 02_move_credits.sql
SELECT amount, status, replayed
  FROM credits.reserve('acme', 1, 300, 'render-42', interval '10 minutes', 'render job 42');
SELECT hold_id AS render42 FROM credits.list_holds('acme', 1) \gset
-- A retry of the same key: the same hold, nothing new.
SELECT amount, status, replayed
  FROM credits.reserve('acme', 1, 300, 'render-42', interval '10 minutes', 'render job 42');
SELECT balance, held, available FROM credits.get_account('acme', 1);
-- The job used 180 of the 300: capture 180, the other 120 go back.
SELECT captured, released, balance_after, replayed FROM credits.commit_hold('acme', :render42, 180);
SELECT captured, released, balance_after, replayed FROM credits.commit_hold('acme', :render42, 180);
SELECT seq, kind, amount, balance_after, idem_key FROM credits.list_entries('acme', 1, NULL, 1);
-- Abort (void) another hold; then the illegal moves, each with its own error.
SELECT hold_id AS render43 FROM credits.reserve('acme', 1, 50, 'render-43') \gset
SELECT status, replayed FROM credits.abort_hold('acme', :render43);
\set VERBOSITY verbose
\set SHOW_CONTEXT never
SELECT * FROM credits.commit_hold('acme', :render43);
SELECT * FROM credits.abort_hold('acme', :render42);
SELECT * FROM credits.commit_hold('acme', :render42, 100);
SELECT * FROM credits.commit_hold('acme', 999);
SELECT * FROM credits.reserve('acme', 1, 1000, 'too-big');
\set VERBOSITY default
-- A distributed transaction: debit acme's account 1, credit account 2, all or nothing.
SELECT xid, state, legs, replayed FROM credits.dist_begin('order-7',
  '[{"tenant_id": "acme", "account_id": 1, "amount": -100},
    {"tenant_id": "acme", "account_id": 2, "amount": 100}]', interval '1 minute');
SELECT xid, state, votes_yes, votes_no FROM credits.dist_prepare('order-7');
SELECT xid, state, decision, replayed FROM credits.dist_commit('order-7');
SELECT p.leg_no, p.account_id, p.amount, p.vote, p.outcome
  FROM credits.get_dist_transaction('order-7') AS t, jsonb_to_recordset(t.participants)
       AS p (leg_no int, account_id bigint, amount bigint, vote text, outcome text);
-- The service as a participant of an external coordinator's two-phase commit.
SELECT xid, vote, state FROM credits.ext_prepare('ext-99', '[{"tenant_id": "acme", "account_id": 2, "amount": -40}]');
SELECT xid, state FROM credits.ext_commit('ext-99');
-- Recovery and expiry have nothing to do; both proofs are empty.
SELECT * FROM credits.dist_recover();
SELECT accounts, holds, amount FROM credits.expire_holds();
SELECT * FROM credits.reconcile_holds();
SELECT * FROM credits.reconcile();
SELECT account_id, balance, held, available FROM credits.list_accounts('acme');
SELECT sqlstate, name, http_status FROM ops.error_codes() WHERE sqlstate BETWEEN 'SX100' AND 'SX199';
