-- Unschedule and unregister the jobs this migration's function files added,
-- drop the policies that let the owner read pg_cron's history, the monitoring
-- schema, the records and the role (kept while another database still uses it).
DO $$
DECLARE j text;
BEGIN
  IF to_regclass('cron.job') IS NOT NULL THEN
    FOR j IN SELECT jobname FROM cron.job
              WHERE database = current_database()
                AND jobname IN ('shieldx-audit-verify', 'shieldx-reconcile', 'shieldx-purge-history') LOOP
      PERFORM cron.unschedule(j);
    END LOOP;
    DROP POLICY IF EXISTS shieldx_owner_reads_jobs ON cron.job;
    DROP POLICY IF EXISTS shieldx_owner_reads_runs ON cron.job_run_details;
    REVOKE USAGE ON SCHEMA cron FROM shieldx_owner;
  END IF;
END
$$;
DELETE FROM ops.jobs WHERE job_name IN ('shieldx-audit-verify', 'shieldx-reconcile', 'shieldx-purge-history');
DROP SCHEMA monitoring CASCADE;
DROP TABLE ops.backups;
DROP TABLE ops.reconcile_runs;
DROP TABLE ops.audit_verify_runs;
ALTER TABLE ops.jobs DROP COLUMN registered_at;
DO $$
BEGIN
  REVOKE pg_read_all_stats FROM shieldx_monitor;
  DROP ROLE IF EXISTS shieldx_monitor;
EXCEPTION WHEN dependent_objects_still_exist THEN
  RAISE NOTICE 'role shieldx_monitor is still used elsewhere in the cluster; kept';
END
$$;
