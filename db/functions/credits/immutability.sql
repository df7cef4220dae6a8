-- The journal is append-only. These triggers are ENABLE ALWAYS, so they fire
-- even under session_replication_role = replica; only the table owner (or a
-- superuser) could drop them, and the application role owns nothing.
CREATE OR REPLACE FUNCTION credits._refuse_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  -- Retention (audit.cleanup_old_transactions) archives old entries in a transaction it marks.
  IF TG_OP = 'DELETE' AND current_setting('shieldx.retention_txid', true) = txid_current()::text THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE OR REPLACE TRIGGER entries_append_only
  BEFORE UPDATE OR DELETE ON credits.entries
  FOR EACH STATEMENT EXECUTE FUNCTION credits._refuse_change();
CREATE OR REPLACE TRIGGER entries_no_truncate
  BEFORE TRUNCATE ON credits.entries
  FOR EACH STATEMENT EXECUTE FUNCTION credits._refuse_change();
ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER entries_append_only;
ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER entries_no_truncate;
