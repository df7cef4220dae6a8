-- Key management is the operator's (pg_cron, psql), not the application's.
REVOKE EXECUTE ON FUNCTION vault.rotate_key(text), vault.rotate_key(text, text), vault.reencrypt(int),
  vault.retire_unused_keys() FROM shieldx_app;
