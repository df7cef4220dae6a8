-- Ed25519 signatures by a signer outside PostgreSQL. The signer
-- (`shieldx audit sign`, run by root or a dedicated OS user) holds the
-- private key in a file the server's OS user cannot read, so neither SQL
-- (pg_read_file, PL/Python) nor the `postgres` OS user can sign. It checks a
-- checkpoint before signing it (its heads against its root, every chain from
-- the previous signed checkpoint's head on, entry by entry) and signs its
-- statement; it signs a retention anchor only if the anchored entry is on a
-- signed chain and older than its minimum age. The functions below accept a
-- signature only if it verifies against a registered public key. Verifiers
-- that must hold against a superuser (the CLI, exports, the API with
-- SHIELDX_AUDIT_PUBKEY) pin the public key outside the database: a
-- superuser can register a key of their own, never sign with the signer's.
--
-- Statements (what is signed), all bytes:
--   checkpoint: 'SXE1' || audit._checkpoint_msg(c) || <len>:<hex of prev_signed>
--     prev_signed = SHA-256(statement || signature) of the previous signed
--     checkpoint (lower id), 32 zero bytes for the first: signed checkpoints,
--     and exports of them, form a chain.
--   anchor: 'SXE2' || audit._anchor_msg(stream, seq, hash, checkpoint_id)

CREATE OR REPLACE FUNCTION audit._ed25519_ok(p_public_key bytea, p_msg bytea, p_sig bytea)
RETURNS boolean
LANGUAGE plpython3u IMMUTABLE
AS $py$
if p_public_key is None or p_msg is None or p_sig is None:
    return False
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
keys = SD.setdefault('keys', {})
pub = bytes(p_public_key)
if pub not in keys:
    try:
        keys[pub] = Ed25519PublicKey.from_public_bytes(pub)
    except ValueError:
        return False
try:
    keys[pub].verify(bytes(p_sig), bytes(p_msg))
    return True
except InvalidSignature:
    return False
$py$;

-- A public key's id: 'ed25519:' and the first 16 hex digits of its SHA-256.
CREATE OR REPLACE FUNCTION audit._signing_key_id(p_public_key bytea)
RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
  SELECT 'ed25519:' || left(pg_catalog.encode(pg_catalog.sha256(p_public_key), 'hex'), 16)
$$;

CREATE OR REPLACE FUNCTION audit._checkpoint_statement(c audit.checkpoints, p_prev_signed bytea)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.convert_to('SXE1', 'UTF8') || audit._checkpoint_msg(c)
         || pg_catalog.convert_to(audit._f(pg_catalog.encode(p_prev_signed, 'hex')), 'UTF8')
$$;

CREATE OR REPLACE FUNCTION audit._anchor_statement(p_stream text, p_seq bigint, p_hash bytea, p_checkpoint bigint)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.convert_to('SXE2', 'UTF8') || audit._anchor_msg(p_stream, p_seq, p_hash, p_checkpoint)
$$;

CREATE OR REPLACE FUNCTION audit._zero32()
RETURNS bytea
LANGUAGE sql IMMUTABLE
AS $$
  SELECT '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
$$;

-- The prev_signed a signature of checkpoint p_checkpoint must carry: the
-- hash of the latest signed checkpoint before it (zeros if none).
CREATE OR REPLACE FUNCTION audit._prev_signed(p_checkpoint bigint)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT coalesce((SELECT pg_catalog.sha256(audit._checkpoint_statement(c, s.prev_signed) || s.sig)
                     FROM audit.checkpoint_signatures s JOIN audit.checkpoints c ON c.checkpoint_id = s.checkpoint_id
                    WHERE s.checkpoint_id < p_checkpoint ORDER BY s.checkpoint_id DESC LIMIT 1),
                  audit._zero32())
$$;

-- Does a signature verify: against p_pinned if given (and only if it is that
-- key), else against the registered key it names.
CREATE OR REPLACE FUNCTION audit._sig_ok(p_key_id text, p_msg bytea, p_sig bytea, p_pinned bytea DEFAULT NULL)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
  SELECT CASE WHEN p_pinned IS NOT NULL
              THEN p_key_id = audit._signing_key_id(p_pinned) AND audit._ed25519_ok(p_pinned, p_msg, p_sig)
              ELSE coalesce((SELECT audit._ed25519_ok(k.public_key, p_msg, p_sig)
                               FROM audit.signing_keys k WHERE k.key_id = p_key_id), false) END
$$;

-- Register the signer's public key (32 raw bytes). Idempotent; returns its id.
CREATE OR REPLACE FUNCTION audit.register_signing_key(p_public_key bytea)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_public_key IS NULL OR octet_length(p_public_key) <> 32 THEN
    PERFORM ops._fail('SX007', 'an Ed25519 public key is 32 bytes', jsonb_build_object('argument', 'public_key'));
  END IF;
  INSERT INTO audit.signing_keys (key_id, public_key) VALUES (audit._signing_key_id(p_public_key), p_public_key)
  ON CONFLICT DO NOTHING;
  RETURN audit._signing_key_id(p_public_key);
END
$$;
COMMENT ON FUNCTION audit.register_signing_key(bytea) IS
  'Register the audit signer''s Ed25519 public key (32 bytes); idempotent; returns its key id.';

-- Store the signer's signature of a checkpoint, if it verifies against the
-- registered key it names. Checkpoints are signed in id order: one whose
-- successor is already signed is refused (the chain cannot fork). Idempotent:
-- the same signature again returns false.
CREATE OR REPLACE FUNCTION audit.sign_checkpoint(p_checkpoint bigint, p_key_id text, p_sig bytea)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  c      audit.checkpoints;
  v_prev bytea;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('audit.sign'));
  SELECT * INTO c FROM audit.checkpoints x WHERE x.checkpoint_id = p_checkpoint;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX206', 'no such checkpoint', jsonb_build_object('checkpoint_id', p_checkpoint));
  END IF;
  IF EXISTS (SELECT 1 FROM audit.checkpoint_signatures s WHERE s.checkpoint_id = p_checkpoint AND s.sig = p_sig) THEN
    RETURN false;
  END IF;
  IF EXISTS (SELECT 1 FROM audit.checkpoint_signatures s WHERE s.checkpoint_id >= p_checkpoint) THEN
    PERFORM ops._fail('SX208', format('checkpoint %s is signed already, or a later one is', p_checkpoint),
                      jsonb_build_object('checkpoint_id', p_checkpoint));
  END IF;
  v_prev := audit._prev_signed(p_checkpoint);
  IF NOT audit._sig_ok(p_key_id, audit._checkpoint_statement(c, v_prev), p_sig) THEN
    PERFORM ops._fail('SX208', format('signature of checkpoint %s does not verify with key %s', p_checkpoint, p_key_id),
                      jsonb_build_object('checkpoint_id', p_checkpoint, 'key_id', p_key_id));
  END IF;
  INSERT INTO audit.checkpoint_signatures (checkpoint_id, key_id, prev_signed, sig)
  VALUES (p_checkpoint, p_key_id, v_prev, p_sig);
  RETURN true;
