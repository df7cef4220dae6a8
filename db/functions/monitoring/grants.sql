-- The monitoring role's rights, on top of the defaults (privileges.sql):
-- shieldx_monitor may use schema monitoring and execute its public functions,
-- nothing more; it has no USAGE on any other product schema, so it reads no
-- table. The owner may read (USAGE on schema cron; SELECT is PUBLIC's) pg_cron's job list and run history for this
-- database's jobs (pg_cron's own policies show a role only the jobs it
-- scheduled, and the migrating superuser scheduled them).
GRANT USAGE ON SCHEMA monitoring TO shieldx_monitor;
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
            WHERE p.pronamespace = 'monitoring'::regnamespace AND left(p.proname, 1) <> '_' LOOP
    EXECUTE format('GRANT EXECUTE ON ROUTINE %s TO shieldx_monitor', f);
  END LOOP;
  IF to_regnamespace('cron') IS NOT NULL THEN
    GRANT USAGE ON SCHEMA cron TO shieldx_owner;
    DROP POLICY IF EXISTS shieldx_owner_reads_jobs ON cron.job;
    CREATE POLICY shieldx_owner_reads_jobs ON cron.job FOR SELECT TO shieldx_owner
      USING (database = current_database());
    DROP POLICY IF EXISTS shieldx_owner_reads_runs ON cron.job_run_details;
    CREATE POLICY shieldx_owner_reads_runs ON cron.job_run_details FOR SELECT TO shieldx_owner
      USING (database = current_database());
  END IF;
END
$$;
