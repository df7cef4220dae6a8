-- The canary state machine. Every transition goes through _transition: one
-- guarded UPDATE of the experiment (it must still be in the state we read,
-- under the row lock the caller holds) and one row in the append-only audit
-- trail with the actor, the reason and the evidence at that moment.
--
--   running --step_advanced--> running (next step)      job: guardrails pass, step long and full enough
--   running --promoted-------> promoted (weight 100)    job: decision "challenger better" and guardrails pass
--   running --inconclusive---> inconclusive (weight 0)  job: last step done, no decision
--   running|paused --rolled_back--> rolled_back (0)     job: guardrail breach limit, or "challenger worse"
--   running --paused--> paused --resumed--> running     manual; promote/rollback manual too
CREATE OR REPLACE FUNCTION shadow._evidence(p_experiment bigint)
RETURNS jsonb
LANGUAGE sql STABLE
AS $$
  SELECT jsonb_build_object(
    'counts', shadow._counts(p_experiment),
    'step_counts', shadow._counts(p_experiment, e.step_no),
    'posterior', v.posterior, 'guardrails', v.guardrails, 'evaluated_at', v.computed_at)
  FROM shadow.experiments e LEFT JOIN shadow.evaluations v USING (experiment_id)
  WHERE e.experiment_id = p_experiment;
$$;

CREATE OR REPLACE FUNCTION shadow._transition(
  e shadow.experiments, p_kind text, p_to_state text, p_to_weight numeric, p_to_step int,
  p_actor text, p_reason text, p_evidence jsonb, p_idem_key text)
RETURNS shadow.deployment_events
LANGUAGE plpgsql
AS $$
DECLARE
  ev shadow.deployment_events;
BEGIN
  UPDATE shadow.experiments x
     SET state = p_to_state, weight = p_to_weight, step_no = p_to_step,
         step_started_at = CASE WHEN p_to_step <> x.step_no OR p_to_weight <> x.weight THEN now()
                                ELSE x.step_started_at END,
         breaches = CASE WHEN p_to_step <> x.step_no THEN 0 ELSE x.breaches END,
         updated_at = now()
   WHERE x.experiment_id = e.experiment_id AND x.state = e.state AND x.step_no = e.step_no;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'experiment % changed under a transition (lock not held?)', e.experiment_id
      USING ERRCODE = 'serialization_failure';
  END IF;
  INSERT INTO shadow.deployment_events AS d (experiment_id, kind, from_state, to_state, from_weight, to_weight,
                                             step_no, actor, reason, evidence, idem_key)
  VALUES (e.experiment_id, p_kind, e.state, p_to_state, e.weight, p_to_weight, p_to_step, p_actor, p_reason,
          coalesce(p_evidence, '{}'), p_idem_key)
  RETURNING d.* INTO ev;
  RETURN ev;
END
$$;

-- One job step for one experiment (row locked by the caller), given the job's
-- fresh posterior summary and guardrail verdict. Returns the transition made, if any.
CREATE OR REPLACE FUNCTION shadow._advance(e shadow.experiments, p_posterior jsonb, p_guardrails jsonb)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
  v_status text := p_guardrails->>'status';
  v_decision text := p_posterior->>'decision';
  v_step jsonb;
  v_evidence jsonb;
  actor constant text := 'shieldx-shadow-job';
BEGIN
  -- Breaches are counted consecutively (a pass resets) or cumulatively.
  IF v_status = 'breach' THEN
    UPDATE shadow.experiments x SET breaches = x.breaches + 1, breaches_total = x.breaches_total + 1,
                                    updated_at = now()
     WHERE x.experiment_id = e.experiment_id RETURNING x.* INTO e;
  ELSIF v_status = 'pass' AND e.breach_mode = 'consecutive' AND e.breaches > 0 THEN
    UPDATE shadow.experiments x SET breaches = 0, updated_at = now()
     WHERE x.experiment_id = e.experiment_id RETURNING x.* INTO e;
  END IF;
  v_evidence := shadow._evidence(e.experiment_id);
  IF v_status = 'breach' AND e.breaches >= e.breach_limit THEN
    PERFORM shadow._transition(e, 'rolled_back', 'rolled_back', 0, e.step_no, actor,
      format('guardrail breach (%s), %s of %s %s', (SELECT string_agg(c, ', ')
               FROM jsonb_array_elements_text(p_guardrails->'breached') c), e.breaches, e.breach_limit, e.breach_mode),
      v_evidence, NULL);
    RETURN 'rolled_back';
  END IF;
  IF e.state <> 'running' THEN
    RETURN NULL;  -- paused: guardrails still protect, nothing else moves
  END IF;
  IF v_decision = 'challenger_worse' THEN
    PERFORM shadow._transition(e, 'rolled_back', 'rolled_back', 0, e.step_no, actor,
      format('sequential test: challenger worse than champion (log LR %s >= %s)',
             round((p_posterior->>'log_lr_worse')::numeric, 3), round((p_posterior->>'log_bound_worse')::numeric, 3)),
      v_evidence, NULL);
    RETURN 'rolled_back';
  END IF;
  IF v_status <> 'pass' THEN
    RETURN NULL;  -- inconclusive guardrails: never advance or promote on missing data
  END IF;
  IF v_decision = 'challenger_better' THEN
    PERFORM shadow._transition(e, 'promoted', 'promoted', 100, e.step_no, actor,
      format('sequential test: challenger better than champion (log LR %s >= %s), P(better) = %s',
             round((p_posterior->>'log_lr_better')::numeric, 3), round((p_posterior->>'log_bound_better')::numeric, 3),
             round((p_posterior->>'p_challenger_better')::numeric, 6)),
      v_evidence, NULL);
    RETURN 'promoted';
  END IF;
  v_step := shadow._counts(e.experiment_id, e.step_no);
  IF (v_step->>'challenger_n')::bigint < e.min_obs_per_step OR now() - e.step_started_at < e.min_step_duration THEN
    RETURN NULL;
  END IF;
  IF e.step_no < cardinality(e.steps) THEN
    PERFORM shadow._transition(e, 'step_advanced', 'running', e.steps[e.step_no + 1], e.step_no + 1, actor,
      format('step %s (%s%%) passed its guardrails with %s challenger observations', e.step_no, e.weight,
             v_step->>'challenger_n'),
      v_evidence, NULL);
    RETURN 'step_advanced';
  END IF;
  PERFORM shadow._transition(e, 'inconclusive', 'inconclusive', 0, e.step_no, actor,
    'end of the canary plan without a decision: the champion stays', v_evidence, NULL);
  RETURN 'inconclusive';
END
$$;
