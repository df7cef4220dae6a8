-- Verifying the database against a checkpoint exported earlier (a file kept
-- outside the database). The document's own signature is checked with the
-- audit key, its heads against its root; then every exported head must still
-- be in the log with the same hash (or be archived behind a signed anchor).
-- This finds what the in-database checks cannot: a tail truncated together
-- with the checkpoints that covered it, or a rewrite by someone with the key.
CREATE OR REPLACE FUNCTION audit.verify_export(p_doc jsonb,
  OUT ok boolean, OUT checkpoint_id bigint, OUT heads_checked bigint, OUT broken_streams bigint,
  OUT stream text, OUT seq bigint, OUT problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c audit.checkpoints;
  r record;
BEGIN
  IF p_doc IS NULL OR p_doc ->> 'format' IS DISTINCT FROM 'shieldx-audit-checkpoint/1' OR jsonb_typeof(p_doc -> 'heads') <> 'object' THEN
    PERFORM ops._fail('SX206', 'not a shieldx audit checkpoint export', '{}');
  END IF;
  checkpoint_id := (p_doc ->> 'checkpoint_id')::bigint;
  c.checkpoint_id := checkpoint_id;
  c.created_at := to_timestamp((p_doc ->> 'created_at_us')::numeric / 1000000);
  c.reason := p_doc ->> 'reason'; c.streams := (p_doc ->> 'streams')::bigint; c.entries := (p_doc ->> 'entries')::bigint;
  c.root := decode(p_doc ->> 'root', 'hex'); c.prev_sig := decode(nullif(p_doc ->> 'prev_sig', ''), 'hex');
  c.key_id := p_doc ->> 'key_id'; c.sig := decode(p_doc ->> 'sig', 'hex');
  SELECT count(*) INTO heads_checked FROM jsonb_object_keys(p_doc -> 'heads');
  broken_streams := 0;
  IF (vault._hmac(c.key_id, ARRAY[audit._checkpoint_msg(c)])).sigs[1] <> c.sig THEN
    ok := false; broken_streams := 1; stream := 'checkpoint/' || checkpoint_id; seq := checkpoint_id;
    problem := 'exported checkpoint signature is not valid';
    RETURN;
  END IF;
  IF audit._merkle_root(ARRAY(SELECT audit._leaf(j.key, (j.value ->> 0)::bigint, decode(j.value ->> 1, 'hex'))
                                FROM jsonb_each(p_doc -> 'heads') j ORDER BY j.key COLLATE "C")) <> c.root THEN
    ok := false; broken_streams := 1; stream := 'checkpoint/' || checkpoint_id; seq := checkpoint_id;
    problem := 'exported heads do not match the exported root';
    RETURN;
  END IF;
  FOR r IN SELECT * FROM audit._missing_heads(NULL, p_doc -> 'heads') m ORDER BY m.stream LOOP
    IF broken_streams = 0 THEN
      stream := r.stream; seq := r.seq; problem := r.problem;
    END IF;
    broken_streams := broken_streams + 1;
  END LOOP;
  ok := broken_streams = 0;
END
$$;
COMMENT ON FUNCTION audit.verify_export(jsonb) IS
  'Verify the database against a checkpoint document exported earlier: its signature and root, then that every '
  'exported head is still in the log with the same hash (or archived behind a signed anchor). Returns ok, counts '
  'and the first problem; SX206 for a malformed document.';
