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
--   key transition: 'SXE3' || 'SXK1' || <len>:<hex of the old public key>
--     || <len>:<hex of the new public key> || <len>:<compromised_since, '-' if
--     none> || <len>:<after_checkpoint> || <len>:<hex of prev_signed>, signed by
--     the old key (sig) and by the new one (new_sig); its hash in the chain is
--     SHA-256(statement || sig || new_sig).
--
-- Key rotation. Signed statements (checkpoint signatures and key transitions)
-- form one chain: a checkpoint signature sits at its checkpoint id, a
-- transition right after the signed checkpoint it follows (after_checkpoint),
-- and each statement's prev_signed is the hash of the one before. The key in
-- force is the first key until a transition, then the transition's new key:
-- every checkpoint is signed by the key in force, and only the key in force
-- can hand over. A verifier pinned to any key of that succession trusts the
-- whole succession: the keys after its pin because a trusted key handed over
-- to them, the keys before it because its own signature (the countersignature
-- of the transition to it, or a checkpoint) covers the chain before it. A
-- statement signed by a key outside the succession (an unannounced key), or a
-- transition signed by a key not in force, is refused. Retention anchors are
-- not chained: an anchor's signature counts only from a trusted key, on a
-- checkpoint no later than the one the key handed over after (a retired key
-- cannot consent to new deletions), and no later than compromised_since if
-- the transition revoked it.

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

CREATE OR REPLACE FUNCTION audit._transition_statement(p_from bytea, p_to bytea, p_compromised_since bigint,
                                                       p_after bigint, p_prev_signed bytea)
RETURNS bytea
LANGUAGE sql IMMUTABLE
AS $$
  SELECT pg_catalog.convert_to('SXE3SXK1' || audit._f(pg_catalog.encode(p_from, 'hex'))
                               || audit._f(pg_catalog.encode(p_to, 'hex')) || audit._f(p_compromised_since::text)
                               || audit._f(p_after::text) || audit._f(pg_catalog.encode(p_prev_signed, 'hex')), 'UTF8')
$$;

-- A stored transition's statement (the public keys as registered) and its hash in the chain.
CREATE OR REPLACE FUNCTION audit._transition_statement(t audit.key_transitions)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT audit._transition_statement((SELECT k.public_key FROM audit.signing_keys k WHERE k.key_id = t.from_key_id),
                                     (SELECT k.public_key FROM audit.signing_keys k WHERE k.key_id = t.to_key_id),
                                     t.compromised_since, t.after_checkpoint, t.prev_signed)
$$;

CREATE OR REPLACE FUNCTION audit._transition_hash(t audit.key_transitions)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT pg_catalog.sha256(audit._transition_statement(t) || t.sig || t.new_sig)
$$;

-- The prev_signed a signature of checkpoint p_checkpoint must carry: the
-- hash of the latest signed statement before it in the chain, a checkpoint
-- signature or a key transition (zeros if none).
CREATE OR REPLACE FUNCTION audit._prev_signed(p_checkpoint bigint)
RETURNS bytea
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(CASE WHEN t.h IS NOT NULL AND t.after_checkpoint >= coalesce(c.checkpoint_id, 0) THEN t.h
                       ELSE c.h END,
                  audit._zero32())
    FROM (SELECT 1) o
    LEFT JOIN (SELECT s.checkpoint_id, pg_catalog.sha256(audit._checkpoint_statement(x, s.prev_signed) || s.sig) AS h
                 FROM audit.checkpoint_signatures s JOIN audit.checkpoints x ON x.checkpoint_id = s.checkpoint_id
                WHERE s.checkpoint_id < p_checkpoint ORDER BY s.checkpoint_id DESC LIMIT 1) c ON true
    LEFT JOIN (SELECT t.after_checkpoint, audit._transition_hash(t) AS h FROM audit.key_transitions t
                WHERE t.after_checkpoint < p_checkpoint
                ORDER BY t.after_checkpoint DESC, t.transition_id DESC LIMIT 1) t ON true
$$;

