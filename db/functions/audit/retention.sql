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
  PERFORM set_config('shieldx.retention_txid', txid_current()::text, true);

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
  PERFORM set_config('shieldx.retention_txid', '', true);
END
$$;
