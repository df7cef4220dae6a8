-- The journal is append-only. These triggers are ENABLE ALWAYS, so they fire
-- even under session_replication_role = replica; only the table owner (or a
-- superuser) could drop them, and the application role owns nothing.
CREATE OR REPLACE TRIGGER entries_append_only
  BEFORE UPDATE OR DELETE ON credits.entries
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
CREATE OR REPLACE TRIGGER entries_no_truncate
  BEFORE TRUNCATE ON credits.entries
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER entries_append_only;
ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER entries_no_truncate;
