-- Key lifecycle. vault.keys records ids and state only (never material):
-- current -> previous (after a rotation) -> retired (file destroyed once no
-- value uses it). Every change of vault.keys is an audit entry.

-- The id of the current key of a purpose, registered in vault.keys. The row
-- is locked FOR SHARE until commit, so retirement cannot destroy a key that
-- an uncommitted transaction just used.
CREATE OR REPLACE FUNCTION vault._use_current_key(p_purpose text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
  v_id text := vault._current_key_id(p_purpose);
BEGIN
  PERFORM 1 FROM vault.keys k WHERE k.key_id = v_id AND k.state = 'current' FOR SHARE;
  IF NOT FOUND THEN
    -- First use in this database, or another database of the cluster rotated the keyring.
    UPDATE vault.keys k SET state = 'previous' WHERE k.purpose = p_purpose AND k.state = 'current' AND k.key_id <> v_id;
    INSERT INTO vault.keys (key_id, purpose) VALUES (v_id, p_purpose)
    ON CONFLICT (key_id) DO UPDATE SET state = 'current' WHERE vault.keys.state <> 'retired';
    PERFORM 1 FROM vault.keys k WHERE k.key_id = v_id AND k.state = 'current' FOR SHARE;
    IF NOT FOUND THEN
      PERFORM ops._fail('SX202', format('%s key %s is retired', p_purpose, v_id),
                        jsonb_build_object('purpose', p_purpose, 'key_id', v_id));
    END IF;
  END IF;
  RETURN v_id;
END
$$;

-- Rotate: a new key file becomes current; existing values stay readable with
-- the previous key until vault.reencrypt() moves them.
CREATE OR REPLACE FUNCTION vault.rotate_key(p_purpose text,
  OUT key_id text, OUT previous_key_id text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_purpose IS NULL OR p_purpose NOT IN ('audit', 'payment', 'subject') THEN
    PERFORM ops._fail('SX007', 'purpose must be audit, payment or subject', jsonb_build_object('argument', 'purpose'));
  END IF;
  previous_key_id := vault._use_current_key(p_purpose);
  key_id := vault._new_key_file(p_purpose);
  PERFORM vault._use_current_key(p_purpose);
END
$$;
COMMENT ON FUNCTION vault.rotate_key(text) IS
  'Make a new key file current for a purpose (''payment'', ''audit'' or ''subject''); earlier values stay '
  'readable with the previous key until vault.reencrypt moves them. Returns the new and previous key ids; SX007 '
  'invalid purpose, SX202 keyring unavailable.';

-- Job: re-encrypt payment values still under a non-current key (and give
-- older rows their card fingerprint), a batch at a time (safe to run twice
-- or to die midway: each row moves atomically).
CREATE OR REPLACE FUNCTION vault.reencrypt(p_batch int DEFAULT 1000)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_key text := vault._use_current_key('payment');
  n int;
BEGIN
  WITH todo AS (
    SELECT p.entry_id FROM vault.payments p WHERE p.key_id <> v_key OR p.card_hmac IS NULL
     ORDER BY p.entry_id LIMIT p_batch FOR UPDATE SKIP LOCKED)
  UPDATE vault.payments p
     SET key_id = v_key,
         card_hmac = vault._card_hmac(v_key, p.tenant_id, p.account_id, p.entry_id,
                                      vault._decrypt('payment', p.pan_ct, vault._aad('pan', p.tenant_id, p.account_id, p.entry_id, 'pan')),
                                      vault._decrypt('payment', p.expiry_ct, vault._aad('pan', p.tenant_id, p.account_id, p.entry_id, 'expiry'))),
         pan_ct = vault._encrypt('payment', vault._decrypt('payment', p.pan_ct, vault._aad('pan', p.tenant_id, p.account_id, p.entry_id, 'pan')),
                                 vault._aad('pan', p.tenant_id, p.account_id, p.entry_id, 'pan')),
         expiry_ct = vault._encrypt('payment', vault._decrypt('payment', p.expiry_ct, vault._aad('pan', p.tenant_id, p.account_id, p.entry_id, 'expiry')),
                                    vault._aad('pan', p.tenant_id, p.account_id, p.entry_id, 'expiry'))
    FROM todo WHERE p.entry_id = todo.entry_id;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;
COMMENT ON FUNCTION vault.reencrypt(integer) IS
  'Job: re-encrypt up to p_batch payment values still under a non-current key. Returns how many moved; safe to '
  'rerun.';

-- Job: destroy payment keys that are no longer current and that no value uses.
CREATE OR REPLACE FUNCTION vault.retire_unused_keys()
RETURNS TABLE (key_id text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  k record;
BEGIN
  -- Lock first (waits for transactions that are encrypting with the key) ...
  FOR k IN SELECT x.key_id FROM vault.keys x WHERE x.purpose = 'payment' AND x.state = 'previous'
            ORDER BY x.key_id FOR UPDATE LOOP
    -- ... then look with a fresh snapshot that sees what they wrote.
    CONTINUE WHEN EXISTS (SELECT 1 FROM vault.payments p WHERE p.key_id = k.key_id);
    UPDATE vault.keys x SET state = 'retired', retired_at = now() WHERE x.key_id = k.key_id;
    PERFORM vault._destroy_key_file('payment', k.key_id);
    key_id := k.key_id;
    RETURN NEXT;
  END LOOP;
END
$$;
COMMENT ON FUNCTION vault.retire_unused_keys() IS
  'Job: destroy payment key files that are no longer current and that no stored value uses. Returns the key ids '
  'destroyed.';
