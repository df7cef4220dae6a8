-- depends: 0001_extensions
-- Database roles. Roles are cluster-wide, so creation tolerates a role that
-- another database of the same cluster (a test database, say) already made.
--   shieldx_owner    owns every schema, table and function; never logs in.
--   shieldx_app      what the API logs in as: EXECUTE on public functions only.
--   shieldx_readonly SELECT on tables and EXECUTE on read-only functions.
--   shieldx_auditor  reads and verifies the audit trail.
-- Released before migrations set lock and statement timeouts; kept as it ran.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['shieldx_owner', 'shieldx_app', 'shieldx_readonly', 'shieldx_auditor'] LOOP
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
      END IF;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;  -- created concurrently by another database's migration
    END;
  END LOOP;
END
$$;
ALTER ROLE shieldx_app LOGIN;
-- The owner writes, so it needs the extension functions in its path.
GRANT USAGE ON SCHEMA public TO shieldx_owner;
