-- Verifying the database against a checkpoint exported earlier (a file kept
-- outside the database). The document's Ed25519 signature is checked against
-- p_pubkey, the signer's public key pinned by the caller (the CLI's
-- --pubkey, the API's SHIELDX_AUDIT_PUBKEY), else against the key registered
-- in the database under the document's key id (a convenience: a superuser
-- can register a key of their own). Then its heads against its root; then
-- the database must still hold this signed checkpoint, with every signed
-- checkpoint after it chained to it (a rollback to an older state, or a
-- rewrite of the checkpoints, shows here), every anchor a chain starts at
-- must be signed by that key, and every exported head must still be in the
-- log with the same hash (or be archived behind such an anchor).
-- A verifier pinned to a key from before a rotation passes that key: the
-- export's key must be in its succession (the key transitions, which the
-- export carries and the database must still hold).
-- The version before the pinned key, verify_export(jsonb), is dropped by
-- migration 0700_audit_signatures.

CREATE OR REPLACE FUNCTION audit.verify_export(p_doc jsonb, p_pubkey bytea DEFAULT NULL,
  OUT ok boolean, OUT checkpoint_id bigint, OUT heads_checked bigint, OUT broken_streams bigint,
  OUT stream text, OUT seq bigint, OUT problem text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c      audit.checkpoints;
  r      record;
  v_key  text;
  v_prev bytea;
  v_sig  bytea;
  v_pub  bytea;
BEGIN
  IF p_doc IS NULL OR p_doc ->> 'format' IS DISTINCT FROM 'shieldx-audit-checkpoint/1' OR jsonb_typeof(p_doc -> 'heads') <> 'object' THEN
    PERFORM ops._fail('SX206', 'not a shieldx audit checkpoint export', '{}');
  END IF;
  IF p_pubkey IS NOT NULL AND octet_length(p_pubkey) <> 32 THEN
    PERFORM ops._fail('SX007', 'an Ed25519 public key is 32 bytes', jsonb_build_object('argument', 'pubkey'));
  END IF;
  checkpoint_id := (p_doc ->> 'checkpoint_id')::bigint;
  c.checkpoint_id := checkpoint_id;
  c.created_at := to_timestamp((p_doc ->> 'created_at_us')::numeric / 1000000);
  c.reason := p_doc ->> 'reason'; c.streams := (p_doc ->> 'streams')::bigint; c.entries := (p_doc ->> 'entries')::bigint;
  c.root := decode(p_doc ->> 'root', 'hex'); c.prev_sig := decode(nullif(p_doc ->> 'prev_sig', ''), 'hex');
  c.key_id := p_doc ->> 'key_id'; c.sig := decode(p_doc ->> 'sig', 'hex');
  SELECT count(*) INTO heads_checked FROM jsonb_object_keys(p_doc -> 'heads');
  broken_streams := 1; ok := false; stream := 'checkpoint/' || checkpoint_id; seq := checkpoint_id;
  v_key := p_doc #>> '{signature,key_id}';
  v_prev := decode(p_doc #>> '{signature,prev_signed}', 'hex');
  v_sig := decode(p_doc #>> '{signature,sig}', 'hex');
  IF v_key IS NULL OR v_prev IS NULL OR v_sig IS NULL THEN
    problem := 'exported checkpoint is not signed by the audit signer (Ed25519)';
    RETURN;
  END IF;
  -- The pinned key, or a key of its succession (key transitions, audit._trusted_keys).
  SELECT k.public_key INTO v_pub FROM audit._trusted_keys(p_pubkey) k WHERE k.key_id = v_key;
  IF p_pubkey IS NOT NULL AND v_pub IS NULL THEN
    problem := format('exported checkpoint is signed by key %s, not by the pinned key %s nor by a key it handed over to',
                      v_key, audit._signing_key_id(p_pubkey));
    RETURN;
  END IF;
  IF v_pub IS NULL OR NOT audit._ed25519_ok(v_pub, audit._checkpoint_statement(c, v_prev), v_sig) THEN
    problem := 'exported checkpoint signature (Ed25519) does not verify with '
               || CASE WHEN p_pubkey IS NULL THEN 'the registered key ' || v_key ELSE 'the pinned key' END;
    RETURN;
  END IF;
  IF audit._merkle_root(ARRAY(SELECT audit._leaf(j.key, (j.value ->> 0)::bigint, decode(j.value ->> 1, 'hex'))
                                FROM jsonb_each(p_doc -> 'heads') j ORDER BY j.key COLLATE "C")) <> c.root THEN
    problem := 'exported heads do not match the exported root';
    RETURN;
  END IF;
  broken_streams := 0; stream := NULL; seq := NULL;
  FOR r IN SELECT 'checkpoint/' || verify_export.checkpoint_id AS stream, verify_export.checkpoint_id AS seq,
                  NULL::timestamptz AS logged_at,
                  format('the database no longer holds signed checkpoint %s as exported (rolled back or replaced)',
                         verify_export.checkpoint_id) AS problem
            WHERE NOT EXISTS (SELECT 1 FROM audit.checkpoint_signatures s
                               WHERE s.checkpoint_id = verify_export.checkpoint_id AND s.sig = v_sig
                                 AND s.prev_signed = v_prev)
           UNION ALL SELECT 'key-transition/' || (j.value ->> 'transition_id'), (j.value ->> 'transition_id')::bigint,
                            NULL::timestamptz,
                            format('the database no longer holds key transition %s as exported',
                                   j.value ->> 'transition_id')
                       FROM jsonb_array_elements(coalesce(p_doc -> 'transitions', '[]')) j
                      WHERE NOT EXISTS (SELECT 1 FROM audit.key_transitions t
                                         WHERE t.transition_id = (j.value ->> 'transition_id')::bigint
                                           AND t.sig = decode(j.value ->> 'sig', 'hex')
                                           AND t.new_sig = decode(j.value ->> 'new_sig', 'hex'))
           UNION ALL SELECT * FROM audit._signature_problems(p_pubkey) p
           UNION ALL SELECT * FROM audit._missing_heads(NULL, p_doc -> 'heads', p_pubkey) m
           ORDER BY 1, 2 LOOP
    IF broken_streams = 0 THEN
      stream := r.stream; seq := r.seq; problem := r.problem;
    END IF;
    broken_streams := broken_streams + 1;
  END LOOP;
  ok := broken_streams = 0;
END
$$;
COMMENT ON FUNCTION audit.verify_export(jsonb, bytea) IS
  'Verify the database against a checkpoint document exported earlier: its Ed25519 signature (against p_pubkey, '
  'else the registered signer key), its root, that the database still holds that signed checkpoint and its '
  'successors chained to it, and that every exported head is still in the log with the same hash (or archived '
  'behind a signed anchor). Returns ok, counts and the first problem; SX206 for a malformed document.';
