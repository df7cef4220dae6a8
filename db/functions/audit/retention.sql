-- Retention: cleanup_old_transactions(days) removes journal and audit data
-- older than `days` behind a signed checkpoint, so what remains verifies:
--   1. a 'retention' checkpoint signs every chain's head;
--   2. per chain, entries up to the last one older than the cutoff (and
--      covered by that checkpoint) are removed, and a signed anchor records
--      the last removed entry's (seq, hash): the chain now starts there;
--   3. journal entries of those ledger chains move, unchanged, to
--      credits.entries_archive (credits.reconcile() counts both tables).
-- Safe to run twice or to die midway: one transaction, and a second run finds
-- nothing older than the anchors. A batch limit bounds the transaction.
CREATE OR REPLACE FUNCTION audit.cleanup_old_transactions(p_days int, p_max_streams int DEFAULT 10000,
  OUT checkpoint_id bigint, OUT streams_trimmed bigint, OUT audit_entries_removed bigint,
  OUT journal_entries_archived bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_cutoff timestamptz;
  v_key    text;
  n        bigint;
BEGIN
  IF p_days IS NULL OR p_days < 0 THEN
    PERFORM ops._fail('SX007', 'days must be 0 or more', jsonb_build_object('argument', 'days'));
  END IF;
  v_cutoff := now() - make_interval(days => p_days);
  SELECT c.checkpoint_id INTO checkpoint_id FROM audit.checkpoint('retention') c;
  v_key := vault._current_key_id('audit');
  -- Allow this transaction (only) past the append-only triggers.
  PERFORM ops._allow_removal(true);

  CREATE TEMP TABLE IF NOT EXISTS _trim (stream text COLLATE "C", seq bigint, hash bytea) ON COMMIT DROP;
  TRUNCATE _trim;
  INSERT INTO _trim
  SELECT h.stream, t.seq, t.hash
    FROM audit.checkpoint_heads h
    CROSS JOIN LATERAL (SELECT l.seq, l.hash FROM audit.log l
                         WHERE l.stream = h.stream AND l.seq <= h.seq AND l.logged_at < v_cutoff
                         ORDER BY l.seq DESC LIMIT 1) t
   WHERE h.checkpoint_id = cleanup_old_transactions.checkpoint_id
   ORDER BY h.stream LIMIT p_max_streams;
  GET DIAGNOSTICS streams_trimmed = ROW_COUNT;

  INSERT INTO audit.anchors (stream, seq, hash, checkpoint_id, key_id, sig)
  SELECT t.stream, t.seq, t.hash, cleanup_old_transactions.checkpoint_id, v_key,
         (vault._hmac(v_key, ARRAY[audit._anchor_msg(t.stream, t.seq, t.hash, cleanup_old_transactions.checkpoint_id)])).sigs[1]
    FROM _trim t;
  DELETE FROM audit.log l USING _trim t WHERE l.stream = t.stream AND l.seq <= t.seq;
  GET DIAGNOSTICS audit_entries_removed = ROW_COUNT;
  -- Older anchors of these chains are superseded by the new ones.
  DELETE FROM audit.anchors a USING _trim t WHERE a.stream = t.stream AND a.seq < t.seq;

  WITH moved AS (
    DELETE FROM credits.entries e USING _trim t
     WHERE t.stream LIKE 'ledger/%' AND e.account_id = substr(t.stream, 8)::bigint AND e.seq <= t.seq
    RETURNING e.*)
  INSERT INTO credits.entries_archive SELECT m.* FROM moved m;
  GET DIAGNOSTICS journal_entries_archived = ROW_COUNT;
  PERFORM ops._allow_removal(false);
END
$$;
COMMENT ON FUNCTION audit.cleanup_old_transactions(integer, integer) IS
  'Retention: behind a new signed checkpoint, remove audit entries older than p_days (anchoring each trimmed '
  'chain) and move the matching journal entries to credits.entries_archive, at most p_max_streams chains per '
  'call. Returns the checkpoint and counts; SX007 for an invalid argument. Safe to rerun.';

-- Pruning checkpoint heads. A checkpoint stores every chain's head, and
-- there is a chain per account: 10,000 accounts are 10,000 rows every 15
-- minutes. Verification (full or incremental) needs only the last
-- checkpoint's heads; older ones serve audit.export_checkpoint(id) only. This
-- removes the heads of checkpoints older than the keep window (p_keep, else
-- the setting shieldx.audit_checkpoint_keep, else 1 day), never the last
-- checkpoint's, in checkpoint order, at most p_max_checkpoints at a time, and
-- records how far it got in audit.checkpoint_prunes: exporting a pruned
-- checkpoint then fails with SX207 instead of giving no heads. The
-- checkpoints themselves stay (their signatures chain), and so does the
-- Merkle root each signed: exports taken earlier still verify. The table
-- holds at most (keep window / 15 minutes + 1) x chains rows. One
-- transaction, marked like retention's; safe to run twice or to die midway.
CREATE OR REPLACE FUNCTION audit.prune_checkpoint_heads(p_keep interval DEFAULT NULL, p_max_checkpoints int DEFAULT 100,
  OUT through_checkpoint bigint, OUT checkpoints_pruned bigint, OUT heads_removed bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_keep interval := coalesce(p_keep, nullif(current_setting('shieldx.audit_checkpoint_keep', true), '')::interval,
                              interval '1 day');
  v_from bigint;
BEGIN
  IF v_keep < interval '0' THEN
    PERFORM ops._fail('SX007', 'keep must be 0 or more', jsonb_build_object('argument', 'keep'));
  END IF;
  IF p_max_checkpoints IS NULL OR p_max_checkpoints < 1 THEN
    PERFORM ops._fail('SX007', 'max_checkpoints must be 1 or more', jsonb_build_object('argument', 'max_checkpoints'));
  END IF;
  -- One at a time, and never beside a checkpoint or retention (the same lock).
  PERFORM pg_advisory_xact_lock(hashtext('audit.checkpoint'));
  SELECT coalesce(max(p.through_checkpoint), 0) INTO v_from FROM audit.checkpoint_prunes p;
  -- The checkpoints after the last prune, in order, up to the first one that
  -- is inside the keep window or is the last (ids need not follow created_at).
  SELECT max(x.checkpoint_id), count(*) INTO through_checkpoint, checkpoints_pruned
    FROM (SELECT c.checkpoint_id FROM audit.checkpoints c
           WHERE c.checkpoint_id > v_from
             AND c.checkpoint_id < (SELECT min(k.checkpoint_id) FROM audit.checkpoints k
                                     WHERE k.checkpoint_id > v_from
                                       AND (k.created_at > now() - v_keep
                                            OR k.checkpoint_id = (SELECT max(l.checkpoint_id)
                                                                    FROM audit.checkpoints l)))
           ORDER BY c.checkpoint_id LIMIT p_max_checkpoints) x;
  heads_removed := 0;
  IF through_checkpoint IS NULL THEN  -- nothing (more) to prune
    through_checkpoint := nullif(v_from, 0);
    RETURN;
  END IF;
  PERFORM ops._allow_removal(true);
  DELETE FROM audit.checkpoint_heads h WHERE h.checkpoint_id > v_from AND h.checkpoint_id <= through_checkpoint;
  GET DIAGNOSTICS heads_removed = ROW_COUNT;
  PERFORM ops._allow_removal(false);
  INSERT INTO audit.checkpoint_prunes (through_checkpoint, checkpoints, heads_removed)
  VALUES (through_checkpoint, checkpoints_pruned, heads_removed);
END
$$;
COMMENT ON FUNCTION audit.prune_checkpoint_heads(interval, integer) IS
  'Remove the stored chain heads of checkpoints older than p_keep (default: setting '
  'shieldx.audit_checkpoint_keep, else 1 day), never the last checkpoint''s, at most p_max_checkpoints per call; '
  'the checkpoints and their roots stay. Returns how far it got; SX007 for an invalid argument.';