-- The key in force: the new key of the last transition (NULL before any:
-- then the key of the signed checkpoints, or any registered key).
CREATE OR REPLACE FUNCTION audit._key_in_force()
RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT coalesce((SELECT t.to_key_id FROM audit.key_transitions t ORDER BY t.transition_id DESC LIMIT 1),
                  (SELECT s.key_id FROM audit.checkpoint_signatures s ORDER BY s.checkpoint_id DESC LIMIT 1))
$$;

-- The keys a verifier pinned to p_pinned trusts (NULL: the database's own
-- view, starting from the first key of the succession, or every registered
-- key if no transition was ever made), with the last checkpoint on which each
-- may sign a retention anchor (NULL: any). The succession stops at the first
-- transition not signed by the key in force or whose signatures do not
-- verify; if p_pinned is not in it, only p_pinned itself is.
CREATE OR REPLACE FUNCTION audit._trusted_keys(p_pinned bytea DEFAULT NULL)
RETURNS TABLE (key_id text, public_key bytea, anchors_through bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  t        record;
  v_keys   text[] := '{}';
  v_pubs   bytea[] := '{}';
  v_thru   bigint[] := '{}';
  v_pin    text := audit._signing_key_id(p_pinned);
  v_first  boolean := true;
BEGIN
  FOR t IN SELECT x.*, f.public_key AS from_pub, n.public_key AS to_pub, audit._transition_statement(x) AS msg
             FROM audit.key_transitions x
             JOIN audit.signing_keys f ON f.key_id = x.from_key_id
             JOIN audit.signing_keys n ON n.key_id = x.to_key_id
            ORDER BY x.after_checkpoint, x.transition_id LOOP
    IF v_first THEN
      v_keys := ARRAY[t.from_key_id]; v_pubs := ARRAY[t.from_pub]; v_thru := ARRAY[NULL::bigint];
      v_first := false;
    END IF;
    EXIT WHEN t.from_key_id <> v_keys[cardinality(v_keys)]
           OR NOT audit._ed25519_ok(t.from_pub, t.msg, t.sig) OR NOT audit._ed25519_ok(t.to_pub, t.msg, t.new_sig);
    v_thru[cardinality(v_thru)] := least(t.after_checkpoint, t.compromised_since);
    v_keys := v_keys || t.to_key_id; v_pubs := v_pubs || t.to_pub; v_thru := v_thru || NULL::bigint;
  END LOOP;
  IF v_first THEN  -- no transition: one key
    IF p_pinned IS NOT NULL THEN
      RETURN QUERY SELECT v_pin, p_pinned, NULL::bigint;
    ELSE
      RETURN QUERY SELECT k.key_id, k.public_key, NULL::bigint FROM audit.signing_keys k;
    END IF;
    RETURN;
  END IF;
  IF p_pinned IS NOT NULL AND NOT (v_pin = ANY (v_keys)
                                   AND p_pinned = v_pubs[array_position(v_keys, v_pin)]) THEN
    RETURN QUERY SELECT v_pin, p_pinned, NULL::bigint;  -- outside the succession: only its own signatures
    RETURN;
  END IF;
  RETURN QUERY SELECT k.key_id, k.public_key, k.thru FROM unnest(v_keys, v_pubs, v_thru) k(key_id, public_key, thru);
END
$$;

-- Does a retention anchor's signature count: by a trusted key (p_pinned's
-- view), on a checkpoint that key could still consent on.
CREATE OR REPLACE FUNCTION audit._anchor_sig_ok(a audit.anchors, p_key_id text, p_sig bytea,
                                                p_pinned bytea DEFAULT NULL)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
  SELECT EXISTS (SELECT 1 FROM audit._trusted_keys(p_pinned) k
                  WHERE k.key_id = p_key_id AND (k.anchors_through IS NULL OR a.checkpoint_id <= k.anchors_through)
                    AND audit._ed25519_ok(k.public_key,
                                          audit._anchor_statement(a.stream, a.seq, a.hash, a.checkpoint_id), p_sig))
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
  IF EXISTS (SELECT 1 FROM audit.key_transitions t WHERE t.after_checkpoint >= p_checkpoint) THEN
    PERFORM ops._fail('SX208', format('checkpoint %s comes before a key transition: it can no longer be signed', p_checkpoint),
                      jsonb_build_object('checkpoint_id', p_checkpoint));
  END IF;
  IF EXISTS (SELECT 1 FROM audit.key_transitions) AND p_key_id IS DISTINCT FROM audit._key_in_force() THEN
    PERFORM ops._fail('SX208', format('checkpoint %s is signed by key %s, not by the key in force %s', p_checkpoint,
                                      p_key_id, audit._key_in_force()),
                      jsonb_build_object('checkpoint_id', p_checkpoint, 'key_id', p_key_id));
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
  IF NOT audit._anchor_sig_ok(a, p_key_id, p_sig) THEN
    PERFORM ops._fail('SX208', format('signature of the anchor of %s at %s does not verify with key %s (or that key '
                                      'may no longer sign anchors on checkpoint %s)',
                                      p_stream, p_seq, p_key_id, a.checkpoint_id),
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
     WHERE a.stream = p_stream AND a.seq >= p_seq AND audit._anchor_sig_ok(a, s.key_id, s.sig))
