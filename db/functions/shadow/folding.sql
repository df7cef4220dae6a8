-- Folding observations into the per-arm counts the Beta posteriors come from,
-- exactly once under repeated, concurrent or crashed runs:
--  * the watermark (shadow.fold_state.horizon) moves in the same transaction
--    as the counts, so a run that dies midway leaves both untouched;
--  * the watermark row is locked FOR UPDATE, so two runs cannot both fold the
--    same range: the second waits, then reads the first one's new horizon;
--  * the watermark is a transaction id, not an observation id: ids are drawn
--    at insert but rows become visible at commit, in another order. A run
--    folds the rows whose inserting transaction is below the oldest
--    transaction still running (its snapshot's xmin): all of those have
--    finished, so every committed one is visible now, and no row can later
--    appear below the horizon. A long-open transaction only delays folding.
CREATE OR REPLACE FUNCTION shadow._fold()
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
  v_from xid8;
  v_to xid8;
  v_n bigint;
BEGIN
  SELECT horizon INTO STRICT v_from FROM shadow.fold_state WHERE id FOR UPDATE;
  -- Taken after the lock: a fresh snapshot in READ COMMITTED.
  v_to := pg_snapshot_xmin(pg_current_snapshot());
  IF v_to <= v_from THEN
    RETURN 0;
  END IF;
  WITH agg AS MATERIALIZED (
    SELECT experiment_id, step_no, arm, shadow._latency_bucket(latency_ms) AS bucket, count(*) AS n,
           count(*) FILTER (WHERE success) AS successes, count(*) FILTER (WHERE error) AS errors
      FROM shadow.observations
     WHERE ins_xid >= v_from AND ins_xid < v_to
     GROUP BY 1, 2, 3, 4),
  stats AS (
    INSERT INTO shadow.arm_stats AS s (experiment_id, step_no, arm, n, successes, errors)
    SELECT experiment_id, step_no, arm, sum(n), sum(successes), sum(errors) FROM agg GROUP BY 1, 2, 3
    ON CONFLICT (experiment_id, step_no, arm) DO UPDATE
      SET n = s.n + excluded.n, successes = s.successes + excluded.successes, errors = s.errors + excluded.errors
    RETURNING 1),
  hist AS (
    INSERT INTO shadow.latency_hist AS h (experiment_id, step_no, arm, bucket, n)
    SELECT experiment_id, step_no, arm, bucket, n FROM agg
    ON CONFLICT (experiment_id, step_no, arm, bucket) DO UPDATE SET n = h.n + excluded.n
    RETURNING 1)
  SELECT coalesce((SELECT sum(n) FROM agg), 0) + 0 * (SELECT count(*) FROM stats) + 0 * (SELECT count(*) FROM hist)
    INTO v_n;
  UPDATE shadow.fold_state
     SET horizon = v_to, runs = runs + 1, folded = folded + v_n, folded_at = now()
   WHERE id;
  RETURN v_n;
END
$$;
