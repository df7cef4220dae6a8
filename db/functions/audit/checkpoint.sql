-- Checkpoints: every chain's head (stream, seq, hash), a Merkle root over
-- them, and an HMAC-SHA256 signature (audit keyring, outside the database)
-- over the root, the counts and the previous checkpoint's signature. The
-- signature makes a rewrite of the log by someone without the key visible;
-- an exported copy (shieldx audit checkpoint export) makes even a truncation
-- or a rewrite by someone WITH the key visible.

-- Every chain's last entry: a loose index scan, one probe per chain.
CREATE OR REPLACE FUNCTION audit._heads()
RETURNS TABLE (stream text, seq bigint, hash bytea)
LANGUAGE sql STABLE
AS $$
  WITH RECURSIVE s(stream) AS (
    SELECT min(l.stream) FROM audit.log l
    UNION ALL
    SELECT (SELECT min(l.stream) FROM audit.log l WHERE l.stream > s.stream) FROM s WHERE s.stream IS NOT NULL)
  SELECT s.stream, h.seq, h.hash
    FROM s CROSS JOIN LATERAL (SELECT l.seq, l.hash FROM audit.log l WHERE l.stream = s.stream
                                ORDER BY l.seq DESC LIMIT 1) h
   WHERE s.stream IS NOT NULL
$$;

-- Merkle leaf of one head; the root is computed by audit._merkle_root.
CREATE OR REPLACE FUNCTION audit._leaf(p_stream text, p_seq bigint, p_hash bytea)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT pg_catalog.sha256('\x00'::bytea || pg_catalog.convert_to('SXL1' || audit._f(p_stream) || audit._f(p_seq::text), 'UTF8')
                           || p_hash)
$$;

-- Binary Merkle tree over the leaves in stream order (C collation); an odd
-- node is promoted unchanged. The empty tree's root is SHA-256('').
CREATE OR REPLACE FUNCTION audit._merkle_root(p_leaves bytea[])
RETURNS bytea
LANGUAGE plpython3u IMMUTABLE
AS $py$
import hashlib
level = [bytes(x) for x in (p_leaves or [])]
if not level:
    return hashlib.sha256(b'').digest()
