-- Final erasure: key epochs. Deleting a subject's wrapped key (erase_subject)
-- is not enough on its own: the deleted row survives in dead tuples, in the
-- WAL and in backups, and the 'subject' master key that unwraps it would
-- still be in the keyring. So every subject key is wrapped by the current
-- epoch's master key, and the job shieldx-privacy-epoch (every 10 minutes)
-- runs privacy.close_epoch(): if anything was erased since the current epoch
-- began, a new master key becomes current and every remaining subject key is
-- re-wrapped under it (one transaction); at the next run, once that has
-- committed, the old master key's file is destroyed. From then on no copy
-- of the erased subject's wrapped key can be unwrapped: an erasure is final
-- within two runs (20 minutes) of it, plus however long copies of the
-- keyring directory itself (not the database backups) are kept.
--
-- On a cluster every node needs the new master key, and pg_cron runs on the
-- primary only, with nobody outside to hand keys around. So the master keys
-- form a forward hash ratchet (vault/keyring.py): epoch n+1's key is
-- HKDF-SHA256(key n, info = 'shieldx subject epoch ' || its key id). Every
-- node derives the next keys from the one it holds, guided by privacy.epochs
-- (replicated), and then destroys the older files: lazily, on first use of a
-- subject key (the new primary after a failover), and through
-- privacy.ratchet_local_keys(), which writes nothing to the database and so
-- runs on standbys too (the HA harness runs it on every node; Patroni calls
-- it on a role change). An older key derives every later one, so an erasure
-- is final on a node once that node's ratchet has run: every copy of the
-- keyring (a node's, a Secret's, the harness's source) must move forward.
-- privacy.erasure_status(subject) tells whether an erasure is final on the
-- node asked; privacy.local_subject_keys() lists what this node holds.

-- The committed epochs, oldest first: the ratchet's guide. Not those of the
-- calling transaction (a close_epoch() not yet committed may still roll back).
CREATE OR REPLACE FUNCTION privacy._epoch_chain()
RETURNS TABLE (epoch_id bigint, closed_key text, key_id text)
LANGUAGE sql STABLE
AS $$
  SELECT e.epoch_id, e.closed_key, e.key_id FROM privacy.epochs e
   WHERE e.xmin::text::bigint IS DISTINCT FROM (txid_current_if_assigned() % 4294967296)
   ORDER BY e.epoch_id
$$;

-- A wrapped subject key, unwrapped with the master key it names and wrapped
-- again under p_key_id.
DROP FUNCTION IF EXISTS privacy._rewrap(bytea, text);
CREATE OR REPLACE FUNCTION privacy._rewrap(p_wrapped bytea, p_subject text, p_key_id text)
RETURNS bytea
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
sx = GD['vault.keyring'].session_keyring(plpy)
aad = ('SXS1' + p_subject).encode()
return sx.encrypt('subject', sx.decrypt('subject', p_wrapped, aad), aad, key_id=p_key_id)
$py$;

-- The next epoch's master key, derived from p_previous's and written to this
-- node's keyring. Returns its id.
CREATE OR REPLACE FUNCTION privacy._next_epoch_key(p_previous text)
RETURNS text
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
return GD['vault.keyring'].session_keyring(plpy).next_epoch(p_previous)
$py$;

-- The job: destroy the master keys of closed epochs that nothing uses any
-- more (their re-wrap has committed), then close the current epoch if
-- anything was erased in it (or p_force). Safe to run twice or to die
-- midway: a key file is destroyed only after a committed re-wrap left it
-- unused, and the re-wrap moves every row atomically.
CREATE OR REPLACE FUNCTION privacy.close_epoch(p_force boolean DEFAULT false,
  OUT keys_destroyed bigint, OUT epoch_id bigint, OUT key_id text, OUT rewrapped bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  k      record;
  e      privacy.epochs;
  v_old  text;
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('privacy.epoch'));
  keys_destroyed := 0; rewrapped := 0;
  -- 1. Master keys of closed epochs: lock (waits for transactions wrapping
  --    with one), look with a fresh snapshot, destroy the unused.
  FOR k IN SELECT x.key_id FROM vault.keys x WHERE x.purpose = 'subject' AND x.state = 'previous'
            ORDER BY x.key_id FOR UPDATE LOOP
    CONTINUE WHEN EXISTS (SELECT 1 FROM privacy.subject_keys s WHERE s.key_id = k.key_id);
    UPDATE vault.keys x SET state = 'retired', retired_at = now() WHERE x.key_id = k.key_id;
    PERFORM vault._destroy_key_file('subject', k.key_id);
    keys_destroyed := keys_destroyed + 1;
  END LOOP;
  -- 2. Close the current epoch if an erasure happened in it.
  SELECT * INTO e FROM privacy.epochs x ORDER BY x.epoch_id DESC LIMIT 1;
  epoch_id := e.epoch_id; key_id := e.key_id;
  IF NOT p_force AND NOT EXISTS (SELECT 1 FROM privacy.erasures x WHERE e.epoch_id IS NULL OR x.erased_at >= e.started_at) THEN
    RETURN;
  END IF;
  -- The next key derives from the current one (the ratchet); recording it
  -- current makes the old one previous, which waits for the transactions
  -- that hold it FOR SHARE (they are wrapping with it) ...
  v_old := vault._use_current_key('subject');
  key_id := privacy._next_epoch_key(v_old);
  PERFORM vault._make_current('subject', close_epoch.key_id);
  -- ... then every master key but the new one is previous: lock them as
  -- well, and re-wrap whatever still uses them (a fresh snapshot).
  PERFORM 1 FROM vault.keys x WHERE x.purpose = 'subject' AND x.state = 'previous' FOR UPDATE;
  UPDATE privacy.subject_keys s SET key_id = close_epoch.key_id,
         wrapped = privacy._rewrap(s.wrapped, s.subject_id, close_epoch.key_id)
   WHERE s.key_id <> close_epoch.key_id;
  GET DIAGNOSTICS rewrapped = ROW_COUNT;
  INSERT INTO privacy.epochs (key_id, closed_key, rewrapped) VALUES (close_epoch.key_id, v_old, rewrapped)
  RETURNING privacy.epochs.epoch_id INTO close_epoch.epoch_id;
END
$$;
COMMENT ON FUNCTION privacy.close_epoch(boolean) IS
  'Job shieldx-privacy-epoch: destroy the subject master keys of closed epochs, then re-wrap every subject key '
  'under the next master key (derived from the current one) if anything was erased.';

-- This node's ratchet: derive the master keys of epochs it lacks from the
-- newest one it holds and destroy the files of closed epochs. Writes nothing
-- to the database, so it runs on standbys; idempotent. SX202 when the node
-- holds no key of the chain (or a gap made before the ratchet existed).
CREATE OR REPLACE FUNCTION privacy.ratchet_local_keys(OUT key_id text, OUT derived text[], OUT destroyed text[])
LANGUAGE plpython3u SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
r = GD['vault.keyring'].session_keyring(plpy).ratchet()
return r["key_id"], r["derived"], r["destroyed"]
$py$;
COMMENT ON FUNCTION privacy.ratchet_local_keys() IS
  'Bring this node''s subject master keys up to the last epoch (derive forward, destroy closed epochs'' files); '
  'read-only in SQL, so it runs on standbys too. Returns the current key id, the ids derived and destroyed.';

-- What this node's keyring holds of subject master keys: each file, the epoch
-- it belongs to, and whether that epoch is closed (then the file should be
-- gone: while it exists, erasures before that epoch's end are not final here).
CREATE OR REPLACE FUNCTION privacy.local_subject_keys()
RETURNS TABLE (key_id text, epoch_id bigint, closed boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT f.key_id,
         coalesce((SELECT e.epoch_id FROM privacy.epochs e WHERE e.key_id = f.key_id),
                  CASE WHEN EXISTS (SELECT 1 FROM privacy.epochs e WHERE e.closed_key = f.key_id) THEN 0 END),
         EXISTS (SELECT 1 FROM privacy.epochs e WHERE e.closed_key = f.key_id)
    FROM unnest(vault._local_key_files('subject')) f(key_id)
   ORDER BY f.key_id
$$;
COMMENT ON FUNCTION privacy.local_subject_keys() IS
  'The subject master key files on this node: key id, its epoch (0: the keyring''s first key, NULL: no epoch '
  'names it) and whether that epoch is closed (its file should be gone; privacy.ratchet_local_keys destroys it).';

-- Is a subject's erasure final on this node: an epoch began after it, every
-- subject master key but those of such epochs is destroyed, and this node
-- holds no file of an older epoch's key (a standby needs its ratchet, which
-- derives forward and destroys them). final_at: when the primary destroyed
-- the last such key (NULL while not final).
CREATE OR REPLACE FUNCTION privacy.erasure_status(p_subject text,
  OUT subject_id text, OUT erased_at timestamptz, OUT final boolean, OUT final_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT x.subject_id, x.erased_at, f.final, CASE WHEN f.final THEN f.last_retired END
    FROM privacy.erasures x
    CROSS JOIN LATERAL (SELECT array_agg(e.key_id) AS keys FROM privacy.epochs e WHERE e.started_at > x.erased_at) later
    CROSS JOIN LATERAL (
      SELECT later.keys IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM vault.keys k
                              WHERE k.purpose = 'subject' AND k.state <> 'retired' AND k.key_id <> ALL (later.keys))
             AND NOT EXISTS (SELECT 1 FROM unnest(vault._local_key_files('subject')) l(key_id)
                              WHERE l.key_id <> ALL (later.keys)
                                AND (EXISTS (SELECT 1 FROM privacy.epochs e WHERE l.key_id IN (e.key_id, e.closed_key))
                                     OR EXISTS (SELECT 1 FROM vault.keys k WHERE k.key_id = l.key_id)))
               AS final,
             (SELECT max(k.retired_at) FROM vault.keys k
               WHERE k.purpose = 'subject' AND k.state = 'retired') AS last_retired) f
   WHERE x.subject_id = p_subject
$$;
COMMENT ON FUNCTION privacy.erasure_status(text) IS
  'Whether a subject''s erasure is final on this node: every subject master key older than an epoch begun after '
  'it is destroyed, by the primary and in this node''s keyring (and when).';

SELECT ops._register_job('shieldx-privacy-epoch', '*/10 * * * *', 'SELECT * FROM privacy.close_epoch()',
  'Make erasures final: destroy closed epochs'' subject master keys; '
  're-wrap subject keys under the next one (a hash ratchet) after an erasure');
