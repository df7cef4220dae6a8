-- A non-atomic batch of :batch consumes of 1 credit on random accounts, each with a fresh key.
\set r random(1, 999999999999)
SELECT count(*) FROM credits.apply_batch('bench',
  (SELECT jsonb_agg(jsonb_build_object('op', 'consume', 'account_id', 1 + floor(random() * :naccounts)::int,
                                       'amount', 1, 'idempotency_key', 'b' || :client_id || '-' || :r || '-' || g))
     FROM generate_series(1, :batch) g),
  false);
