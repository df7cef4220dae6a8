-- Which tables are audited, and how. Attached only to tables that exist, so
-- tables other domains add later (holds, distributed transactions, shadow
-- deployments) get their trigger on the next `shieldx db migrate`. Every audit
-- trigger is ENABLE ALWAYS: it fires even under session_replication_role = replica.
DROP FUNCTION IF EXISTS audit._attach(text, text, text, text[]);  -- the signature before p_locked_by
-- p_locked_by names a column whose row lock every writer of this table holds
-- until commit (see audit._log_row_keyed): the chain is then per value of it.
CREATE OR REPLACE FUNCTION audit._attach(p_table text, p_when text DEFAULT NULL, p_events text DEFAULT NULL,
                                         p_omit text[] DEFAULT '{}', p_locked_by text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_rel regclass := to_regclass(p_table);
  v_key text;
  v_args text;
BEGIN
  IF v_rel IS NULL THEN
    RETURN false;
  END IF;
  -- The chain is picked by the first primary-key column (a row's history stays in one chain).
  SELECT a.attname INTO v_key
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
   WHERE i.indrelid = v_rel AND i.indisprimary;
  SELECT string_agg(quote_literal(x), ', ') INTO v_args FROM unnest(coalesce(p_locked_by, v_key, '') || p_omit) x;
  EXECUTE format('CREATE OR REPLACE TRIGGER audit_log AFTER %s ON %s FOR EACH ROW %s EXECUTE FUNCTION audit.%s(%s)',
                 coalesce(p_events, 'INSERT OR UPDATE OR DELETE'), v_rel,
                 CASE WHEN p_when IS NOT NULL THEN 'WHEN (' || p_when || ')' ELSE '' END,
                 CASE WHEN p_locked_by IS NULL THEN '_log_row' ELSE '_log_row_keyed' END, v_args);
  EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER audit_log', v_rel);
  RETURN true;
END
$$;

-- The ledger: one entry per journal row, in its account's chain, by a row
-- trigger, or once per statement from its transition table when the
-- statement says it writes many rows (shieldx.ledger_bulk = 'on'): see
-- audit._log_ledger_row. Both fire, and exactly one of them writes.
CREATE OR REPLACE TRIGGER audit_log AFTER INSERT ON credits.entries
  FOR EACH ROW EXECUTE FUNCTION audit._log_ledger_row();
CREATE OR REPLACE TRIGGER audit_log_bulk AFTER INSERT ON credits.entries
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION audit._log_ledger();
ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER audit_log;
ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER audit_log_bulk;

-- Accounts: opened, renamed, frozen, closed. Not balance updates: each of
-- those is a journal entry, already logged above.
-- One chain per account: the changed row itself is the lock that orders them.
CREATE OR REPLACE TRIGGER audit_log_open AFTER INSERT OR DELETE ON credits.accounts
  FOR EACH ROW EXECUTE FUNCTION audit._log_row_keyed('account_id');
CREATE OR REPLACE TRIGGER audit_log AFTER UPDATE OF status, name ON credits.accounts
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.name IS DISTINCT FROM NEW.name)
  EXECUTE FUNCTION audit._log_row_keyed('account_id');
ALTER TABLE credits.accounts ENABLE ALWAYS TRIGGER audit_log_open;
ALTER TABLE credits.accounts ENABLE ALWAYS TRIGGER audit_log;

SELECT audit._attach('credits.tenants');
SELECT audit._attach('credits.holds', p_locked_by => 'account_id');  -- every hold change updates its account first
SELECT audit._attach('credits.dist_transactions');
SELECT audit._attach('credits.dist_participants');
SELECT audit._attach('shadow.deployment_events');
SELECT audit._attach('vault.keys');                 -- key rotations and retirements
SELECT audit._attach('vault.payments');             -- ciphertexts and last four digits only
SELECT audit._attach('privacy.subject_keys', NULL, NULL, '{wrapped}');  -- never the key itself
SELECT audit._attach('privacy.erasures');
SELECT audit._attach('privacy.epochs');             -- subject master key epochs (erasure made final)
SELECT audit._attach('audit.signing_keys');         -- the signer's public keys registered
SELECT audit._attach('audit.key_transitions');      -- the signer's key rotations
