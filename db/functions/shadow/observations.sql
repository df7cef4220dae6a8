-- Batch ingestion of observations: per arm, success/failure, error flag,
-- latency (ms). Two entry points, one rule: a JSON batch (the API) and
-- parallel arrays (DBAs, after \copy into a table of their own). A batch is
-- all or nothing: the first bad item raises a named error naming its index,
-- and nothing is stored. The idempotency key names the batch per experiment.
CREATE OR REPLACE FUNCTION shadow._ingest(
  p_experiment bigint, p_arms text[], p_success boolean[], p_error boolean[], p_latency_ms double precision[],
  p_unit_ids text[], p_idem_key text,
  OUT batch_id bigint, OUT experiment_id bigint, OUT accepted int, OUT step_no int, OUT created_at timestamptz,
  OUT replayed boolean)
LANGUAGE plpgsql
AS $$
DECLARE
  e shadow.experiments;
  b shadow.batches;
  n int := coalesce(cardinality(p_arms), 0);
  v_bad int;
  v_fp text;
BEGIN
  PERFORM shadow._check_key(p_idem_key);
  e := shadow._experiment(p_experiment);
  IF n > 10000 THEN
    PERFORM ops._fail('SX404', format('a batch holds at most 10000 observations, got %s', n),
                      jsonb_build_object('count', n, 'max', 10000));
  END IF;
  IF n = 0 THEN
    PERFORM ops._fail('SX403', 'the batch is empty', jsonb_build_object('count', 0));
  END IF;
  IF coalesce(cardinality(p_success), -1) <> n OR coalesce(cardinality(p_error), -1) <> n
     OR coalesce(cardinality(p_latency_ms), -1) <> n OR (p_unit_ids IS NOT NULL AND cardinality(p_unit_ids) <> n) THEN
    PERFORM ops._fail('SX403', 'arms, success, error, latency_ms (and unit_ids) must have the same length',
                      jsonb_build_object('count', n));
  END IF;
  SELECT i - 1 INTO v_bad
    FROM unnest(p_arms, p_success, p_error, p_latency_ms) WITH ORDINALITY t(a, s, er, l, i)
   WHERE a IS NULL OR a NOT IN ('champion', 'challenger') OR s IS NULL OR er IS NULL OR l IS NULL
      OR l < 0 OR l >= 'Infinity'::float8   -- NaN sorts above Infinity, so this refuses it too
   ORDER BY i LIMIT 1;
  IF FOUND THEN
    PERFORM ops._fail('SX403', format('observation %s: arm must be champion or challenger, success and error '
                                      'booleans, latency_ms a finite number >= 0', v_bad),
                      jsonb_build_object('index', v_bad, 'arm', p_arms[v_bad + 1],
                                         'latency_ms', p_latency_ms[v_bad + 1]::text));
  END IF;
  IF p_unit_ids IS NOT NULL AND EXISTS (SELECT 1 FROM unnest(p_unit_ids) u WHERE length(u) > 200) THEN
    PERFORM ops._fail('SX403', 'unit_id must be at most 200 characters', jsonb_build_object('argument', 'unit_id'));
  END IF;
  v_fp := md5(concat_ws('|', p_arms::text, p_success::text, p_error::text, p_latency_ms::text, p_unit_ids::text));

  INSERT INTO shadow.batches AS x (experiment_id, idem_key, fingerprint, n)
  VALUES (p_experiment, p_idem_key, v_fp, n)
  ON CONFLICT ON CONSTRAINT batches_idem_unique DO NOTHING
  RETURNING x.* INTO b;
  replayed := NOT FOUND;
  IF replayed THEN
    SELECT * INTO b FROM shadow.batches x WHERE x.experiment_id = p_experiment AND x.idem_key = p_idem_key;
    IF b.fingerprint <> v_fp THEN
      PERFORM ops._fail('SX005', format('idempotency key %L was used for another batch (%s observations)',
                                        p_idem_key, b.n), jsonb_build_object('batch_id', b.batch_id, 'count', b.n));
    END IF;
  ELSE
    -- Stamped with the canary step current now: guardrails judge each step on its own traffic.
    INSERT INTO shadow.observations (experiment_id, batch_id, arm, step_no, success, error, latency_ms, unit_id)
    SELECT p_experiment, b.batch_id, t.a, e.step_no, t.s, t.er, t.l, t.u
      FROM unnest(p_arms, p_success, p_error, p_latency_ms, coalesce(p_unit_ids, array_fill(NULL::text, ARRAY[n])))
           AS t(a, s, er, l, u);
  END IF;
  batch_id := b.batch_id; experiment_id := p_experiment; accepted := b.n; step_no := e.step_no;
  created_at := b.created_at;
END
$$;

-- Parallel arrays: the bulk path for DBAs, e.g.
--   \copy my_obs (arm, success, error, latency_ms) FROM 'obs.csv' CSV HEADER
--   SELECT * FROM shadow.record_observation_arrays(1, (SELECT array_agg(arm) FROM my_obs), ...);
CREATE OR REPLACE FUNCTION shadow.record_observation_arrays(
  p_experiment bigint, p_arms text[], p_success boolean[], p_error boolean[], p_latency_ms double precision[],
  p_idem_key text, p_unit_ids text[] DEFAULT NULL,
  OUT batch_id bigint, OUT experiment_id bigint, OUT accepted int, OUT step_no int, OUT created_at timestamptz,
  OUT replayed boolean)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT * FROM shadow._ingest(p_experiment, p_arms, p_success, p_error, p_latency_ms, p_unit_ids, p_idem_key);
