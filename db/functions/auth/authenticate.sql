-- Authentication. The API hashes the presented secret itself and sends only
-- sha256(secret), so the secret never reaches the database, its logs or
-- pg_stat_statements. A failure is answered with ok = false rather than an
-- error, and written nowhere: a flood of bad keys costs reads only. The API
-- counts failures in memory and records them in one write now and then
-- (auth.record_failures); a DBA's auth.verify records its own.
CREATE OR REPLACE FUNCTION auth.authenticate(
  p_key_id text, p_secret_sha256 bytea,
  OUT ok boolean, OUT reason text, OUT tenant_id text, OUT roles text[], OUT rate_per_s double precision,
  OUT burst double precision, OUT expires_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  k auth.keys;
BEGIN
  ok := false;
  IF p_key_id IS NULL OR p_key_id !~ '^[0-9a-f]{12}$' OR p_secret_sha256 IS NULL OR length(p_secret_sha256) <> 32 THEN
    reason := 'malformed';
  ELSE
    SELECT * INTO k FROM auth.keys x WHERE x.key_id = p_key_id;
    IF NOT FOUND THEN
      reason := 'unknown_key';
    ELSIF k.secret_hash <> p_secret_sha256 THEN
      reason := 'bad_secret';  -- checked first: without the secret, a key's state is not told
    ELSIF k.revoked_at IS NOT NULL THEN
      reason := 'revoked';
    ELSIF k.expires_at <= now() THEN
      reason := 'expired';
    ELSE
      ok := true; tenant_id := k.tenant_id; roles := k.roles; rate_per_s := k.rate_per_s;
      burst := k.burst; expires_at := k.expires_at;
      RETURN;
    END IF;
  END IF;
END
$$;
COMMENT ON FUNCTION auth.authenticate(text, bytea) IS
  'Check an API key by its id and the SHA-256 of its secret (the secret never reaches the database). Returns ok '
  'with the key''s tenant, roles and rate limit, or ok = false and a reason; a failure is never raised, nor written.';

-- A DBA's check of a whole key string, hashed here.
CREATE OR REPLACE FUNCTION auth.verify(
  p_api_key text,
  OUT ok boolean, OUT reason text, OUT tenant_id text, OUT roles text[], OUT rate_per_s double precision,
  OUT burst double precision, OUT expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  m text[] := regexp_match(p_api_key, '^sx_([0-9a-f]{12})_([0-9a-f]{64})$');
BEGIN
  SELECT * INTO ok, reason, tenant_id, roles, rate_per_s, burst, expires_at
    FROM auth.authenticate(m[1], sha256(convert_to(coalesce(m[2], ''), 'UTF8')));
  IF NOT ok THEN
    PERFORM auth._record_failure(reason, CASE WHEN reason IN ('bad_secret', 'revoked', 'expired') THEN m[1] ELSE '' END);
  END IF;
END
$$;
COMMENT ON FUNCTION auth.verify(text) IS
  'A DBA''s check of a whole API key string (sx_<key_id>_<secret>), hashed here: the same answer as '
  'auth.authenticate (ok, reason, tenant, roles, limits).';

CREATE OR REPLACE FUNCTION auth._record_failure(p_reason text, p_key_id text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO auth.failures AS f (minute, reason, key_id, count, last_at)
  VALUES (date_trunc('minute', now()), p_reason, p_key_id, 1, now())
  ON CONFLICT (minute, reason, key_id) DO UPDATE SET count = f.count + 1, last_at = excluded.last_at;
$$;

-- The API's failed authentications, counted in memory and recorded in one
-- write: p_counts is [{"reason": ..., "key_id": ... or "", "count": n}, ...]
-- (the reasons auth.failures knows; a key id only for a real key).
-- Returns the number of failures recorded.
CREATE OR REPLACE FUNCTION auth.record_failures(p_counts jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  n bigint;
BEGIN
  IF p_counts IS NULL OR jsonb_typeof(p_counts) <> 'array' OR jsonb_array_length(p_counts) > 10000 THEN
    PERFORM ops._fail('SX007', 'counts must be an array of at most 10000 objects', jsonb_build_object('argument', 'counts'));
  END IF;
  WITH c AS (
    SELECT left(x.reason, 50) AS reason, left(coalesce(x.key_id, ''), 12) AS key_id, sum(x.count)::int AS count
      FROM jsonb_to_recordset(p_counts) AS x (reason text, key_id text, count int)
     WHERE x.reason IN ('unknown_key', 'bad_secret', 'revoked', 'expired', 'malformed') AND x.count > 0
     GROUP BY 1, 2),
  ins AS (
    INSERT INTO auth.failures AS f (minute, reason, key_id, count, last_at)
    SELECT date_trunc('minute', now()), c.reason, c.key_id, c.count, now() FROM c
    ON CONFLICT (minute, reason, key_id) DO UPDATE SET count = f.count + excluded.count, last_at = excluded.last_at
    RETURNING 1)
  SELECT coalesce(sum(c.count), 0) INTO n FROM c;
  RETURN n;
END
$$;
COMMENT ON FUNCTION auth.record_failures(jsonb) IS
  'Record failed authentications counted by an API process ([{reason, key_id, count}]) in one write, in the current '
  'minute''s buckets. Returns how many failures were recorded; SX007 invalid counts.';

-- Failed authentications per reason over the last p_minutes (for DBAs and metrics).
CREATE OR REPLACE FUNCTION auth.failure_counts(p_minutes int DEFAULT 60)
RETURNS TABLE (reason text, key_id text, failures bigint, last_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT f.reason, nullif(f.key_id, ''), sum(f.count)::bigint, max(f.last_at)
    FROM auth.failures f
   WHERE f.minute >= date_trunc('minute', now()) - make_interval(mins => greatest(coalesce(p_minutes, 60), 1) - 1)
   GROUP BY f.reason, f.key_id ORDER BY 3 DESC, 1, 2;
$$;
COMMENT ON FUNCTION auth.failure_counts(integer) IS
  'Failed authentications over the last p_minutes (default 60), per reason and key id, with the latest time.';

-- Job: keep 30 days of failure counts; drop bucket rows of keys that can no
-- longer be used. Safe to run twice or to die midway (plain deletes).
CREATE OR REPLACE FUNCTION auth.prune()
RETURNS TABLE (failures_deleted bigint, buckets_deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  DELETE FROM auth.failures f WHERE f.minute < now() - interval '30 days';
  GET DIAGNOSTICS failures_deleted = ROW_COUNT;
  DELETE FROM auth.buckets b USING auth.keys k
   WHERE k.key_id = b.key_id AND (k.revoked_at IS NOT NULL OR k.expires_at <= now());
  GET DIAGNOSTICS buckets_deleted = ROW_COUNT;
  RETURN NEXT;
END
$$;
COMMENT ON FUNCTION auth.prune() IS
  'Job: delete failure counts older than 30 days and the token buckets of keys that can no longer be used. '
  'Returns the numbers deleted; safe to rerun.';

-- Registered by a direct upsert, the same as ops._register_job does: files
-- apply in path order, and auth/ comes before ops/ defines that function.
INSERT INTO ops.jobs (job_name, schedule, command, description)
VALUES ('shieldx-auth-prune', '17 3 * * *', 'SELECT * FROM auth.prune()',
        'Drop failed-auth counts older than 30 days and buckets of dead keys')
ON CONFLICT (job_name) DO UPDATE
  SET schedule = excluded.schedule, command = excluded.command, description = excluded.description;
