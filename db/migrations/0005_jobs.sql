-- depends: 0004_credits
-- The registry of maintenance jobs. Each domain registers its jobs from its
-- function files; ops._sync_cron() makes pg_cron match the registry.
SET ROLE shieldx_owner;
CREATE TABLE ops.jobs (
  job_name text PRIMARY KEY CHECK (job_name ~ '^shieldx-[a-z0-9-]+$'),
  schedule text NOT NULL,           -- cron syntax; pg_cron 1.4 resolves to the minute
  command  text NOT NULL,           -- run in this database by pg_cron
  description text NOT NULL
);
RESET ROLE;