$$;
COMMENT ON FUNCTION shadow.record_observation_arrays(
  bigint, text[], boolean[], boolean[], double precision[], text, text[]) IS
  'Record a batch of observations given as parallel arrays (arm, success, error, latency_ms, optional unit ids), '
  'idempotent by p_idem_key: the bulk path. Returns the batch; SX403 malformed batch, SX404 too many items, SX401 '
  'unknown experiment, SX005 key reused. Nothing is stored on error.';

-- A JSON array of {"arm", "success", "error" (default false), "latency_ms", "unit_id" (optional)}.
CREATE OR REPLACE FUNCTION shadow.record_observations(
  p_experiment bigint, p_batch jsonb, p_idem_key text,
  OUT batch_id bigint, OUT experiment_id bigint, OUT accepted int, OUT step_no int, OUT created_at timestamptz,
  OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_bad record;
  r record;
BEGIN
  PERFORM shadow._check_key(p_idem_key);
  PERFORM shadow._experiment(p_experiment);
  IF p_batch IS NULL OR jsonb_typeof(p_batch) <> 'array' THEN
    PERFORM ops._fail('SX403', 'the batch must be a JSON array of observations',
                      jsonb_build_object('type', jsonb_typeof(p_batch)));
  END IF;
  IF jsonb_array_length(p_batch) > 10000 THEN
    PERFORM ops._fail('SX404', format('a batch holds at most 10000 observations, got %s', jsonb_array_length(p_batch)),
                      jsonb_build_object('count', jsonb_array_length(p_batch), 'max', 10000));
  END IF;
  -- The first item that is not a well-formed observation, and what is wrong with it.
  SELECT i - 1 AS idx, problem INTO v_bad FROM (
    SELECT i, CASE
      WHEN jsonb_typeof(o) <> 'object' THEN 'is not an object'
      WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(o) k
                    WHERE k NOT IN ('arm', 'success', 'error', 'latency_ms', 'unit_id')) THEN 'has an unknown field'
      WHEN o->>'arm' IS NULL OR o->>'arm' NOT IN ('champion', 'challenger') OR jsonb_typeof(o->'arm') <> 'string'
        THEN 'arm must be "champion" or "challenger"'
      WHEN jsonb_typeof(o->'success') IS DISTINCT FROM 'boolean' THEN 'success must be true or false'
      WHEN coalesce(jsonb_typeof(o->'error'), 'boolean') <> 'boolean' THEN 'error must be true or false'
      WHEN jsonb_typeof(o->'latency_ms') IS DISTINCT FROM 'number' THEN 'latency_ms must be a number'
      WHEN (o->>'latency_ms')::numeric < 0 THEN 'latency_ms must not be negative'
      WHEN (o->>'latency_ms')::numeric > 1e12 THEN 'latency_ms is out of range'
      WHEN coalesce(jsonb_typeof(o->'unit_id'), 'null') NOT IN ('string', 'null') THEN 'unit_id must be a string'
    END AS problem
    FROM jsonb_array_elements(p_batch) WITH ORDINALITY t(o, i)) x
  WHERE problem IS NOT NULL ORDER BY i LIMIT 1;
  IF FOUND THEN
    PERFORM ops._fail('SX403', format('observation %s: %s', v_bad.idx, v_bad.problem),
                      jsonb_build_object('index', v_bad.idx, 'problem', v_bad.problem));
  END IF;
  SELECT * INTO r FROM shadow._ingest(p_experiment,
    ARRAY(SELECT o->>'arm' FROM jsonb_array_elements(p_batch) WITH ORDINALITY t(o, i) ORDER BY i),
    ARRAY(SELECT (o->'success')::boolean FROM jsonb_array_elements(p_batch) WITH ORDINALITY t(o, i) ORDER BY i),
    ARRAY(SELECT coalesce((o->'error')::boolean, false) FROM jsonb_array_elements(p_batch) WITH ORDINALITY t(o, i)
           ORDER BY i),
    ARRAY(SELECT (o->'latency_ms')::float8 FROM jsonb_array_elements(p_batch) WITH ORDINALITY t(o, i) ORDER BY i),
    ARRAY(SELECT o->>'unit_id' FROM jsonb_array_elements(p_batch) WITH ORDINALITY t(o, i) ORDER BY i),
    p_idem_key);
  batch_id := r.batch_id; experiment_id := r.experiment_id; accepted := r.accepted; step_no := r.step_no;
  created_at := r.created_at; replayed := r.replayed;
END
$$;
COMMENT ON FUNCTION shadow.record_observations(bigint, jsonb, text) IS
  'Record a batch of observations given as a JSON array of {arm, success, error, latency_ms, unit_id}, idempotent '
  'by p_idem_key. Returns the batch; SX403 malformed batch, SX404 too many items, SX401 unknown experiment, SX005 '
  'key reused. Nothing is stored on error.';
