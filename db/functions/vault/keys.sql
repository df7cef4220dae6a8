-- Key lifecycle. vault.keys records ids and state only (never material):
-- current -> previous (after a rotation) -> retired (file destroyed once no
-- value uses it). Every change of vault.keys is an audit entry.
--
-- Which key is current is the database's record (vault.keys, and for subject
-- master keys the last epoch of privacy.epochs), replicated to every node;
-- a keyring's CURRENT file only names the first key, before any record.
-- Key material is made outside the database and installed on every node
-- before it becomes current (vault.rotate_key(purpose, key_id)): a key only
-- the primary holds is lost with it. Subject master keys are the exception:
-- each epoch's derives from the previous one (privacy/epochs.sql).

-- The database's record of a purpose's current key (NULL: none yet).
CREATE OR REPLACE FUNCTION vault._recorded_key_id(p_purpose text)
RETURNS text
LANGUAGE sql STABLE
AS $$
  SELECT coalesce(
    CASE WHEN p_purpose = 'subject' THEN (SELECT e.key_id FROM privacy.epochs e ORDER BY e.epoch_id DESC LIMIT 1) END,
    (SELECT k.key_id FROM vault.keys k WHERE k.purpose = p_purpose AND k.state = 'current'))
$$;

-- The id of the current key of a purpose, registered in vault.keys. The row
-- is locked FOR SHARE until commit, so retirement cannot destroy a key that
-- an uncommitted transaction just used. When a rotation commits while this
-- waits for the lock, the key is looked up again (a fresh snapshot).
CREATE OR REPLACE FUNCTION vault._use_current_key(p_purpose text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
  v_id text := vault._current_key_id(p_purpose);
BEGIN
  PERFORM 1 FROM vault.keys k WHERE k.key_id = v_id AND k.state = 'current' FOR SHARE;
  IF FOUND THEN
    RETURN v_id;
  END IF;
  v_id := vault._current_key_id(p_purpose);
  PERFORM 1 FROM vault.keys k WHERE k.key_id = v_id AND k.state = 'current' FOR SHARE;
  IF NOT FOUND THEN
    -- First use in this database: the keyring's CURRENT names the key.
    PERFORM vault._make_current(p_purpose, v_id);
  END IF;
  RETURN v_id;
END
$$;

-- Record p_key_id as the purpose's current key (the former one becomes
-- previous) and name it in this node's CURRENT file. SX202 when it was retired.
CREATE OR REPLACE FUNCTION vault._make_current(p_purpose text, p_key_id text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
  UPDATE vault.keys k SET state = 'previous' WHERE k.purpose = p_purpose AND k.state = 'current' AND k.key_id <> p_key_id;
  INSERT INTO vault.keys (key_id, purpose) VALUES (p_key_id, p_purpose)
  ON CONFLICT (key_id) DO UPDATE SET state = 'current' WHERE vault.keys.state <> 'retired';
  PERFORM 1 FROM vault.keys k WHERE k.key_id = p_key_id AND k.state = 'current' FOR SHARE;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX202', format('%s key %s is retired', p_purpose, p_key_id),
                      jsonb_build_object('purpose', p_purpose, 'key_id', p_key_id));
  END IF;
  PERFORM vault._set_current_file(p_purpose, p_key_id);
END
$$;

-- Rotate by generating: a new random key file becomes current. Only where no
-- other node needs the key: refused (SX221) on a primary with standbys
-- attached or synchronous standbys configured, where the key would exist on
-- this node alone. Existing values stay readable with the previous key until
-- vault.reencrypt() moves them.
CREATE OR REPLACE FUNCTION vault.rotate_key(p_purpose text,
  OUT key_id text, OUT previous_key_id text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_standbys bigint;
  v_sync text := current_setting('synchronous_standby_names');
BEGIN
  IF p_purpose IS NULL OR p_purpose NOT IN ('audit', 'payment') THEN
    PERFORM ops._fail('SX007', 'purpose must be audit or payment (subject master keys move with '
                      'privacy.close_epoch(true))', jsonb_build_object('argument', 'purpose'));
  END IF;
  SELECT count(*) INTO v_standbys FROM pg_stat_replication;
  IF v_standbys > 0 OR v_sync <> '' THEN
    PERFORM ops._fail('SX221', format('a %s key generated here would exist on this node only (%s standbys attached, '
                      'synchronous_standby_names %L): make it outside the database, install it on every node, then '
                      'SELECT * FROM vault.rotate_key(%L, <key_id>)', p_purpose, v_standbys, v_sync, p_purpose),
                      jsonb_build_object('purpose', p_purpose, 'standbys', v_standbys,
                                         'synchronous_standby_names', v_sync));
  END IF;
  previous_key_id := vault._use_current_key(p_purpose);
  key_id := vault._new_key_file(p_purpose);
  PERFORM vault._make_current(p_purpose, key_id);
END
$$;
COMMENT ON FUNCTION vault.rotate_key(text) IS
  'Single node only: make a new random key file current for a purpose (''payment'' or ''audit''); earlier values '
  'stay readable with the previous key until vault.reencrypt moves them. Returns the new and previous key ids; '
  'SX007 invalid purpose, SX221 standbys would lack the key (use vault.rotate_key(purpose, key_id)), SX202 keyring '
  'unavailable.';

-- Rotate by activation: a key file made outside the database (deploy/local/
-- keyring.sh new) and installed on every node becomes current. Refused
-- (SX220) when this node lacks it; installing it on every node first is the
-- caller's part, which the database cannot check. Idempotent: activating the
-- current key again changes nothing.
CREATE OR REPLACE FUNCTION vault.rotate_key(p_purpose text, p_key_id text,
  OUT key_id text, OUT previous_key_id text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  IF p_purpose IS NULL OR p_purpose NOT IN ('audit', 'payment') THEN
    PERFORM ops._fail('SX007', 'purpose must be audit or payment (subject master keys move with '
                      'privacy.close_epoch(true))', jsonb_build_object('argument', 'purpose'));
  END IF;
  IF p_key_id IS NULL OR p_key_id !~ '^k[0-9a-z]{6,40}$' THEN
    PERFORM ops._fail('SX007', 'key id must match ^k[0-9a-z]{6,40}$', jsonb_build_object('argument', 'key_id'));
  END IF;
  IF NOT vault._key_installed(p_purpose, p_key_id) THEN
    PERFORM ops._fail('SX220', format('%s key %s is not installed on this node: install it on every node first',
                      p_purpose, p_key_id),
                      jsonb_build_object('purpose', p_purpose, 'key_id', p_key_id,
                                         'node', coalesce(host(inet_server_addr()) || ':' || inet_server_port(),
                                                          'local socket')));
  END IF;
  previous_key_id := vault._use_current_key(p_purpose);
  key_id := p_key_id;
  IF previous_key_id = p_key_id THEN
    RETURN;
  END IF;
  PERFORM vault._make_current(p_purpose, p_key_id);
END
$$;
COMMENT ON FUNCTION vault.rotate_key(text, text) IS
  'Make a key file made outside the database and installed on every node current for a purpose (''payment'' or '
  '''audit''); earlier values stay readable with the previous key until vault.reencrypt moves them. Idempotent. '
  'Returns the new and previous key ids; SX007 invalid purpose or key id, SX220 key file not on this node, SX202 '
  'key retired.';

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
