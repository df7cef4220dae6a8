-- Reaper of PostgreSQL's own prepared transactions (PREPARE TRANSACTION, as
-- psycopg's tpc_* API issues). An orphan - prepared, then its coordinator
-- vanished - keeps its row locks and pins the xmin horizon until someone
-- finishes it. ROLLBACK PREPARED cannot run inside a function or a
-- transaction block, so the database decides and records, and the rollback
-- itself is issued by `shieldx prepared reap` on a plain autocommit session
-- (see api/shieldx/cli/prepared.py). The pg_cron job below reports orphans
-- every minute so they show up even where the reaper is not scheduled.

-- The age past which a prepared transaction counts as orphaned:
-- ALTER DATABASE ... SET shieldx.prepared_max_age = '10 minutes' (the default).
CREATE OR REPLACE FUNCTION credits._prepared_max_age()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT coalesce(nullif(current_setting('shieldx.prepared_max_age', true), '')::interval, interval '10 minutes');
$$;

-- This database's prepared transactions, oldest first; overdue = older than p_max_age.
CREATE OR REPLACE FUNCTION credits.prepared_transactions(p_max_age interval DEFAULT NULL)
RETURNS TABLE (gid text, prepared_at timestamptz, age interval, owner text, overdue boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
  SELECT p.gid, p.prepared, now() - p.prepared, p.owner::text,
         now() - p.prepared > coalesce(p_max_age, credits._prepared_max_age())
    FROM pg_catalog.pg_prepared_xacts p
   WHERE p.database = current_database()
   ORDER BY p.prepared;
$$;
COMMENT ON FUNCTION credits.prepared_transactions(interval) IS
  'This database''s native prepared transactions (PREPARE TRANSACTION), oldest first, with overdue = older than '
  'p_max_age (default: the configured maximum age).';

-- Record each overdue prepared transaction once (the job; safe to rerun).
CREATE OR REPLACE FUNCTION credits.report_prepared(p_max_age interval DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  n int;
BEGIN
  INSERT INTO credits.prepared_reaper_log (gid, database, owner, prepared_at, age, action, detail)
  SELECT p.gid, current_database(), p.owner, p.prepared_at, p.age, 'overdue',
         'older than ' || coalesce(p_max_age, credits._prepared_max_age())
    FROM credits.prepared_transactions(p_max_age) p WHERE p.overdue
  ON CONFLICT (gid, prepared_at) WHERE action = 'overdue' DO NOTHING;
  GET DIAGNOSTICS n = ROW_COUNT;
  RETURN n;
END
$$;
COMMENT ON FUNCTION credits.report_prepared(interval) IS
  'Job: record each prepared transaction older than p_max_age once, for operators to resolve. Returns how many '
  'were newly recorded; safe to rerun.';

-- What the reaper did to one prepared transaction.
CREATE OR REPLACE FUNCTION credits._record_prepared_action(
  p_gid text, p_owner text, p_prepared_at timestamptz, p_action text, p_detail text DEFAULT NULL)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
  INSERT INTO credits.prepared_reaper_log (gid, database, owner, prepared_at, age, action, detail)
  VALUES (p_gid, current_database(), p_owner, p_prepared_at, now() - p_prepared_at, p_action, p_detail);
$$;

CREATE OR REPLACE TRIGGER prepared_reaper_log_append_only
  BEFORE UPDATE OR DELETE ON credits.prepared_reaper_log
  FOR EACH STATEMENT EXECUTE FUNCTION ops._refuse_change();
ALTER TABLE credits.prepared_reaper_log ENABLE ALWAYS TRIGGER prepared_reaper_log_append_only;

SELECT ops._register_job('shieldx-report-prepared', '* * * * *', 'SELECT credits.report_prepared()',
  'Record native prepared transactions older than shieldx.prepared_max_age (shieldx prepared reap rolls them back).');
