-- Exceptions to privileges.sql for the auth schema.
-- Operator keys act on every tenant: only a DBA mints or revokes them, never
-- the application role.
REVOKE EXECUTE ON FUNCTION auth.create_operator_key(text, text, double precision, double precision) FROM shieldx_app;
REVOKE EXECUTE ON FUNCTION auth.revoke_operator_key(text) FROM shieldx_app;
-- Read-only DBAs see every key column but the secret's hash.
REVOKE SELECT ON auth.keys FROM shieldx_readonly;
GRANT SELECT (key_id, tenant_id, name, roles, rate_per_s, burst, idem_key, created_at, expires_at, revoked_at,
              replaced_by) ON auth.keys TO shieldx_readonly;
