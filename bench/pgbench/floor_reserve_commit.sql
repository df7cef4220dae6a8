-- The least a reserve + commit can cost: the hold row and the available
-- balance in one statement, then its capture, the debit and the journal row
-- in another; no function, no FK, no CHECKs, no audit (floor.py).
\set id random(1, :naccounts)
\set r random(1, 999999999999)
WITH u AS (UPDATE public.floor_accounts a SET held = a.held + 1
            WHERE a.account_id = :id AND a.balance - a.held >= 1 RETURNING a.account_id)
INSERT INTO public.floor_holds (account_id, amount, idem_key, expires_at)
SELECT u.account_id, 1, 'h' || :client_id || '-' || :r, now() + interval '5 minutes' FROM u
RETURNING hold_id AS h \gset
WITH h AS (UPDATE public.floor_holds x SET status = 'captured', resolved_at = now()
            WHERE x.hold_id = :h AND x.status = 'active' AND x.expires_at > now() RETURNING x.account_id, x.amount, x.hold_id),
     u AS (UPDATE public.floor_accounts a SET balance = a.balance - h.amount, held = a.held - h.amount,
                  entry_seq = a.entry_seq + 1
             FROM h WHERE a.account_id = h.account_id RETURNING a.account_id, a.entry_seq, a.balance, h.amount, h.hold_id)
INSERT INTO public.floor_entries (account_id, seq, amount, balance_after, idem_key)
SELECT u.account_id, u.entry_seq, -u.amount, u.balance, 'hold:' || u.hold_id FROM u;