$$;

-- Hand the signing over to a new key: a transition signed by the key in
-- force (p_sig) and countersigned by the new key (p_new_sig), placed after
-- the last signed checkpoint and chained to the last signed statement. The
-- signer makes it (`shieldx audit signer rotate`). p_compromised_since
-- revokes the old key: its retention anchor signatures on later checkpoints
-- stop counting. Idempotent: the same transition again returns its id.
CREATE OR REPLACE FUNCTION audit.rotate_signing_key(p_from bytea, p_to bytea, p_compromised_since bigint,
                                                    p_sig bytea, p_new_sig bytea)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_force text;
  v_after bigint;
  v_prev  bytea;
  v_id    bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('audit.sign'));
  IF p_from IS NULL OR octet_length(p_from) <> 32 OR p_to IS NULL OR octet_length(p_to) <> 32 OR p_from = p_to THEN
    PERFORM ops._fail('SX007', 'two different Ed25519 public keys of 32 bytes', jsonb_build_object('argument', 'p_to'));
  END IF;
  SELECT t.transition_id INTO v_id FROM audit.key_transitions t
   WHERE t.from_key_id = audit._signing_key_id(p_from) AND t.to_key_id = audit._signing_key_id(p_to) AND t.sig = p_sig;
  IF FOUND THEN
    RETURN v_id;
  END IF;
  v_force := audit._key_in_force();
  IF v_force IS DISTINCT FROM audit._signing_key_id(p_from)
     AND (v_force IS NOT NULL OR NOT EXISTS (SELECT 1 FROM audit.signing_keys k WHERE k.public_key = p_from)) THEN
    PERFORM ops._fail('SX208', format('key %s is not the key in force (%s): only the key in force can hand over',
                                      audit._signing_key_id(p_from), coalesce(v_force, 'none registered')),
                      jsonb_build_object('key_id', audit._signing_key_id(p_from)));
  END IF;
  SELECT coalesce(max(s.checkpoint_id), 0) INTO v_after FROM audit.checkpoint_signatures s;
  IF p_compromised_since IS NOT NULL AND p_compromised_since NOT BETWEEN 0 AND v_after THEN
    PERFORM ops._fail('SX007', format('compromised_since must be a checkpoint id between 0 and the last signed one (%s)',
                                      v_after),
                      jsonb_build_object('argument', 'p_compromised_since'));
  END IF;
  v_prev := audit._prev_signed(9223372036854775807);
  IF NOT audit._ed25519_ok(p_from, audit._transition_statement(p_from, p_to, p_compromised_since, v_after, v_prev), p_sig)
     OR NOT audit._ed25519_ok(p_to, audit._transition_statement(p_from, p_to, p_compromised_since, v_after, v_prev),
                              p_new_sig) THEN
    PERFORM ops._fail('SX208', format('key transition from %s to %s: a signature does not verify (signed by the old key '
                                      'and by the new one, after checkpoint %s?)', audit._signing_key_id(p_from),
                                      audit._signing_key_id(p_to), v_after),
                      jsonb_build_object('key_id', audit._signing_key_id(p_to)));
  END IF;
  PERFORM audit.register_signing_key(p_to);
  INSERT INTO audit.key_transitions (after_checkpoint, from_key_id, to_key_id, compromised_since, prev_signed, sig, new_sig)
  VALUES (v_after, audit._signing_key_id(p_from), audit._signing_key_id(p_to), p_compromised_since, v_prev, p_sig, p_new_sig)
  RETURNING transition_id INTO v_id;
  RETURN v_id;
