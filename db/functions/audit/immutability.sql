-- The audit trail is append-only: UPDATE, DELETE and TRUNCATE are refused by
-- ENABLE ALWAYS triggers (they fire even under session_replication_role =
-- replica), on top of privileges (nobody but the owner may write at all).
-- The exceptions are removal rules checked row by row, never a session
-- setting: retention (audit.cleanup_old_transactions) removes a chain's
-- oldest entries only behind a retention anchor the audit signer signed,
-- superseded anchors go once a later signed anchor covers them, and
-- checkpoint heads (audit.prune_checkpoint_heads) only those of checkpoints
-- older than the last signed one. verify() checks every chain starts at a
-- signed anchor.

-- The removal rule of the audit evidence, the journal included: an AFTER
-- DELETE statement trigger over the removed rows ("gone"). Refuses the whole
-- statement, naming the first row not covered.
CREATE OR REPLACE FUNCTION audit._removal_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_table  text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
  v_stream text;
  v_seq    bigint;
  v_last   bigint;
BEGIN
  CASE v_table
    WHEN 'audit.log' THEN
      SELECT g.stream, g.seq INTO v_stream, v_seq
        FROM (SELECT x.stream, max(x.seq) AS seq FROM gone x GROUP BY x.stream) g
       WHERE NOT audit._covered(g.stream, g.seq) ORDER BY 1 LIMIT 1;
    WHEN 'credits.entries' THEN
      SELECT 'ledger/' || g.account_id, g.seq INTO v_stream, v_seq
        FROM (SELECT x.account_id, max(x.seq) AS seq FROM gone x GROUP BY x.account_id) g
       WHERE NOT audit._covered('ledger/' || g.account_id, g.seq) ORDER BY 1 LIMIT 1;
    WHEN 'audit.anchors', 'audit.anchor_signatures' THEN  -- superseded by a later signed anchor
      SELECT g.stream, g.seq INTO v_stream, v_seq
        FROM (SELECT x.stream, max(x.seq) AS seq FROM gone x GROUP BY x.stream) g
       WHERE NOT audit._covered(g.stream, g.seq + 1) ORDER BY 1 LIMIT 1;
    WHEN 'audit.checkpoint_heads' THEN  -- heads of checkpoints older than the last validly signed one
      SELECT max(s.checkpoint_id) INTO v_last
        FROM audit.checkpoint_signatures s JOIN audit.checkpoints c ON c.checkpoint_id = s.checkpoint_id
       WHERE audit._sig_ok(s.key_id, audit._checkpoint_statement(c, s.prev_signed), s.sig);
      SELECT 'checkpoint/' || g.checkpoint_id, g.checkpoint_id INTO v_stream, v_seq
        FROM (SELECT max(x.checkpoint_id) AS checkpoint_id FROM gone x) g
       WHERE g.checkpoint_id >= coalesce(v_last, 0);
    ELSE
      v_stream := v_table; v_seq := 0;
  END CASE;
  IF v_stream IS NOT NULL THEN
    RAISE EXCEPTION '%.% is append-only: DELETE refused: % up to % is not covered by a retention anchor the audit signer signed',
      TG_TABLE_SCHEMA, TG_TABLE_NAME, v_stream, v_seq
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = jsonb_build_object('table', v_table, 'stream', v_stream, 'seq', v_seq)::text;
  END IF;
  RETURN NULL;
END
$$;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit.checkpoints', 'audit.checkpoint_prunes', 'audit.checkpoint_signatures',
                           'audit.signing_keys', 'audit.key_transitions', 'credits.entries_archive',
                           'privacy.erasures', 'privacy.epochs'] LOOP
    PERFORM ops._make_append_only(t::regclass);
  END LOOP;
  FOREACH t IN ARRAY ARRAY['audit.log', 'audit.anchors', 'audit.anchor_signatures', 'audit.checkpoint_heads'] LOOP
    PERFORM ops._make_removable(t::regclass, 'audit._removal_check()'::regprocedure);
  END LOOP;
  -- Chain heads move forward (UPDATE) but are never removed.
  CREATE OR REPLACE TRIGGER no_delete BEFORE DELETE OR TRUNCATE ON audit.heads
    FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
  ALTER TABLE audit.heads ENABLE ALWAYS TRIGGER no_delete;
END
$$;
