-- Manual actions: pause, resume, promote, rollback, each with the actor and
-- reason, recorded in the audit trail. Idempotent per (experiment, key): a
-- replay returns the original event; the key with another action is SX005.
-- A terminal experiment (promoted, rolled back, inconclusive) takes no action: SX406.
CREATE OR REPLACE FUNCTION shadow._act(
  p_experiment bigint, p_kind text, p_actor text, p_reason text, p_idem_key text,
  OUT event_id bigint, OUT experiment_id bigint, OUT kind text, OUT state text, OUT weight double precision,
  OUT actor text, OUT reason text, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE plpgsql
AS $$
DECLARE
  e shadow.experiments;
  ev shadow.deployment_events;
  v_allowed text[] := CASE p_kind WHEN 'paused' THEN '{running}' WHEN 'resumed' THEN '{paused}'
                                  ELSE '{running,paused}' END;
  v_to text := CASE p_kind WHEN 'paused' THEN 'paused' WHEN 'resumed' THEN 'running' ELSE p_kind END;
BEGIN
  PERFORM shadow._check_key(p_idem_key);
  PERFORM shadow._check_text('actor', p_actor, 200);
  PERFORM shadow._check_text('reason', p_reason, 1000);
  SELECT * INTO e FROM shadow.experiments x WHERE x.experiment_id = p_experiment
     FOR NO KEY UPDATE;  -- not FOR UPDATE: ingestion's foreign-key checks (KEY SHARE) must not wait
  IF NOT FOUND THEN
    PERFORM shadow._experiment(p_experiment);  -- raises SX401
  END IF;
  SELECT * INTO ev FROM shadow.deployment_events d WHERE d.experiment_id = p_experiment AND d.idem_key = p_idem_key;
  IF FOUND THEN
    IF ev.kind <> p_kind OR ev.actor <> p_actor OR ev.reason <> p_reason THEN
      PERFORM ops._fail('SX005', format('idempotency key %L was used for %s by %s', p_idem_key, ev.kind, ev.actor),
                        jsonb_build_object('event_id', ev.event_id));
    END IF;
    replayed := true;
  ELSE
    IF NOT e.state = ANY (v_allowed) THEN
      PERFORM ops._fail('SX406', format('experiment %s is %s: cannot be %s', p_experiment, e.state, p_kind),
                        jsonb_build_object('experiment_id', p_experiment, 'state', e.state, 'action', p_kind));
    END IF;
    ev := shadow._transition(e, p_kind, v_to,
                             CASE p_kind WHEN 'promoted' THEN 100 WHEN 'rolled_back' THEN 0 ELSE e.weight END,
                             e.step_no, p_actor, p_reason, shadow._evidence(p_experiment), p_idem_key);
    replayed := false;
  END IF;
  event_id := ev.event_id; experiment_id := ev.experiment_id; kind := ev.kind; state := ev.to_state;
  weight := ev.to_weight; actor := ev.actor; reason := ev.reason; created_at := ev.created_at;
END
$$;

CREATE OR REPLACE FUNCTION shadow.pause(p_experiment bigint, p_actor text, p_reason text, p_idem_key text,
  OUT event_id bigint, OUT experiment_id bigint, OUT kind text, OUT state text, OUT weight double precision,
  OUT actor text, OUT reason text, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM shadow._act(p_experiment, 'paused', p_actor, p_reason, p_idem_key) $$;
COMMENT ON FUNCTION shadow.pause(bigint, text, text, text) IS
  'Pause a running experiment (all traffic back to the champion), recorded with actor and reason; idempotent by '
  'p_idem_key. SX401 unknown experiment, SX406 not running, SX005 key reused.';

CREATE OR REPLACE FUNCTION shadow.resume(p_experiment bigint, p_actor text, p_reason text, p_idem_key text,
  OUT event_id bigint, OUT experiment_id bigint, OUT kind text, OUT state text, OUT weight double precision,
  OUT actor text, OUT reason text, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM shadow._act(p_experiment, 'resumed', p_actor, p_reason, p_idem_key) $$;
COMMENT ON FUNCTION shadow.resume(bigint, text, text, text) IS
  'Resume a paused experiment at its canary step, recorded with actor and reason; idempotent by p_idem_key. SX401 '
  'unknown experiment, SX406 not paused, SX005 key reused.';

CREATE OR REPLACE FUNCTION shadow.promote(p_experiment bigint, p_actor text, p_reason text, p_idem_key text,
  OUT event_id bigint, OUT experiment_id bigint, OUT kind text, OUT state text, OUT weight double precision,
  OUT actor text, OUT reason text, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM shadow._act(p_experiment, 'promoted', p_actor, p_reason, p_idem_key) $$;
COMMENT ON FUNCTION shadow.promote(bigint, text, text, text) IS
  'Promote the challenger by hand (final), recorded with actor and reason; idempotent by p_idem_key. SX401 '
  'unknown experiment, SX406 already final, SX005 key reused.';

CREATE OR REPLACE FUNCTION shadow.rollback(p_experiment bigint, p_actor text, p_reason text, p_idem_key text,
  OUT event_id bigint, OUT experiment_id bigint, OUT kind text, OUT state text, OUT weight double precision,
  OUT actor text, OUT reason text, OUT created_at timestamptz, OUT replayed boolean)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM shadow._act(p_experiment, 'rolled_back', p_actor, p_reason, p_idem_key) $$;
COMMENT ON FUNCTION shadow.rollback(bigint, text, text, text) IS
  'Roll the experiment back to the champion by hand (final), recorded with actor and reason; idempotent by '
  'p_idem_key. SX401 unknown experiment, SX406 already final, SX005 key reused.';