while len(level) > 1:
    nxt = [hashlib.sha256(b'\x01' + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        nxt.append(level[-1])
    level = nxt
return level[0]
$py$;

-- What a checkpoint's signature covers.
CREATE OR REPLACE FUNCTION audit._checkpoint_msg(c audit.checkpoints)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.convert_to('SXC1' || audit._f(c.checkpoint_id::text) || audit._f(audit._micros(c.created_at)::text)
      || audit._f(c.reason) || audit._f(c.streams::text) || audit._f(c.entries::text)
      || audit._f(encode(c.root, 'hex')) || audit._f(encode(c.prev_sig, 'hex')) || audit._f(c.key_id), 'UTF8')
$$;

CREATE OR REPLACE FUNCTION audit._anchor_msg(p_stream text, p_seq bigint, p_hash bytea, p_checkpoint bigint)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.convert_to('SXN1' || audit._f(p_stream) || audit._f(p_seq::text) || audit._f(encode(p_hash, 'hex'))
                               || audit._f(p_checkpoint::text), 'UTF8')
$$;

-- Take a signed checkpoint. One at a time (a transaction-level advisory lock).
CREATE OR REPLACE FUNCTION audit.checkpoint(p_reason text DEFAULT 'manual')
RETURNS TABLE (checkpoint_id bigint, created_at timestamptz, streams bigint, entries bigint, root text, key_id text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c audit.checkpoints;
  v_streams text[];
  v_seqs    bigint[];
  v_hashes  bytea[];
BEGIN
  IF p_reason IS NULL OR p_reason NOT IN ('periodic', 'manual', 'retention') THEN
    PERFORM ops._fail('SX007', 'reason must be periodic, manual or retention', jsonb_build_object('argument', 'reason'));
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('audit.checkpoint'));
  SELECT array_agg(h.stream ORDER BY h.stream), array_agg(h.seq ORDER BY h.stream), array_agg(h.hash ORDER BY h.stream)
    INTO v_streams, v_seqs, v_hashes FROM audit._heads() h;
  c.checkpoint_id := nextval(pg_get_serial_sequence('audit.checkpoints', 'checkpoint_id'));
  c.created_at := now();
  c.reason := p_reason;
  c.streams := coalesce(cardinality(v_streams), 0);
  c.entries := coalesce((SELECT sum(x) FROM unnest(v_seqs) x), 0);
  c.root := audit._merkle_root(ARRAY(SELECT audit._leaf(v_streams[i], v_seqs[i], v_hashes[i])
                                       FROM generate_series(1, c.streams::int) i ORDER BY i));
  SELECT x.sig INTO c.prev_sig FROM audit.checkpoints x ORDER BY x.checkpoint_id DESC LIMIT 1;
  c.key_id := vault._current_key_id('audit');
  SELECT s.sigs[1] INTO c.sig FROM vault._hmac(c.key_id, ARRAY[audit._checkpoint_msg(c)]) s;
  INSERT INTO audit.checkpoints OVERRIDING SYSTEM VALUE SELECT c.*;
  INSERT INTO audit.checkpoint_heads (checkpoint_id, stream, seq, hash)
  SELECT c.checkpoint_id, v_streams[i], v_seqs[i], v_hashes[i] FROM generate_series(1, c.streams::int) i;
  RETURN QUERY SELECT c.checkpoint_id, c.created_at, c.streams, c.entries, encode(c.root, 'hex'), c.key_id;
END
$$;
COMMENT ON FUNCTION audit.checkpoint(text) IS
  'Sign a checkpoint: the HMAC, under the current audit key, of a Merkle root over every audit chain''s head (one '
  'checkpoint at a time). p_reason labels it (''manual'', ''periodic'', ''retention''). Returns the checkpoint''s '
  'id, counts, root and key id; SX007 for an invalid reason, SX202 when the audit key is unavailable.';

-- A signed checkpoint as a document to keep outside the database: its
-- fields, its heads, and the signer's Ed25519 signature with the hash of the
-- previous signed checkpoint's statement (prev_signed), so every export names
-- the one before it. Without an id: the latest signed checkpoint. A
-- checkpoint the signer has not signed yet cannot be exported (SX206).
CREATE OR REPLACE FUNCTION audit.export_checkpoint(p_checkpoint bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c audit.checkpoints;
  s audit.checkpoint_signatures;
BEGIN
  SELECT * INTO c FROM audit.checkpoints x
   WHERE (p_checkpoint IS NULL AND EXISTS (SELECT 1 FROM audit.checkpoint_signatures y WHERE y.checkpoint_id = x.checkpoint_id))
      OR x.checkpoint_id = p_checkpoint
   ORDER BY x.checkpoint_id DESC LIMIT 1;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX206', CASE WHEN p_checkpoint IS NULL THEN 'no signed checkpoint yet (run the signer: shieldx audit sign)'
                                    ELSE 'no such checkpoint' END,
                      jsonb_build_object('checkpoint_id', p_checkpoint));
  END IF;
  SELECT * INTO s FROM audit.checkpoint_signatures x WHERE x.checkpoint_id = c.checkpoint_id;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX206', format('checkpoint %s is not signed yet (run the signer: shieldx audit sign)', c.checkpoint_id),
                      jsonb_build_object('checkpoint_id', c.checkpoint_id));
  END IF;
  IF EXISTS (SELECT 1 FROM audit.checkpoint_prunes p WHERE p.through_checkpoint >= c.checkpoint_id) THEN
    PERFORM ops._fail('SX207', format('the chain heads of checkpoint %s were pruned (older than the keep window); '
                                      'export a newer checkpoint', c.checkpoint_id),
                      jsonb_build_object('checkpoint_id', c.checkpoint_id));
  END IF;
  RETURN jsonb_build_object(
    'format', 'shieldx-audit-checkpoint/1', 'database', current_database(),
    'checkpoint_id', c.checkpoint_id, 'created_at_us', audit._micros(c.created_at), 'created_at', c.created_at,
    'reason', c.reason, 'streams', c.streams, 'entries', c.entries, 'root', encode(c.root, 'hex'),
    'prev_sig', encode(c.prev_sig, 'hex'), 'key_id', c.key_id, 'sig', encode(c.sig, 'hex'),
    'signature', jsonb_build_object('alg', 'ed25519', 'key_id', s.key_id, 'prev_signed', encode(s.prev_signed, 'hex'),
                                    'sig', encode(s.sig, 'hex')),
    -- Every key transition before it: a verifier pinned to an older key follows them to this signature's key.
    'transitions', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                              'transition_id', t.transition_id, 'after_checkpoint', t.after_checkpoint,
                              'from_key_id', t.from_key_id, 'from_public_key', encode(f.public_key, 'hex'),
                              'to_key_id', t.to_key_id, 'to_public_key', encode(n.public_key, 'hex'),
                              'compromised_since', t.compromised_since, 'prev_signed', encode(t.prev_signed, 'hex'),
                              'sig', encode(t.sig, 'hex'), 'new_sig', encode(t.new_sig, 'hex'))
                            ORDER BY t.after_checkpoint, t.transition_id), '[]')
                      FROM audit.key_transitions t
                      JOIN audit.signing_keys f ON f.key_id = t.from_key_id
                      JOIN audit.signing_keys n ON n.key_id = t.to_key_id
                     WHERE t.after_checkpoint < c.checkpoint_id),
    'heads', (SELECT coalesce(jsonb_object_agg(h.stream, jsonb_build_array(h.seq, encode(h.hash, 'hex'))), '{}')
                FROM audit.checkpoint_heads h WHERE h.checkpoint_id = c.checkpoint_id));
END
$$;
COMMENT ON FUNCTION audit.export_checkpoint(bigint) IS
  'A checkpoint (default: the latest) as a JSON document to keep outside the database: its signature, root and '
  'every chain head it covered. SX206 for an unknown checkpoint, SX207 when its heads were pruned.';
