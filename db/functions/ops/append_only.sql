-- Append-only tables: one trigger function for every schema. The triggers that
-- use it are ENABLE ALWAYS, so they fire even under session_replication_role =
-- replica; only the table owner (or a superuser) could drop them, and the
-- application role owns nothing and has no write privilege anyway.
-- No session setting opens them. A table whose oldest rows may go has a
-- removal rule instead (ops._make_removable): DELETE passes the BEFORE
-- trigger and an AFTER statement trigger checks every removed row against the
-- rule, refusing the whole statement if one is not covered. For the audit
-- evidence the rule is a retention anchor signed by the audit signer
-- (audit._removal_check, db/functions/audit/immutability.sql).
CREATE OR REPLACE FUNCTION ops._refuse_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % refused', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Removal rule of run histories (records of checks, not evidence): a row may
-- go once the transaction that wrote it is over (TG_ARGV[0] names its
-- timestamp column); never a row of this very transaction, never by UPDATE.
CREATE OR REPLACE FUNCTION ops._removal_aged()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_young bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM gone g WHERE NOT (g.%I < now())', TG_ARGV[0]) INTO v_young;
  IF v_young > 0 THEN
    RAISE EXCEPTION '%.% is append-only: DELETE of % row(s) written by this transaction refused',
      TG_TABLE_SCHEMA, TG_TABLE_NAME, v_young USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NULL;
END
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

-- Make a table append-only with a removal rule: <prefix>append_only refuses
-- UPDATE, <prefix>no_truncate TRUNCATE, and <prefix>removal (AFTER DELETE,
-- per statement, the removed rows as the transition table "gone") runs
-- p_check, which raises unless every removed row is covered. All ENABLE ALWAYS.
CREATE OR REPLACE FUNCTION ops._make_removable(p_table regclass, p_check regprocedure, p_prefix text DEFAULT '',
                                               p_args text[] DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE UPDATE ON %s '
                 'FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change()', p_prefix || 'append_only', p_table);
  EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE TRUNCATE ON %s '
                 'FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change()', p_prefix || 'no_truncate', p_table);
  EXECUTE format('CREATE OR REPLACE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS gone '
                 'FOR EACH STATEMENT EXECUTE FUNCTION %s(%s)', p_prefix || 'removal', p_table,
                 p_check::oid::regproc, (SELECT string_agg(quote_literal(a), ', ') FROM unnest(p_args) a));
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', p_table, p_prefix || 'append_only');
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', p_table, p_prefix || 'no_truncate');
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', p_table, p_prefix || 'removal');
END
$$;
