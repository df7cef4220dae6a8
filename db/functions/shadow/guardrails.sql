-- Guardrails: the challenger's error rate and p95 latency during the current
-- canary step, against absolute thresholds and against the champion (whose
-- reference is its whole history in the experiment: the champion does not
-- change, and at a 100% step it gets no new traffic). A check with too little
-- data is "inconclusive", never a pass; the overall status is "breach" if any
-- check breaches, else "inconclusive" if any check lacks data, else "pass".

-- Latency histogram bucket: log buckets 2% wide, so a p95 read from the
-- histogram (the bucket's upper edge) over-states the true p95 by < 2%, never under.
CREATE OR REPLACE FUNCTION shadow._latency_bucket(p_latency_ms double precision)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT floor(ln(1 + p_latency_ms) / ln(1.02))::int;
$$;

CREATE OR REPLACE FUNCTION shadow._bucket_upper_ms(p_bucket int)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT exp((p_bucket + 1) * ln(1.02)) - 1;
$$;

-- p95 latency of one arm, in one step (or the whole experiment when p_step is NULL).
CREATE OR REPLACE FUNCTION shadow._p95(p_experiment bigint, p_arm text, p_step int)
RETURNS double precision
LANGUAGE sql STABLE
AS $$
  WITH h AS (
    SELECT bucket, sum(n) AS n FROM shadow.latency_hist
     WHERE experiment_id = p_experiment AND arm = p_arm AND (p_step IS NULL OR step_no = p_step)
     GROUP BY bucket),
  c AS (SELECT bucket, sum(n) OVER (ORDER BY bucket) AS cum, sum(n) OVER () AS total FROM h)
  SELECT shadow._bucket_upper_ms(min(bucket)) FROM c WHERE cum >= ceil(0.95 * total);
$$;

CREATE OR REPLACE FUNCTION shadow._guardrails(e shadow.experiments)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  step jsonb := shadow._counts(e.experiment_id, e.step_no);
  whole jsonb := shadow._counts(e.experiment_id);
  ch_n bigint := (step->>'challenger_n')::bigint;
  ch_rate double precision;
  ref_n bigint := (whole->>'champion_n')::bigint;
  ref_rate double precision;
  ch_p95 double precision;
  ref_p95 double precision;
  enough boolean := ch_n >= e.guardrail_min_obs;
  ref_enough boolean := ref_n >= e.guardrail_min_obs;
  checks jsonb := '[]';
  v_status text;
BEGIN
  ch_rate := CASE WHEN ch_n > 0 THEN (step->>'challenger_errors')::float8 / ch_n END;
  ref_rate := CASE WHEN ref_n > 0 THEN (whole->>'champion_errors')::float8 / ref_n END;
  ch_p95 := shadow._p95(e.experiment_id, 'challenger', e.step_no);
  ref_p95 := shadow._p95(e.experiment_id, 'champion', NULL);
  -- Always: enough challenger traffic in this step to judge it at all.
  checks := checks || jsonb_build_object('check', 'challenger_data', 'value', ch_n,
    'threshold', e.guardrail_min_obs, 'status', CASE WHEN enough THEN 'pass' ELSE 'inconclusive' END);
  IF e.max_error_rate IS NOT NULL THEN
    checks := checks || jsonb_build_object('check', 'error_rate', 'value', ch_rate, 'threshold', e.max_error_rate,
      'status', CASE WHEN NOT enough THEN 'inconclusive' WHEN ch_rate > e.max_error_rate THEN 'breach' ELSE 'pass' END);
  END IF;
  IF e.max_error_rate_increase IS NOT NULL THEN
    checks := checks || jsonb_build_object('check', 'error_rate_vs_champion', 'value', ch_rate,
      'champion', ref_rate, 'threshold', e.max_error_rate_increase,
      'status', CASE WHEN NOT (enough AND ref_enough) THEN 'inconclusive'
                     WHEN ch_rate - ref_rate > e.max_error_rate_increase THEN 'breach' ELSE 'pass' END);
  END IF;
  IF e.max_p95_ms IS NOT NULL THEN
    checks := checks || jsonb_build_object('check', 'p95_latency_ms', 'value', ch_p95, 'threshold', e.max_p95_ms,
      'status', CASE WHEN NOT enough THEN 'inconclusive' WHEN ch_p95 > e.max_p95_ms THEN 'breach' ELSE 'pass' END);
  END IF;
  IF e.max_p95_ratio IS NOT NULL THEN
    checks := checks || jsonb_build_object('check', 'p95_latency_vs_champion', 'value', ch_p95,
      'champion', ref_p95, 'threshold', e.max_p95_ratio,
      'status', CASE WHEN NOT (enough AND ref_enough) THEN 'inconclusive'
                     WHEN ch_p95 > e.max_p95_ratio * ref_p95 THEN 'breach' ELSE 'pass' END);
  END IF;
  SELECT CASE WHEN bool_or(c->>'status' = 'breach') THEN 'breach'
              WHEN bool_or(c->>'status' = 'inconclusive') THEN 'inconclusive' ELSE 'pass' END
    INTO v_status FROM jsonb_array_elements(checks) c;
  RETURN jsonb_build_object('status', v_status, 'step_no', e.step_no, 'checks', checks,
    'breached', (SELECT coalesce(jsonb_agg(c->>'check'), '[]') FROM jsonb_array_elements(checks) c
                  WHERE c->>'status' = 'breach'));
END
$$;
