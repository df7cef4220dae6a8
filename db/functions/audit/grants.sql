-- The auditor reads the trail and runs verification; the application role
-- gets the defaults (execute public functions, read no table).
GRANT SELECT ON ALL TABLES IN SCHEMA audit TO shieldx_auditor;
GRANT EXECUTE ON FUNCTION audit.verify(boolean, boolean, boolean),
  audit.verify_streams(boolean, boolean, text, text, boolean),
  audit.verify_export(jsonb, bytea), audit.verify_journal(), audit.export_checkpoint(bigint), audit.checkpoint(text)
  TO shieldx_auditor;
-- Verification reads credits.entries through SECURITY DEFINER functions only.
-- Retention and key management are the operator's (pg_cron, psql), not the
-- application's: an API key must not be able to age the trail away.
REVOKE EXECUTE ON FUNCTION audit.cleanup_old_transactions(int, int), audit.prune_checkpoint_heads(interval, int)
  FROM shieldx_app;
-- Signing is the signer's (a superuser connection of `shieldx audit sign`).
REVOKE EXECUTE ON FUNCTION audit.register_signing_key(bytea), audit.sign_checkpoint(bigint, text, bytea),
  audit.sign_anchor(text, bigint, text, bytea), audit.rotate_signing_key(bytea, bytea, bigint, bytea, bytea)
  FROM shieldx_app, shieldx_readonly;
