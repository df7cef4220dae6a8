-- depends: 0720_idem_keys
-- The keys stored before 0720's triggers existed. In its own transaction, so
-- the triggers (which lock the three tables against writes while they are
-- created) committed first: this reads the tables without blocking writers,
-- and rows stored meanwhile are already in the table (ON CONFLICT skips them).
-- Until the function files that read credits.idem_keys are loaded (after the
-- migrations), the claim still looks in the tables themselves.
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '10min';

INSERT INTO credits.idem_keys (tenant_id, idem_key, op, ref)
SELECT a.tenant_id, a.idem_key, 'account' AS op, a.account_id::text AS ref FROM credits.accounts AS a
UNION ALL
SELECT h.tenant_id, h.idem_key, 'hold' AS op, h.hold_id::text AS ref FROM credits.holds AS h
 WHERE left(h.idem_key, 5) <> 'dist:'
UNION ALL
SELECT k.tenant_id, k.idem_key, 'key' AS op, k.key_id AS ref FROM auth.keys AS k
 WHERE k.tenant_id IS NOT NULL
ON CONFLICT DO NOTHING;
