-- The least a journaled debit can cost: the guarded UPDATE and its journal
-- row in one statement; no function, no FK, no CHECKs, no audit (floor.py).
\set id random(1, :naccounts)
\set r random(1, 999999999999)
WITH u AS (UPDATE public.floor_accounts a SET balance = a.balance - 1, entry_seq = a.entry_seq + 1
            WHERE a.account_id = :id AND a.balance - a.held >= 1 RETURNING a.account_id, a.entry_seq, a.balance)
INSERT INTO public.floor_entries (account_id, seq, amount, balance_after, idem_key)
SELECT u.account_id, u.entry_seq, -1, u.balance, 'f' || :client_id || '-' || :r FROM u;
