-- Argument checks shared by the shadow functions: bad input raises a named
-- error before anything is written. Private helpers carry no SET search_path
-- (they run inside a public SECURITY DEFINER function that fixed it).
CREATE OR REPLACE FUNCTION shadow._check_text(p_argument text, p_value text, p_max int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  IF p_value IS NULL OR length(p_value) NOT BETWEEN 1 AND p_max THEN
    PERFORM ops._fail('SX007', format('%s must be 1 to %s characters', p_argument, p_max),
                      jsonb_build_object('argument', p_argument));
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION shadow._check_key(p_idem_key text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  IF p_idem_key IS NULL OR length(p_idem_key) NOT BETWEEN 1 AND 255 THEN
    PERFORM ops._fail('SX006', 'idempotency key must be 1 to 255 characters',
                      jsonb_build_object('length', length(p_idem_key)));
  END IF;
END
$$;

-- The experiment row, or SX401.
CREATE OR REPLACE FUNCTION shadow._experiment(p_experiment bigint)
RETURNS shadow.experiments
LANGUAGE plpgsql STABLE
AS $$
DECLARE
  e shadow.experiments;
BEGIN
  SELECT * INTO e FROM shadow.experiments WHERE experiment_id = p_experiment;
  IF NOT FOUND THEN
    PERFORM ops._fail('SX401', format('experiment %s not found', coalesce(p_experiment::text, 'NULL')),
                      jsonb_build_object('experiment_id', p_experiment));
  END IF;
  RETURN e;
END
$$;
