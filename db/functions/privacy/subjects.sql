-- Personal data under per-subject keys (crypto-shredding). A subject's data
-- key is 32 random bytes, stored only wrapped (AES-256-GCM) by the 'subject'
-- master key from the keyring; erasing the subject deletes the wrapped key,
-- after which every value encrypted for them is noise. The audit log only
-- ever holds those ciphertexts, so it stays intact and still verifies.

-- Encrypt for a subject, creating their key on first use. NULL stays NULL.
CREATE OR REPLACE FUNCTION privacy._encrypt(p_subject text, p_plain text, p_aad bytea)
RETURNS bytea
LANGUAGE plpgsql
AS $$
DECLARE
  k privacy.subject_keys;
  v_master text;
BEGIN
  IF p_plain IS NULL THEN
    RETURN NULL;
  END IF;
  IF EXISTS (SELECT 1 FROM privacy.erasures e WHERE e.subject_id = p_subject) THEN
    PERFORM ops._fail('SX205', format('subject %s was erased', p_subject), jsonb_build_object('subject_id', p_subject));
  END IF;
  SELECT * INTO k FROM privacy.subject_keys s WHERE s.subject_id = p_subject;
  IF NOT FOUND THEN
    v_master := vault._use_current_key('subject');
    INSERT INTO privacy.subject_keys (subject_id, key_id, wrapped)
    VALUES (p_subject, v_master, privacy._new_wrapped_key(p_subject))
    ON CONFLICT (subject_id) DO NOTHING;
    SELECT * INTO k FROM privacy.subject_keys s WHERE s.subject_id = p_subject;
  END IF;
  RETURN privacy._seal(k.wrapped, p_subject, p_plain, p_aad);
END
$$;

-- NULL when the subject's key is gone (erased).
CREATE OR REPLACE FUNCTION privacy._decrypt(p_subject text, p_blob bytea, p_aad bytea)
RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT privacy._open(s.wrapped, s.subject_id, p_blob, p_aad)
    FROM privacy.subject_keys s WHERE s.subject_id = p_subject
$$;

CREATE OR REPLACE FUNCTION privacy._new_wrapped_key(p_subject text)
RETURNS bytea
LANGUAGE plpython3u
AS $py$
import secrets
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].session_keyring(plpy).encrypt('subject', secrets.token_bytes(32), ('SXS1' + p_subject).encode())
$py$;

CREATE OR REPLACE FUNCTION privacy._seal(p_wrapped bytea, p_subject text, p_plain text, p_aad bytea)
RETURNS bytea
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
sx = GD['vault.keyring'].session_keyring(plpy)
raw = sx.decrypt('subject', p_wrapped, ('SXS1' + p_subject).encode())
return sx.encrypt(None, p_plain.encode(), bytes(p_aad), key_id='', raw=raw)
$py$;

CREATE OR REPLACE FUNCTION privacy._open(p_wrapped bytea, p_subject text, p_blob bytea, p_aad bytea)
RETURNS text
LANGUAGE plpython3u
AS $py$
if p_blob is None or p_wrapped is None:
    return None
plpy.execute("SELECT ops._py_load('vault.keyring')")
sx = GD['vault.keyring'].session_keyring(plpy)
raw = sx.decrypt('subject', p_wrapped, ('SXS1' + p_subject).encode())
return sx.decrypt(None, p_blob, bytes(p_aad), raw=raw).decode()
$py$;

-- Erasure (GDPR art. 17): destroy the subject's key. Idempotent by subject;
-- the key is the idempotency key's subject, so a replay reports replayed.
CREATE OR REPLACE FUNCTION privacy.erase_subject(p_subject text, p_idem_key text,
  OUT subject_id text, OUT erased_at timestamptz, OUT payments_affected bigint, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  e privacy.erasures;
  v_had boolean;
BEGIN
  IF p_subject IS NULL OR length(p_subject) NOT BETWEEN 1 AND 200 THEN
    PERFORM ops._fail('SX007', 'subject id must be 1 to 200 characters', jsonb_build_object('argument', 'subject'));
  END IF;
  IF p_idem_key IS NULL OR length(p_idem_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM ops._fail('SX006', 'idempotency key must be 1 to 255 characters', '{}');
  END IF;
  subject_id := p_subject;
  SELECT count(*) INTO payments_affected FROM vault.payments p WHERE p.subject_id = p_subject;
  SELECT * INTO e FROM privacy.erasures x WHERE x.subject_id = p_subject;
  IF FOUND THEN
    IF e.idem_key <> p_idem_key THEN
      PERFORM ops._fail('SX005', format('subject %s was erased under another idempotency key', p_subject),
                        jsonb_build_object('subject_id', p_subject));
    END IF;
    erased_at := e.erased_at; replayed := true;
    RETURN;
  END IF;
  DELETE FROM privacy.subject_keys s WHERE s.subject_id = p_subject;
  v_had := FOUND;
  INSERT INTO privacy.erasures (subject_id, idem_key, had_key) VALUES (p_subject, p_idem_key, v_had)
  ON CONFLICT DO NOTHING RETURNING privacy.erasures.erased_at INTO erased_at;
  IF NOT FOUND THEN  -- a concurrent erasure won: answer as its replay
    SELECT * INTO e FROM privacy.erasures x WHERE x.subject_id = p_subject;
    erased_at := e.erased_at; replayed := true;
    RETURN;
  END IF;
  replayed := false;
END
$$;
COMMENT ON FUNCTION privacy.erase_subject(text, text) IS
  'Erase a data subject (GDPR art. 17) by destroying their key, so their personal data in payments becomes '
  'unreadable while the audit chains still verify. Idempotent by subject; SX006 invalid key, SX007 invalid '
  'subject, SX005 key reused.';
