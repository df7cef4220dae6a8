-- Shadow evaluation: a challenger version of a rule runs beside the champion;
-- the job decides from the evidence, moves traffic step by step, and can roll back.
SELECT rule_id, name, replayed FROM shadow.create_rule('waf', 'WAF blocking rule');
SELECT rule_id, version, replayed FROM shadow.add_rule_version('waf', '{"block_score": 0.8}', 'waf-v1');
SELECT rule_id, version, replayed FROM shadow.add_rule_version('waf', '{"block_score": 0.7}', 'waf-v2');
-- Champion v1, challenger v2; canary plan 1, 5, 25, 50, 100 % (the default).
SELECT experiment_id, state, step_no, weight, replayed
  FROM shadow.create_experiment('waf-0.7', 'waf', 1, 2, 'exp-waf-0.7', 'alice',
                                p_min_obs_per_step => 200, p_min_step_duration => '0', p_guardrail_min_obs => 100);
-- Which arm serves this client? Stable while the weight is unchanged.
SELECT arm, bucket, weight FROM shadow.assign(1, 'client-42');

-- Observations: a JSON batch (what the API sends) ...
SELECT batch_id, accepted, step_no, replayed FROM shadow.record_observations(1,
  '[{"arm": "champion", "success": true, "latency_ms": 12.5},
    {"arm": "challenger", "success": false, "error": false, "latency_ms": 14, "unit_id": "client-42"}]', 'batch-1');
-- ... or parallel arrays (the bulk path; \copy into a table of yours, then array_agg).
SELECT accepted FROM shadow.record_observation_arrays(1,
  array_fill('champion'::text, ARRAY[2000]), ARRAY(SELECT g % 10 = 0 FROM generate_series(1, 2000) AS g),
  array_fill(false, ARRAY[2000]), ARRAY(SELECT 10 + g % 7 FROM generate_series(1, 2000) AS g)::float8[], 'bulk-1');
SELECT accepted FROM shadow.record_observation_arrays(1,
  array_fill('challenger'::text, ARRAY[2000]), ARRAY(SELECT g % 8 = 0 FROM generate_series(1, 2000) AS g),
  array_fill(false, ARRAY[2000]), ARRAY(SELECT 10 + g % 7 FROM generate_series(1, 2000) AS g)::float8[], 'bulk-2');

-- pg_cron runs the job every minute. (Wait until the fold's horizon passes the
-- batches: it is the oldest transaction still running anywhere in the cluster.)
DO $$ BEGIN
  FOR i IN 1..1200 LOOP
    PERFORM shadow._fold();
    EXIT WHEN (SELECT count(*) FROM shadow.observations) = (SELECT sum(n) FROM shadow.arm_stats);
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT shadow._job_evaluate();
SELECT state, step_no, weight, champion_n, challenger_n, round(p_challenger_better::numeric, 4) AS p_better,
       round(lift::numeric, 3) AS lift, decision, guardrail_status
  FROM shadow.get_experiment(1);
SELECT c ->> 'check' AS "check", c ->> 'status' AS status FROM shadow.get_experiment(1) AS s,
       jsonb_array_elements(s.guardrails -> 'checks') AS c;

-- People act too, with their name and reason.
SELECT kind, state, weight, replayed FROM shadow.pause(1, 'bob', 'change freeze until Monday', 'pause-1');
SELECT kind, state, weight, replayed FROM shadow.resume(1, 'bob', 'freeze over', 'resume-1');

-- More traffic at 5%: the sequential test declares the challenger better; the job promotes it.
SELECT accepted FROM shadow.record_observation_arrays(1,
  array_fill('champion'::text, ARRAY[3000]), ARRAY(SELECT g % 10 = 0 FROM generate_series(1, 3000) AS g),
  array_fill(false, ARRAY[3000]), array_fill(11::float8, ARRAY[3000]), 'bulk-3');
SELECT accepted FROM shadow.record_observation_arrays(1,
  array_fill('challenger'::text, ARRAY[3000]), ARRAY(SELECT g % 8 = 0 FROM generate_series(1, 3000) AS g),
  array_fill(false, ARRAY[3000]), array_fill(11::float8, ARRAY[3000]), 'bulk-4');
DO $$ BEGIN
  FOR i IN 1..1200 LOOP
    PERFORM shadow._fold();
    EXIT WHEN (SELECT count(*) FROM shadow.observations) = (SELECT sum(n) FROM shadow.arm_stats);
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT shadow._job_evaluate();
SELECT state, weight, decision, round(log_lr_better::numeric, 3) AS log_lr_better,
       round(expected_loss_challenger::numeric, 6) AS loss_if_promoted
  FROM shadow.get_experiment(1);
SELECT arm FROM shadow.assign(1, 'client-42');

-- The deployment audit trail (append-only).
SELECT event_id, kind, from_weight, to_weight, actor, reason FROM shadow.list_events(1);
SELECT left(shadow.posterior_svg(1), 40) AS svg;

-- Refusals are named and store nothing.
\set VERBOSITY verbose
\set SHOW_CONTEXT never
SELECT * FROM shadow.record_observations(1, '[{"arm": "challenger", "success": true, "latency_ms": -3}]', 'bad-1');
SELECT * FROM shadow.record_observations(7, '[{"arm": "challenger", "success": true, "latency_ms": 3}]', 'bad-2');
SELECT * FROM shadow.rollback(1, 'bob', 'too late', 'rb-1');
\set VERBOSITY default
SELECT sqlstate, name, http_status FROM ops.error_codes() WHERE sqlstate BETWEEN 'SX400' AND 'SX499';
