-- API keys: made, checked, rotated and revoked in SQL. Key ids and secrets are
-- random, so this session prints their shape, not their value.
SELECT tenant_id, replayed FROM credits.create_tenant('acme', 'Acme Corp');
-- The whole key is returned once: sx_<key_id>_<secret>. Only sha256(secret) is kept.
SELECT key_id AS scanner_key_id, api_key AS scanner_key
  FROM auth.create_key('acme', 'scanner', ARRAY['consumer'], 'key-scanner', 20, 40) \gset
SELECT length(:'scanner_key') AS key_length, :'scanner_key' LIKE 'sx_' || :'scanner_key_id' || '_%' AS has_id_prefix;
-- A replay answers with the same key id, never the secret again.
SELECT key_id = :'scanner_key_id' AS same_key, api_key IS NULL AS secret_hidden, replayed
  FROM auth.create_key('acme', 'scanner', ARRAY['consumer'], 'key-scanner', 20, 40);
SELECT name, roles, rate_per_s, burst, status, masked = 'sx_' || key_id || '_********' AS masked
  FROM auth.list_keys('acme');
SELECT ok, reason, tenant_id, roles FROM auth.verify(:'scanner_key');
SELECT ok, reason FROM auth.verify('sx_000000000000_' || repeat('0', 64));
-- The token bucket (what the API leases): 40 at once, then 20 per second.
SELECT active, granted FROM auth.take(:'scanner_key_id', 30);
SELECT active, granted FROM auth.take(:'scanner_key_id', 5);
-- Rotate with a 60 s grace period, then revoke the new key.
SELECT api_key AS new_key, key_id AS new_key_id
  FROM auth.rotate_key('acme', :'scanner_key_id', 'rotate-1', 60) \gset
SELECT (SELECT ok FROM auth.verify(:'scanner_key')) AS old_still_ok, (SELECT ok FROM auth.verify(:'new_key')) AS new_ok;
SELECT changed FROM auth.revoke_key('acme', :'new_key_id');
SELECT ok, reason FROM auth.verify(:'new_key');
SELECT reason, key_id IS NOT NULL AS names_a_key, failures FROM auth.failure_counts(60);
\set VERBOSITY terse
SELECT * FROM auth.create_key('acme', 'root', ARRAY['operator'], 'key-root');
\set VERBOSITY sqlstate
SELECT * FROM auth.revoke_key('other', :'scanner_key_id');  -- another tenant's key is unknown: SX304
\set VERBOSITY default
SELECT sqlstate, name, http_status FROM ops.error_codes() WHERE sqlstate BETWEEN 'SX300' AND 'SX399';