END
$$;
COMMENT ON FUNCTION audit.sign_checkpoint(bigint, text, bytea) IS
  'Store the audit signer''s Ed25519 signature of a checkpoint; refused (SX208) unless it verifies against the '
  'registered key.';

-- Store the signer's signature of a retention anchor (its consent that the
-- chain may start there), if it verifies. Idempotent.
CREATE OR REPLACE FUNCTION audit.sign_anchor(p_stream text, p_seq bigint, p_key_id text, p_sig bytea)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  a audit.anchors;
BEGIN
  SELECT * INTO a FROM audit.anchors x WHERE x.stream = p_stream AND x.seq = p_seq;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX206', 'no such retention anchor', jsonb_build_object('stream', p_stream, 'seq', p_seq));
  END IF;
  IF NOT audit._sig_ok(p_key_id, audit._anchor_statement(a.stream, a.seq, a.hash, a.checkpoint_id), p_sig) THEN
    PERFORM ops._fail('SX208', format('signature of the anchor of %s at %s does not verify with key %s',
                                      p_stream, p_seq, p_key_id),
                      jsonb_build_object('stream', p_stream, 'seq', p_seq, 'key_id', p_key_id));
  END IF;
  INSERT INTO audit.anchor_signatures (stream, seq, key_id, sig) VALUES (p_stream, p_seq, p_key_id, p_sig)
  ON CONFLICT (stream, seq) DO NOTHING;
  RETURN FOUND;