END
$$;
COMMENT ON FUNCTION audit.rotate_signing_key(bytea, bytea, bigint, bytea, bytea) IS
  'Hand the audit signing over to a new Ed25519 key: a transition signed by the key in force and by the new key, '
  'chained after the last signed statement; p_compromised_since revokes the old key''s anchor signatures on later '
  'checkpoints. SX208 unless both signatures verify and the old key is the key in force.';

-- The chain of signed statements (checkpoint signatures and key
-- transitions, in chain order) walked with a pinned key (NULL: the
-- database's own view): every statement chained to the one before, signed by
-- the key in force, with a key p_pinned trusts.
CREATE OR REPLACE FUNCTION audit._statement_problems(p_pinned bytea DEFAULT NULL)
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  r       record;
  v_prev  bytea := audit._zero32();
  v_force text;
  v_pub   bytea;
  v_pin   text := coalesce(audit._signing_key_id(p_pinned), 'the registered keys');
  v_keys  jsonb;
BEGIN
  SELECT coalesce(jsonb_object_agg(k.key_id, encode(k.public_key, 'hex')), '{}') INTO v_keys
    FROM audit._trusted_keys(p_pinned) k;
  -- With transitions, the first key is the first transition's old key; without, the pinned key (if any).
  SELECT t.from_key_id INTO v_force FROM audit.key_transitions t ORDER BY t.after_checkpoint, t.transition_id LIMIT 1;
  IF v_force IS NULL AND p_pinned IS NOT NULL THEN
    v_force := audit._signing_key_id(p_pinned);
  END IF;
  FOR r IN
    SELECT * FROM (
      SELECT 'checkpoint' AS kind, s.checkpoint_id AS pos, 0 AS ord, s.checkpoint_id AS id, c.created_at AS at,
             s.key_id, NULL::text AS to_key_id, s.prev_signed, audit._checkpoint_statement(c, s.prev_signed) AS msg,
             s.sig, NULL::bytea AS new_sig, NULL::bigint AS compromised_since
        FROM audit.checkpoint_signatures s JOIN audit.checkpoints c ON c.checkpoint_id = s.checkpoint_id
      UNION ALL
      SELECT 'transition', t.after_checkpoint, 1, t.transition_id, t.signed_at, t.from_key_id, t.to_key_id,
             t.prev_signed, audit._transition_statement(t), t.sig, t.new_sig, t.compromised_since
        FROM audit.key_transitions t) x
    ORDER BY x.pos, x.ord, x.id LOOP
    stream := CASE r.kind WHEN 'checkpoint' THEN 'checkpoint/' || r.id ELSE 'key-transition/' || r.id END;
    seq := r.id; logged_at := r.at; problem := NULL;
    v_pub := decode(v_keys ->> r.key_id, 'hex');
    IF r.prev_signed IS DISTINCT FROM v_prev THEN
      problem := 'signed statements do not chain (a signed checkpoint or key transition was removed or replaced)';
    ELSIF v_force IS NOT NULL AND r.key_id <> v_force THEN
      problem := CASE r.kind WHEN 'checkpoint'
                   THEN format('checkpoint signed by key %s, not by the key in force %s: an unannounced key (no key '
                               'transition hands over to it)', r.key_id, v_force)
                   ELSE format('key transition signed by key %s, not by the key in force %s: a key not trusted',
                               r.key_id, v_force) END;
    ELSIF v_pub IS NULL THEN
      problem := format('%s signed by key %s, which %s does not vouch for: an unannounced key',
                        CASE r.kind WHEN 'checkpoint' THEN 'checkpoint' ELSE 'key transition' END, r.key_id,
                        CASE WHEN p_pinned IS NULL THEN 'no key transition' ELSE 'the pinned key ' || v_pin END);
    ELSIF NOT audit._ed25519_ok(v_pub, r.msg, r.sig) THEN
      problem := CASE r.kind WHEN 'checkpoint'
                   THEN 'checkpoint signature (Ed25519) does not verify with '
                        || CASE WHEN p_pinned IS NULL THEN 'the registered key ' || r.key_id
                                ELSE 'the pinned key ' || v_pin END
                   ELSE 'key transition signature (Ed25519) does not verify with the old key ' || r.key_id END;
    ELSIF r.kind = 'transition' AND (v_keys ->> r.to_key_id IS NULL
                                     OR NOT audit._ed25519_ok(decode(v_keys ->> r.to_key_id, 'hex'), r.msg, r.new_sig)) THEN
      problem := 'key transition countersignature (Ed25519) does not verify with the new key ' || r.to_key_id;
    END IF;
    IF problem IS NULL AND r.kind = 'transition' AND r.key_id = v_pin AND r.compromised_since IS NOT NULL THEN
      problem := format('the pinned key %s was revoked (compromised since checkpoint %s): pin %s, obtained out of band '
                        '(anyone holding %s can forge a hand-over)', v_pin, r.compromised_since, r.to_key_id, v_pin);
    END IF;
    IF problem IS NOT NULL THEN
      RETURN NEXT;
    END IF;
    IF r.kind = 'transition' THEN
      v_force := r.to_key_id;
    END IF;
    v_prev := pg_catalog.sha256(r.msg || r.sig || coalesce(r.new_sig, '\x'::bytea));
  END LOOP;
END
$$;

-- Signature problems, for verify() and verify_export(): the chain of signed
-- statements (above); every signed anchor's signature; and every anchor a
-- chain starts at (its entries are gone) must be signed. p_pinned: the key to
-- check against (NULL: the registered keys).
CREATE OR REPLACE FUNCTION audit._signature_problems(p_pinned bytea DEFAULT NULL)
RETURNS TABLE (stream text, seq bigint, logged_at timestamptz, problem text)
LANGUAGE sql STABLE
AS $$
  SELECT * FROM audit._statement_problems(p_pinned)
  UNION ALL
  SELECT a.stream::text, a.seq + 1, NULL::timestamptz,
         CASE WHEN s.sig IS NULL THEN 'retention anchor is not signed: entries up to ' || a.seq || ' were removed without the signer''s consent'
              WHEN NOT EXISTS (SELECT 1 FROM audit._trusted_keys(p_pinned) k WHERE k.key_id = s.key_id)
              THEN 'retention anchor signed by key ' || s.key_id || ', which '
                   || coalesce('the pinned key ' || audit._signing_key_id(p_pinned), 'no key transition')
                   || ' does not vouch for: an unannounced key'
              WHEN EXISTS (SELECT 1 FROM audit._trusted_keys(p_pinned) k
                            WHERE k.key_id = s.key_id AND k.anchors_through < a.checkpoint_id)
              THEN 'retention anchor signed by key ' || s.key_id || ', which may no longer sign anchors on checkpoint '
                   || a.checkpoint_id || ' (retired or revoked by a key transition)'
              ELSE 'retention anchor signature (Ed25519) does not verify' END
    FROM audit.anchors a
    LEFT JOIN audit.anchor_signatures s ON s.stream = a.stream AND s.seq = a.seq
   WHERE CASE WHEN s.sig IS NULL  -- unsigned: awaiting the signer, a problem only once the chain starts there
              THEN NOT EXISTS (SELECT 1 FROM audit.log l WHERE l.stream = a.stream AND l.seq <= a.seq)
              ELSE NOT audit._anchor_sig_ok(a, s.key_id, s.sig, p_pinned) END
$$;
