-- Deterministic assignment of a unit (request, client) to an arm. The unit's
-- bucket (0..9999) is a hash of its id seeded by the experiment id, so it is
-- the same on every call and independent across experiments; the unit is in
-- the challenger arm when bucket < weight * 100. The same unit therefore lands
-- in the same arm while the weight is unchanged, and a unit that was in the
-- challenger stays there as the canary grows (buckets only get added).
CREATE OR REPLACE FUNCTION shadow._bucket(p_experiment bigint, p_unit_id text)
RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT (((hashtextextended(p_unit_id, p_experiment) % 10000) + 10000) % 10000)::int;
$$;

CREATE OR REPLACE FUNCTION shadow.assign(
  p_experiment bigint, p_unit_id text,
  OUT arm text, OUT bucket int, OUT weight double precision, OUT step_no int, OUT state text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  e shadow.experiments;
BEGIN
  PERFORM shadow._check_text('unit_id', p_unit_id, 200);
  e := shadow._experiment(p_experiment);
  bucket := shadow._bucket(p_experiment, p_unit_id);
  arm := CASE WHEN bucket < e.weight * 100 THEN 'challenger' ELSE 'champion' END;
  weight := e.weight; step_no := e.step_no; state := e.state;
END
$$;
COMMENT ON FUNCTION shadow.assign(bigint, text) IS
  'The arm (champion or challenger) of one unit id in an experiment: a deterministic bucket 0..9999 compared with '
  'the canary weight. Returns arm, bucket, weight, step and state; SX401 unknown experiment, SX007 invalid unit '
  'id.';

-- Many units at once (one round trip for a batch of requests).
CREATE OR REPLACE FUNCTION shadow.assign_many(p_experiment bigint, p_unit_ids text[])
RETURNS TABLE (unit_id text, arm text, bucket int)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  e shadow.experiments;
BEGIN
  e := shadow._experiment(p_experiment);
  IF p_unit_ids IS NULL OR cardinality(p_unit_ids) > 100000
     OR EXISTS (SELECT 1 FROM unnest(p_unit_ids) u WHERE u IS NULL OR length(u) NOT BETWEEN 1 AND 200) THEN
    PERFORM ops._fail('SX007', 'unit_ids must be at most 100000 ids of 1 to 200 characters',
                      jsonb_build_object('argument', 'unit_ids'));
  END IF;
  RETURN QUERY
  SELECT u, CASE WHEN b < e.weight * 100 THEN 'challenger' ELSE 'champion' END, b
    FROM unnest(p_unit_ids) WITH ORDINALITY t(u, i), LATERAL shadow._bucket(p_experiment, u) b
   ORDER BY i;
END
$$;
COMMENT ON FUNCTION shadow.assign_many(bigint, text[]) IS
  'shadow.assign for many unit ids in one call. Returns one row per unit; SX401 unknown experiment, SX007 too '
  'many or invalid unit ids.';
