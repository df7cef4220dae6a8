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
-- privacy.erasure_status(subject) tells whether an erasure is final yet.

-- A wrapped subject key, unwrapped with the master key it names and wrapped
-- again under the current one.
CREATE OR REPLACE FUNCTION privacy._rewrap(p_wrapped bytea, p_subject text)
RETURNS bytea
LANGUAGE plpython3u
AS $py$
plpy.execute("SELECT ops._py_load('vault.keyring')")
sx = GD['vault.keyring'].session_keyring(plpy)
aad = ('SXS1' + p_subject).encode()
return sx.encrypt('subject', sx.decrypt('subject', p_wrapped, aad), aad)
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
  SELECT r.previous_key_id, r.key_id INTO v_old, key_id FROM vault.rotate_key('subject') r;
  -- Every master key but the new one is now 'previous': lock them as above,
  -- then re-wrap whatever still uses them (a fresh snapshot per statement).
  PERFORM 1 FROM vault.keys x WHERE x.purpose = 'subject' AND x.state = 'previous' FOR UPDATE;
  UPDATE privacy.subject_keys s SET key_id = close_epoch.key_id, wrapped = privacy._rewrap(s.wrapped, s.subject_id)
   WHERE s.key_id <> close_epoch.key_id;
  GET DIAGNOSTICS rewrapped = ROW_COUNT;
  INSERT INTO privacy.epochs (key_id, closed_key, rewrapped) VALUES (close_epoch.key_id, v_old, rewrapped)
  RETURNING privacy.epochs.epoch_id INTO close_epoch.epoch_id;
END
$$;
COMMENT ON FUNCTION privacy.close_epoch(boolean) IS
  'Job shieldx-privacy-epoch: destroy the subject master keys of closed epochs, then re-wrap every subject key '
  'under a new master key if anything was erased.';

-- Is a subject's erasure final: an epoch began after it and every subject
-- master key but those of such epochs is destroyed, so no copy of the
-- subject's wrapped key can be unwrapped. final_at: when (NULL while not).
CREATE OR REPLACE FUNCTION privacy.erasure_status(p_subject text,
  OUT subject_id text, OUT erased_at timestamptz, OUT final boolean, OUT final_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT x.subject_id, x.erased_at, f.final, CASE WHEN f.final THEN f.last_retired END
    FROM privacy.erasures x
    CROSS JOIN LATERAL (
      SELECT EXISTS (SELECT 1 FROM privacy.epochs e WHERE e.started_at > x.erased_at)
             AND NOT EXISTS (SELECT 1 FROM vault.keys k
                              WHERE k.purpose = 'subject' AND k.state <> 'retired'
                                AND k.key_id NOT IN (SELECT e.key_id FROM privacy.epochs e
                                                      WHERE e.started_at > x.erased_at))
               AS final,
             (SELECT max(k.retired_at) FROM vault.keys k
               WHERE k.purpose = 'subject' AND k.state = 'retired') AS last_retired) f
   WHERE x.subject_id = p_subject
$$;
COMMENT ON FUNCTION privacy.erasure_status(text) IS
  'Whether a subject''s erasure is final: every subject master key older than an epoch begun after it is '
  'destroyed (and when).';

SELECT ops._register_job('shieldx-privacy-epoch', '*/10 * * * *', 'SELECT * FROM privacy.close_epoch()',
  'Make erasures final: destroy closed epochs'' subject master keys; '
  're-wrap subject keys under a new one after an erasure');
