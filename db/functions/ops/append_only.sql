-- Append-only tables: one trigger function for every schema. The triggers that
-- use it are ENABLE ALWAYS, so they fire even under session_replication_role =
-- replica; only the table owner (or a superuser) could drop them, and the
-- application role owns nothing and has no write privilege anyway.
-- The one exception is retention (audit.cleanup_old_transactions, and
-- audit.prune_checkpoint_heads for old checkpoints' heads), which archives or
-- removes the oldest rows in a transaction it marks (ops._allow_removal);
-- audit.verify() checks that every chain starts at its anchor.
CREATE OR REPLACE FUNCTION ops._refuse_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('shieldx.retention_txid', true) = txid_current()::text THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Mark this transaction (p_on) as retention's, which may DELETE from
-- append-only tables, or clear the mark. Only the owner's functions can call
-- this, and only they could write those tables at all.
CREATE OR REPLACE FUNCTION ops._allow_removal(p_on boolean)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT set_config('shieldx.retention_txid', CASE WHEN p_on THEN txid_current()::text ELSE '' END, true);
$$;

-- Make a table append-only: <prefix>append_only refuses UPDATE and DELETE,
-- <prefix>no_truncate refuses TRUNCATE; both ENABLE ALWAYS.
CREATE OR REPLACE FUNCTION ops._make_append_only(p_table regclass, p_prefix text DEFAULT '')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE UPDATE OR DELETE ON %s '
                 'FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change()', p_prefix || 'append_only', p_table);
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE TRUNCATE ON %s '
                 'FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change()', p_prefix || 'no_truncate', p_table);
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', p_table, p_prefix || 'append_only');
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', p_table, p_prefix || 'no_truncate');
END
$$;
