-- The same, plus the least a hash-chained audit entry can cost: the previous
-- link (one index probe) and one SHA-256 over the entry (floor.py).
\set id random(1, :naccounts)
\set r random(1, 999999999999)
WITH u AS (UPDATE public.floor_accounts a SET balance = a.balance - 1, entry_seq = a.entry_seq + 1
            WHERE a.account_id = :id AND a.balance - a.held >= 1 RETURNING a.account_id, a.entry_seq, a.balance),
     e AS (INSERT INTO public.floor_entries (account_id, seq, amount, balance_after, idem_key)
           SELECT u.account_id, u.entry_seq, -1, u.balance, 'f' || :client_id || '-' || :r FROM u
           RETURNING account_id, seq, amount, balance_after, idem_key)
INSERT INTO public.floor_log (account_id, seq, prev_hash, hash)
SELECT e.account_id, e.seq, p.h,
       sha256(p.h || convert_to(e.account_id || ':' || e.seq || ':' || e.amount || ':' || e.balance_after || ':'
                                || e.idem_key, 'UTF8'))
  FROM e CROSS JOIN LATERAL (SELECT coalesce((SELECT l.hash FROM public.floor_log l
                                               WHERE l.account_id = e.account_id AND l.seq = e.seq - 1),
                                             '\x00'::bytea) AS h) p;
