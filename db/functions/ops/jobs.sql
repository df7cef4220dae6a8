-- Maintenance jobs: registered by each domain, scheduled by pg_cron.
-- pg_cron lives only in the database named by cron.database_name; elsewhere
-- (test databases, say) _sync_cron() reports that and does nothing, and the
-- job functions are called directly. Every job must be safe to run twice or
-- to die midway: pg_cron gives no exactly-once guarantee, and after a
-- failover the new primary's pg_cron runs the same jobs.

CREATE OR REPLACE FUNCTION ops._register_job(p_name text, p_schedule text, p_command text, p_description text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO ops.jobs (job_name, schedule, command, description)
  VALUES (p_name, p_schedule, p_command, p_description)
  ON CONFLICT (job_name) DO UPDATE
    SET schedule = excluded.schedule, command = excluded.command, description = excluded.description;
$$;

-- Make pg_cron's job table match ops.jobs for this database. Returns what it did.
CREATE OR REPLACE FUNCTION ops._sync_cron()
RETURNS TABLE (job_name text, action text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  j record;
BEGIN
  IF to_regnamespace('cron') IS NULL THEN
    job_name := NULL; action := 'pg_cron not installed in this database; nothing scheduled';
    RETURN NEXT;
    RETURN;
  END IF;
  FOR j IN SELECT * FROM ops.jobs ORDER BY 1 LOOP
    PERFORM cron.schedule_in_database(j.job_name, j.schedule, j.command, current_database());
    job_name := j.job_name; action := 'scheduled ' || j.schedule;
    RETURN NEXT;
  END LOOP;
  FOR j IN EXECUTE
    'SELECT jobname FROM cron.job WHERE jobname LIKE ''shieldx-%'' AND database = current_database()
        AND jobname NOT IN (SELECT o.job_name FROM ops.jobs o)' LOOP
    PERFORM cron.unschedule(j.jobname);
    job_name := j.jobname; action := 'unscheduled';
    RETURN NEXT;
  END LOOP;
END
$$;
