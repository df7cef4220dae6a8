-- What monitoring reads but must not recompute on every scrape: the results
-- of audit verify and reconcile runs (recorded by their jobs) and of backups
-- (recorded by `shieldx backup run`), plus the purge of run histories.
-- The facts themselves are in db/functions/monitoring/metrics.sql.

SELECT ops._make_append_only('ops.audit_verify_runs');
SELECT ops._make_append_only('ops.reconcile_runs');
SELECT ops._make_append_only('ops.backups');

-- The job shieldx-audit-verify: an incremental audit.verify() (each chain
-- from the last signed checkpoint's head on, checkpoints and the journal
-- included), recorded. A verify that cannot run (no audit key, say) raises,
-- so pg_cron records the job as failed and nothing is recorded here.
CREATE OR REPLACE FUNCTION ops._job_audit_verify()
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_started timestamptz := clock_timestamp();
  v record;
BEGIN
  SELECT * INTO v FROM audit.verify(true, true);
  INSERT INTO ops.audit_verify_runs (started_at, finished_at, incremental, since_checkpoint, ok, entries_checked,
                                     broken_streams, stream, seq, problem)
  VALUES (v_started, clock_timestamp(), true, v.since_checkpoint, v.ok, v.entries_checked, v.broken_streams,
          v.stream, v.seq, v.problem);
  RETURN v.ok;
END
$$;
COMMENT ON FUNCTION ops._job_audit_verify() IS
  'Job shieldx-audit-verify: run an incremental audit.verify() and record its result in ops.audit_verify_runs.';

-- The job shieldx-reconcile: how many accounts fail credits.reconcile() and
-- credits.reconcile_holds(), recorded (both read one snapshot).
CREATE OR REPLACE FUNCTION ops._job_reconcile()
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  v_started timestamptz := clock_timestamp();
  v_ledger  bigint;
  v_holds   bigint;
BEGIN
  SELECT count(*) INTO v_ledger FROM credits.reconcile();
  SELECT count(*) INTO v_holds FROM credits.reconcile_holds();
  INSERT INTO ops.reconcile_runs (started_at, finished_at, ledger_mismatches, hold_mismatches)
  VALUES (v_started, clock_timestamp(), v_ledger, v_holds);
  RETURN v_ledger + v_holds;
END
$$;
COMMENT ON FUNCTION ops._job_reconcile() IS
  'Job shieldx-reconcile: count the accounts credits.reconcile() and credits.reconcile_holds() report and record '
  'it in ops.reconcile_runs.';

-- The job shieldx-purge-history: pg_cron's run history older than
-- p_cron_keep (every database's runs: the table lives in the cron database
-- only), and verify and reconcile runs older than p_runs_keep. Safe to rerun.
CREATE OR REPLACE FUNCTION ops._job_purge_history(p_cron_keep interval DEFAULT interval '7 days',
                                                  p_runs_keep interval DEFAULT interval '90 days')
RETURNS TABLE (relation text, removed bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  n bigint;
BEGIN
  IF to_regclass('cron.job_run_details') IS NOT NULL THEN
    DELETE FROM cron.job_run_details d WHERE coalesce(d.end_time, d.start_time) < now() - p_cron_keep;
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'cron.job_run_details'; removed := n;
    RETURN NEXT;
  END IF;
  PERFORM ops._allow_removal(true);
  DELETE FROM ops.audit_verify_runs r WHERE r.finished_at < now() - p_runs_keep;
  GET DIAGNOSTICS n = ROW_COUNT;
  relation := 'ops.audit_verify_runs'; removed := n;
  RETURN NEXT;
  DELETE FROM ops.reconcile_runs r WHERE r.finished_at < now() - p_runs_keep;
  GET DIAGNOSTICS n = ROW_COUNT;
  relation := 'ops.reconcile_runs'; removed := n;
  RETURN NEXT;
  PERFORM ops._allow_removal(false);
END
$$;
COMMENT ON FUNCTION ops._job_purge_history(interval, interval) IS
  'Job shieldx-purge-history: delete pg_cron run history older than 7 days and verify/reconcile runs older than '
  '90 days.';

-- Record one backup attempt (`shieldx backup run` calls this, as a superuser,
-- on the primary). Idempotent: the same attempt recorded twice keeps one row.
CREATE OR REPLACE FUNCTION ops._record_backup(p_stanza text, p_kind text, p_started_at timestamptz,
                                              p_finished_at timestamptz, p_outcome text, p_label text DEFAULT NULL,
                                              p_detail text DEFAULT NULL, p_host text DEFAULT NULL)
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  WITH ins AS (
    INSERT INTO ops.backups (stanza, kind, started_at, finished_at, outcome, label, detail, host)
    VALUES (p_stanza, p_kind, p_started_at, p_finished_at, p_outcome, p_label, left(p_detail, 4000), p_host)
    ON CONFLICT ON CONSTRAINT backups_attempt_once DO NOTHING
    RETURNING backup_id)
  SELECT backup_id FROM ins
  UNION ALL
  SELECT b.backup_id FROM ops.backups b
   WHERE b.stanza = p_stanza AND b.kind = p_kind AND b.started_at = p_started_at AND NOT EXISTS (SELECT 1 FROM ins);
$$;
COMMENT ON FUNCTION ops._record_backup(text, text, timestamptz, timestamptz, text, text, text, text) IS
  'Record one pgBackRest backup attempt (stanza, type, start, end, outcome, label) in ops.backups; idempotent per'
  ' attempt.';

SELECT ops._register_job('shieldx-audit-verify', '5-59/15 * * * *', 'SELECT ops._job_audit_verify()',
  'Verify the audit chains incrementally from the last checkpoint and record the result (ops.audit_verify_runs).');
SELECT ops._register_job('shieldx-reconcile', '*/30 * * * *', 'SELECT ops._job_reconcile()',
  'Count reconcile() and reconcile_holds() mismatches and record them (ops.reconcile_runs).');
SELECT ops._register_job('shieldx-purge-history', '23 4 * * *', 'SELECT * FROM ops._job_purge_history()',
  'Delete pg_cron run history older than 7 days and verify/reconcile runs older than 90 days.');
