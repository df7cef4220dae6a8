-- The shadow job, every minute: fold new observations (exactly once), then for
-- each running or paused experiment compute the posterior summary and the
-- sequential decision (PL/Python with scipy: imported here, in the job's
-- backend, never on a request path), judge the guardrails, and move the
-- canary. One transaction, as pg_cron runs it; an experiment whose evaluation
-- fails is skipped (its subtransaction rolls back) and retried next run.
CREATE OR REPLACE FUNCTION shadow._evaluate(p_experiment bigint)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
  e shadow.experiments;
  c jsonb;
  v_post jsonb;
  v_guard jsonb;
BEGIN
  SELECT * INTO e FROM shadow.experiments WHERE experiment_id = p_experiment AND state IN ('running', 'paused')
     FOR NO KEY UPDATE;  -- lets ingestion (FK KEY SHARE) proceed while the job evaluates
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  c := shadow._counts(p_experiment);
  v_post := shadow._posterior_summary((c->>'champion_n')::bigint, (c->>'champion_successes')::bigint,
                                      (c->>'challenger_n')::bigint, (c->>'challenger_successes')::bigint);
  v_guard := shadow._guardrails(e);
  INSERT INTO shadow.evaluations AS v (experiment_id, posterior, guardrails, computed_at)
  VALUES (p_experiment, v_post, v_guard, now())
  ON CONFLICT (experiment_id) DO UPDATE
    SET posterior = excluded.posterior, guardrails = excluded.guardrails, computed_at = excluded.computed_at;
  RETURN shadow._advance(e, v_post, v_guard);
END
$$;

CREATE OR REPLACE FUNCTION shadow._job_evaluate()
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_folded bigint;
  v_id bigint;
  v_done text;
  v_actions jsonb := '{}';
  v_failed jsonb := '{}';
BEGIN
  v_folded := shadow._fold();
  FOR v_id IN SELECT experiment_id FROM shadow.experiments WHERE state IN ('running', 'paused')
               ORDER BY experiment_id LOOP
    BEGIN
      v_done := shadow._evaluate(v_id);
      IF v_done IS NOT NULL THEN
        v_actions := v_actions || jsonb_build_object(v_id::text, v_done);
      END IF;
    EXCEPTION WHEN OTHERS THEN
      v_failed := v_failed || jsonb_build_object(v_id::text, SQLERRM);
      RAISE WARNING 'shadow: evaluating experiment % failed: %', v_id, SQLERRM;
    END;
  END LOOP;
  RETURN jsonb_build_object('folded', v_folded, 'transitions', v_actions, 'failed', v_failed);
END
$$;

SELECT ops._register_job('shieldx-shadow-evaluate', '* * * * *', 'SELECT shadow._job_evaluate()',
  'Shadow evaluation: fold observations into Beta posteriors (exactly once), decide, move canaries, '
  || 'roll back on breach');
