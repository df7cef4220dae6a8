-- Extensions the whole product relies on.
-- pg_cron can only be created in the database named by cron.database_name;
-- other databases (test databases cloned from a template, say) run without it
-- and have their jobs scheduled from the cron database instead.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE EXTENSION IF NOT EXISTS plpython3u;
DO $$
BEGIN
  IF current_database() = current_setting('cron.database_name', true) THEN
    CREATE EXTENSION IF NOT EXISTS pg_cron;
  END IF;
END
$$;