END
$$;
COMMENT ON FUNCTION audit.sign_anchor(text, bigint, text, bytea) IS
  'Store the audit signer''s Ed25519 signature of a retention anchor; refused (SX208) unless it verifies against '
  'the registered key.';

-- Is entry p_seq of a chain covered by a signed retention anchor (at p_seq
-- or later) whose signature verifies against a registered key? What the
-- append-only triggers ask before letting a row go.
CREATE OR REPLACE FUNCTION audit._covered(p_stream text, p_seq bigint)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
  SELECT EXISTS (
    SELECT 1 FROM audit.anchors a JOIN audit.anchor_signatures s ON s.stream = a.stream AND s.seq = a.seq
     WHERE a.stream = p_stream AND a.seq >= p_seq
       AND audit._sig_ok(s.key_id, audit._anchor_statement(a.stream, a.seq, a.hash, a.checkpoint_id), s.sig))
$$;

-- Signature problems, for verify() and verify_export(): every signed
-- checkpoint's signature and chain; every signed anchor's signature; and
-- every anchor a chain starts at (its entries are gone) must be signed. p_pinned: the key to check against
-- (NULL: the registered keys).
CREATE OR REPLACE FUNCTION audit._signature_problems(p_pinned bytea DEFAULT NULL)
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE sql STABLE
AS $$
  SELECT 'checkpoint/' || c.checkpoint_id, c.checkpoint_id, c.created_at,
         CASE WHEN s.prev_signed IS DISTINCT FROM s.expect_prev
              THEN 'signed checkpoints do not chain (a signed checkpoint was removed or replaced)'
              ELSE 'checkpoint signature (Ed25519) does not verify with ' ||
                   CASE WHEN p_pinned IS NULL THEN 'the registered key ' || s.key_id
                        ELSE 'the pinned key ' || audit._signing_key_id(p_pinned) END END
    FROM (SELECT s.*, audit._prev_signed(s.checkpoint_id) AS expect_prev FROM audit.checkpoint_signatures s) s
    JOIN audit.checkpoints c ON c.checkpoint_id = s.checkpoint_id
   WHERE s.prev_signed IS DISTINCT FROM s.expect_prev
      OR NOT audit._sig_ok(s.key_id, audit._checkpoint_statement(c, s.prev_signed), s.sig, p_pinned)
  UNION ALL
  SELECT a.stream::text, a.seq + 1, NULL::timestamptz,
         CASE WHEN s.sig IS NULL THEN 'retention anchor is not signed: entries up to ' || a.seq || ' were removed without the signer''s consent'
              ELSE 'retention anchor signature (Ed25519) does not verify' END
    FROM audit.anchors a
    LEFT JOIN audit.anchor_signatures s ON s.stream = a.stream AND s.seq = a.seq
   WHERE CASE WHEN s.sig IS NULL  -- unsigned: awaiting the signer, a problem only once the chain starts there
              THEN NOT EXISTS (SELECT 1 FROM audit.log l WHERE l.stream = a.stream AND l.seq <= a.seq)
              ELSE NOT audit._sig_ok(s.key_id, audit._anchor_statement(a.stream, a.seq, a.hash, a.checkpoint_id),
                                     s.sig, p_pinned) END
$$;
