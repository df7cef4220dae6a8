-- Experiments: a champion and a challenger version of one rule, a success
-- metric, guardrails and a canary plan. Created idempotently (the key names the
-- call; a replay with other arguments is SX005); creation is the first entry
-- of the deployment audit trail.
CREATE OR REPLACE FUNCTION shadow._config(e shadow.experiments)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
AS $$
  SELECT jsonb_build_object(
    'name', e.name, 'rule_id', e.rule_id, 'champion_version', e.champion_version,
    'challenger_version', e.challenger_version, 'metric', e.metric, 'steps', to_jsonb(e.steps),
    'min_obs_per_step', e.min_obs_per_step, 'min_step_seconds', extract(epoch FROM e.min_step_duration),
    'max_error_rate', e.max_error_rate, 'max_error_rate_increase', e.max_error_rate_increase,
    'max_p95_ms', e.max_p95_ms, 'max_p95_ratio', e.max_p95_ratio, 'guardrail_min_obs', e.guardrail_min_obs,
    'breach_limit', e.breach_limit, 'breach_mode', e.breach_mode);
$$;

CREATE OR REPLACE FUNCTION shadow.create_experiment(
  p_name text, p_rule_id text, p_champion_version int, p_challenger_version int,
  p_idem_key text, p_actor text,
  p_metric text DEFAULT 'success_rate',
  p_steps numeric[] DEFAULT '{1,5,25,50,100}',
  p_min_obs_per_step bigint DEFAULT 1000,
  p_min_step_duration interval DEFAULT '10 minutes',
  p_max_error_rate double precision DEFAULT 0.05,
  p_max_error_rate_increase double precision DEFAULT 0.01,
  p_max_p95_ms double precision DEFAULT NULL,
  p_max_p95_ratio double precision DEFAULT 1.25,
  p_guardrail_min_obs int DEFAULT 100,
  p_breach_limit int DEFAULT 1,
  p_breach_mode text DEFAULT 'consecutive',
  OUT experiment_id bigint, OUT state text, OUT step_no int, OUT weight double precision,
  OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  e shadow.experiments;
  v_bad text;
BEGIN
  PERFORM shadow._check_key(p_idem_key);
  PERFORM shadow._check_text('name', p_name, 200);
  PERFORM shadow._check_text('actor', p_actor, 200);
  PERFORM shadow._check_text('metric', p_metric, 100);
  v_bad := CASE
    WHEN p_steps IS NULL OR cardinality(p_steps) NOT BETWEEN 1 AND 20 THEN 'steps must list 1 to 20 traffic percentages'
    WHEN array_position(p_steps, NULL) IS NOT NULL
      OR EXISTS (SELECT 1 FROM unnest(p_steps) s WHERE s <= 0 OR s > 100) THEN 'every step must be in (0, 100] percent'
    WHEN EXISTS (SELECT 1 FROM unnest(p_steps) WITH ORDINALITY a(s, i)
                   JOIN unnest(p_steps) WITH ORDINALITY b(s, i) ON b.i = a.i + 1 WHERE b.s <= a.s)
      THEN 'steps must be strictly increasing'
    WHEN p_min_obs_per_step IS NULL OR p_min_obs_per_step < 1 THEN 'min_obs_per_step must be at least 1'
    WHEN p_min_step_duration IS NULL OR p_min_step_duration < interval '0' THEN 'min_step_duration must be >= 0'
    WHEN p_max_error_rate NOT BETWEEN 0 AND 1 THEN 'max_error_rate must be a fraction between 0 and 1'
    WHEN p_max_error_rate_increase NOT BETWEEN 0 AND 1 THEN 'max_error_rate_increase must be between 0 and 1'
    WHEN p_max_p95_ms <= 0 OR p_max_p95_ms = 'NaN' THEN 'max_p95_ms must be positive'
    WHEN p_max_p95_ratio <= 0 OR p_max_p95_ratio = 'NaN' THEN 'max_p95_ratio must be positive'
    WHEN p_guardrail_min_obs IS NULL OR p_guardrail_min_obs < 1 THEN 'guardrail_min_obs must be at least 1'
    WHEN p_breach_limit IS NULL OR p_breach_limit < 1 THEN 'breach_limit must be at least 1'
    WHEN p_breach_mode IS NULL OR p_breach_mode NOT IN ('consecutive', 'cumulative')
      THEN 'breach_mode must be consecutive or cumulative'
    WHEN p_champion_version IS NOT DISTINCT FROM p_challenger_version
      THEN 'champion and challenger must be different versions'
  END;
  IF v_bad IS NOT NULL THEN
    PERFORM ops._fail('SX405', v_bad, jsonb_build_object('name', p_name));
  END IF;
  IF NOT EXISTS (SELECT 1 FROM shadow.rule_versions v WHERE v.rule_id = p_rule_id AND v.version = p_champion_version)
     OR NOT EXISTS (SELECT 1 FROM shadow.rule_versions v WHERE v.rule_id = p_rule_id AND v.version = p_challenger_version)
  THEN
    PERFORM ops._fail('SX402', format('rule %s has no version %s or %s', coalesce(p_rule_id, 'NULL'),
                                      p_champion_version, p_challenger_version),
                      jsonb_build_object('rule_id', p_rule_id, 'champion_version', p_champion_version,
                                         'challenger_version', p_challenger_version));
  END IF;

  INSERT INTO shadow.experiments AS x (
    name, rule_id, champion_version, challenger_version, metric, steps, min_obs_per_step, min_step_duration,
    max_error_rate, max_error_rate_increase, max_p95_ms, max_p95_ratio, guardrail_min_obs, breach_limit,
    breach_mode, state, step_no, weight, created_by, idem_key)
  VALUES (p_name, p_rule_id, p_champion_version, p_challenger_version, p_metric, p_steps, p_min_obs_per_step,
    p_min_step_duration, p_max_error_rate, p_max_error_rate_increase, p_max_p95_ms, p_max_p95_ratio,
    p_guardrail_min_obs, p_breach_limit, p_breach_mode, 'running', 1, p_steps[1], p_actor, p_idem_key)
  ON CONFLICT DO NOTHING
  RETURNING x.* INTO e;
  replayed := NOT FOUND;
  IF replayed THEN
    SELECT * INTO e FROM shadow.experiments x WHERE x.idem_key = p_idem_key;
    IF NOT FOUND THEN
      PERFORM ops._fail('SX011', format('an experiment named %L already exists', p_name),
                        jsonb_build_object('name', p_name));
    END IF;
    -- Same key: the same call only if every argument matches.
    IF shadow._config(e) IS DISTINCT FROM jsonb_build_object(
         'name', p_name, 'rule_id', p_rule_id, 'champion_version', p_champion_version,
         'challenger_version', p_challenger_version, 'metric', p_metric, 'steps', to_jsonb(p_steps),
         'min_obs_per_step', p_min_obs_per_step, 'min_step_seconds', extract(epoch FROM p_min_step_duration),
         'max_error_rate', p_max_error_rate, 'max_error_rate_increase', p_max_error_rate_increase,
         'max_p95_ms', p_max_p95_ms, 'max_p95_ratio', p_max_p95_ratio, 'guardrail_min_obs', p_guardrail_min_obs,
         'breach_limit', p_breach_limit, 'breach_mode', p_breach_mode)
       OR e.created_by IS DISTINCT FROM p_actor THEN
      PERFORM ops._fail('SX005', format('idempotency key %L was used to create experiment %s', p_idem_key,
                                        e.experiment_id), jsonb_build_object('experiment_id', e.experiment_id));
    END IF;
  ELSE
    INSERT INTO shadow.deployment_events (experiment_id, kind, from_state, to_state, from_weight, to_weight,
                                          step_no, actor, reason, evidence, idem_key)
    VALUES (e.experiment_id, 'created', NULL, 'running', NULL, e.weight, 1, p_actor, 'experiment created',
            jsonb_build_object('config', shadow._config(e)), NULL);
  END IF;
  experiment_id := e.experiment_id; state := e.state; step_no := e.step_no; weight := e.weight;
  created_at := e.created_at;
END
$$;
COMMENT ON FUNCTION shadow.create_experiment(
  text, text, integer, integer, text, text, text, numeric[], bigint, interval, double precision,
  double precision, double precision, double precision, integer, integer, text) IS
  'Create a champion/challenger experiment on two versions of one rule: success metric, canary steps (percent), '
  'guardrails. Idempotent by p_idem_key; creation starts the audit trail. SX402 unknown rule or version, SX405 '
  'invalid configuration, SX005 key reused.';

-- Folded observation counts of an experiment (all steps, or one step).
CREATE OR REPLACE FUNCTION shadow._counts(p_experiment bigint, p_step int DEFAULT NULL)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT jsonb_build_object(
    'champion_n', coalesce(sum(n) FILTER (WHERE arm = 'champion'), 0),
    'champion_successes', coalesce(sum(successes) FILTER (WHERE arm = 'champion'), 0),
    'champion_errors', coalesce(sum(errors) FILTER (WHERE arm = 'champion'), 0),
    'challenger_n', coalesce(sum(n) FILTER (WHERE arm = 'challenger'), 0),
    'challenger_successes', coalesce(sum(successes) FILTER (WHERE arm = 'challenger'), 0),
    'challenger_errors', coalesce(sum(errors) FILTER (WHERE arm = 'challenger'), 0))
  FROM shadow.arm_stats WHERE experiment_id = p_experiment AND (p_step IS NULL OR step_no = p_step);
$$;

-- Status: where the canary stands, the posteriors (folded counts), and the
-- job's latest evaluation (P(win), expected loss, intervals, decision, guardrails).
CREATE OR REPLACE FUNCTION shadow.get_experiment(p_experiment bigint)
RETURNS TABLE (
  experiment_id bigint, name text, rule_id text, champion_version int, challenger_version int, metric text,
  state text, steps double precision[], step_no int, weight double precision, step_started_at timestamptz,
  config jsonb, breaches int, breaches_total int,
  champion_n bigint, champion_successes bigint, challenger_n bigint, challenger_successes bigint,
  champion_alpha bigint, champion_beta bigint, challenger_alpha bigint, challenger_beta bigint,
  p_challenger_better double precision, expected_loss_champion double precision,
  expected_loss_challenger double precision, champion_ci_low double precision, champion_ci_high double precision,
  challenger_ci_low double precision, challenger_ci_high double precision, lift double precision,
  decision text, log_lr_better double precision, log_lr_worse double precision,
  guardrail_status text, guardrails jsonb, evaluated_at timestamptz,
  created_by text, created_at timestamptz, updated_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  e shadow.experiments;
  c jsonb;
  v shadow.evaluations;
BEGIN
  e := shadow._experiment(p_experiment);
  c := shadow._counts(p_experiment);
  SELECT * INTO v FROM shadow.evaluations x WHERE x.experiment_id = p_experiment;
  experiment_id := e.experiment_id; name := e.name; rule_id := e.rule_id;
  champion_version := e.champion_version; challenger_version := e.challenger_version; metric := e.metric;
  state := e.state; steps := e.steps; step_no := e.step_no; weight := e.weight;
  step_started_at := e.step_started_at; config := shadow._config(e);
  breaches := e.breaches; breaches_total := e.breaches_total;
  champion_n := (c->>'champion_n')::bigint; champion_successes := (c->>'champion_successes')::bigint;
  challenger_n := (c->>'challenger_n')::bigint; challenger_successes := (c->>'challenger_successes')::bigint;
  champion_alpha := 1 + champion_successes; champion_beta := 1 + champion_n - champion_successes;
  challenger_alpha := 1 + challenger_successes; challenger_beta := 1 + challenger_n - challenger_successes;
  p_challenger_better := (v.posterior->>'p_challenger_better')::float8;
  expected_loss_champion := (v.posterior->>'expected_loss_champion')::float8;
  expected_loss_challenger := (v.posterior->>'expected_loss_challenger')::float8;
  champion_ci_low := (v.posterior #>> '{champion,ci_low}')::float8;
  champion_ci_high := (v.posterior #>> '{champion,ci_high}')::float8;
  challenger_ci_low := (v.posterior #>> '{challenger,ci_low}')::float8;
  challenger_ci_high := (v.posterior #>> '{challenger,ci_high}')::float8;
  lift := (v.posterior->>'lift')::float8;
  decision := coalesce(v.posterior->>'decision', 'continue');
  log_lr_better := (v.posterior->>'log_lr_better')::float8;
  log_lr_worse := (v.posterior->>'log_lr_worse')::float8;
  guardrail_status := coalesce(v.guardrails->>'status', 'inconclusive');
  guardrails := v.guardrails; evaluated_at := v.computed_at;
  created_by := e.created_by; created_at := e.created_at; updated_at := e.updated_at;
  RETURN NEXT;
END
$$;
COMMENT ON FUNCTION shadow.get_experiment(bigint) IS
  'An experiment''s status: canary step and weight, configuration, folded counts and Beta posteriors, and the '
  'job''s latest evaluation (P(challenger better), expected losses, intervals, decision, guardrails). SX401 '
  'unknown experiment.';

CREATE OR REPLACE FUNCTION shadow.list_experiments(p_after bigint DEFAULT NULL, p_limit int DEFAULT 100)
RETURNS TABLE (experiment_id bigint, name text, rule_id text, state text, step_no int, weight double precision,
               created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT e.experiment_id, e.name, e.rule_id, e.state, e.step_no, e.weight::float8, e.created_at
    FROM shadow.experiments e
   WHERE p_after IS NULL OR e.experiment_id > p_after
   ORDER BY e.experiment_id LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000);
$$;
COMMENT ON FUNCTION shadow.list_experiments(bigint, integer) IS
  'Experiments, keyset-paginated by experiment_id after p_after, at most p_limit.';

-- The deployment audit trail of one experiment, oldest first (keyset by event_id).
CREATE OR REPLACE FUNCTION shadow.list_events(p_experiment bigint, p_after bigint DEFAULT NULL,
                                              p_limit int DEFAULT 100)
RETURNS TABLE (event_id bigint, kind text, from_state text, to_state text, from_weight double precision,
               to_weight double precision, step_no int, actor text, reason text, evidence jsonb, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
  PERFORM shadow._experiment(p_experiment);
  RETURN QUERY
  SELECT d.event_id, d.kind, d.from_state, d.to_state, d.from_weight::float8, d.to_weight::float8, d.step_no, d.actor,
         d.reason, d.evidence, d.created_at
    FROM shadow.deployment_events d
   WHERE d.experiment_id = p_experiment AND (p_after IS NULL OR d.event_id > p_after)
   ORDER BY d.event_id LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000);
END
$$;
COMMENT ON FUNCTION shadow.list_events(bigint, bigint, integer) IS
  'An experiment''s deployment audit trail (created, steps, pauses, promotion, rollback, with actor, reason and '
  'evidence), oldest first, keyset by event_id after p_after. SX401 unknown experiment.';
