-- The audit trail is append-only: UPDATE, DELETE and TRUNCATE are refused by
-- ENABLE ALWAYS triggers (they fire even under session_replication_role =
-- replica), on top of privileges (nobody but the owner may write at all).
-- The exceptions are retention (audit.cleanup_old_transactions), which
-- removes a chain's oldest entries behind a signed anchor, and pruning the
-- heads of old checkpoints (audit.prune_checkpoint_heads): each marks its own
-- transaction, and verify() checks that every chain starts at its anchor.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit.log', 'audit.checkpoints', 'audit.checkpoint_heads', 'audit.checkpoint_prunes',
                           'audit.anchors', 'credits.entries_archive', 'privacy.erasures'] LOOP
    PERFORM ops._make_append_only(t::regclass);
  END LOOP;
  -- Chain heads move forward (UPDATE) but are never removed.
  CREATE OR REPLACE TRIGGER no_delete BEFORE DELETE OR TRUNCATE ON audit.heads
    FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
  ALTER TABLE audit.heads ENABLE ALWAYS TRIGGER no_delete;
END
$$;
