-- Facts for postgres_exporter (deploy/monitoring/exporter/queries.yaml), one
-- function per metric family. Each returns columns named so the exporter's
-- <query name>_<column> is the metric name. They are read-only aggregates
-- over plain MVCC reads (no FOR UPDATE, no advisory lock), so a scrape never
-- takes a lock a ledger write waits for; SET lock_timeout makes one give up
-- rather than queue behind DDL. Ages are in seconds. Where nothing has
-- happened yet, an age counts from the registration of the job that makes it
-- happen (ops.jobs.registered_at), so silence is never a gap.
-- Schema monitoring holds nothing else: shieldx_monitor may execute exactly
-- its public functions (grants.sql) and reads no table.

-- Expand one cron field ('*', 'n', 'a-b', with '/step', comma lists) into its
-- values within [p_lo, p_hi]; NULL for anything else (names, say).
CREATE OR REPLACE FUNCTION monitoring._cron_field(p_field text, p_lo int, p_hi int)
RETURNS int[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  part text;
  m    text[];
  lo   int;
  hi   int;
  vals int[] := '{}';
BEGIN
  FOREACH part IN ARRAY string_to_array(p_field, ',') LOOP
    m := regexp_match(part, '^(\*|([0-9]+)(-([0-9]+))?)(/([0-9]+))?$');
    IF m IS NULL OR m[6]::int = 0 THEN
      RETURN NULL;
    END IF;
    IF m[1] = '*' THEN
      lo := p_lo; hi := p_hi;
    ELSE
      lo := m[2]::int;
      hi := coalesce(m[4]::int, CASE WHEN m[6] IS NULL THEN lo ELSE p_hi END);
    END IF;
    IF lo < p_lo OR hi > p_hi OR lo > hi THEN
      RETURN NULL;
    END IF;
    vals := vals || ARRAY(SELECT generate_series(lo, hi, coalesce(m[6]::int, 1)));
  END LOOP;
  RETURN vals;
END
$$;
COMMENT ON FUNCTION monitoring._cron_field(text, int, int) IS
  'Values of one numeric cron field within [lo, hi]; NULL if the field is not numeric cron syntax.';

-- The longest gap between two runs of a pg_cron schedule, in seconds: what a
-- job's silence is measured against. Minute, hour and day-of-week fields are
-- expanded over a week; a day-of-month or month restriction is bounded by 31
-- or 366 days. NULL for a schedule it cannot read.
CREATE OR REPLACE FUNCTION monitoring._cron_interval_seconds(p_schedule text)
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
  f     text[];
  v_min int[];
  v_hr  int[];
  v_dow int[];
  v_gap int;
BEGIN
  f := regexp_split_to_array(btrim(CASE lower(btrim(p_schedule))
         WHEN '@hourly' THEN '0 * * * *' WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
         WHEN '@weekly' THEN '0 0 * * 0' WHEN '@monthly' THEN '0 0 1 * *' WHEN '@yearly' THEN '0 0 1 1 *'
         WHEN '@annually' THEN '0 0 1 1 *' ELSE p_schedule END), '\s+');
  IF cardinality(f) <> 5 THEN
    RETURN NULL;
  END IF;
  IF f[4] <> '*' THEN
    RETURN 366 * 86400;
  ELSIF f[3] <> '*' THEN
    RETURN 31 * 86400;
  END IF;
  v_min := monitoring._cron_field(f[1], 0, 59);
  v_hr := monitoring._cron_field(f[2], 0, 23);
  v_dow := monitoring._cron_field(f[5], 0, 7);
  IF v_min IS NULL OR v_hr IS NULL OR v_dow IS NULL THEN
    RETURN NULL;
  END IF;
  -- Minutes of the week at which it runs (7 = Sunday = 0); the gap after the
  -- last one wraps to the first one of the next week.
  SELECT max(g.gap) INTO v_gap
    FROM (SELECT coalesce(lead(t.m) OVER (ORDER BY t.m), min(t.m) OVER () + 10080) - t.m AS gap
            FROM (SELECT DISTINCT (d % 7) * 1440 + h * 60 + mi AS m
                    FROM unnest(v_dow) d, unnest(v_hr) h, unnest(v_min) mi) t) g;
  RETURN v_gap * 60;
END
$$;
COMMENT ON FUNCTION monitoring._cron_interval_seconds(text) IS
  'Longest gap between two runs of a cron schedule, in seconds (NULL if unreadable).';

-- One row per maintenance job: every job of the registry (ops.jobs) and every
-- shieldx-* job pg_cron runs in this database. Where pg_cron is not installed
-- (databases other than cron.database_name) the registry's jobs have no runs.
CREATE OR REPLACE FUNCTION monitoring.jobs()
RETURNS TABLE (job text, last_run_failed int, last_success_age_seconds double precision,
               failures_last_hour bigint, expected_interval_seconds double precision)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
BEGIN
  IF to_regclass('cron.job_run_details') IS NULL THEN
    RETURN QUERY
      SELECT o.job_name, 0, extract(epoch FROM now() - o.registered_at)::double precision, 0::bigint,
             monitoring._cron_interval_seconds(o.schedule)
        FROM ops.jobs o ORDER BY 1;
    RETURN;
  END IF;
  -- pg_cron's tables are readable by the owner through the policies of
  -- grants.sql (this database's jobs only).
  RETURN QUERY
    WITH j AS (
      SELECT coalesce(o.job_name, c.jobname) AS job, c.jobid, coalesce(o.schedule, c.schedule) AS schedule,
             o.registered_at
        FROM ops.jobs o
        FULL JOIN (SELECT cj.jobid, cj.jobname, cj.schedule FROM cron.job cj
                    WHERE cj.database = current_database() AND cj.jobname LIKE 'shieldx-%') c
          ON c.jobname = o.job_name),
    r AS (
      SELECT d.jobid,
             max(d.end_time) FILTER (WHERE d.status = 'succeeded') AS last_success,
             count(*) FILTER (WHERE d.status = 'failed'
                                AND coalesce(d.end_time, d.start_time) > now() - interval '1 hour') AS failures,
             (array_agg(d.status ORDER BY d.runid DESC) FILTER (WHERE d.status IN ('succeeded', 'failed')))[1]
               AS last_status,
             min(d.start_time) AS first_run
        FROM cron.job_run_details d
       WHERE d.jobid IN (SELECT j.jobid FROM j)
       GROUP BY d.jobid)
    SELECT j.job,
           CASE WHEN r.last_status = 'failed' THEN 1 ELSE 0 END,
           extract(epoch FROM now() - coalesce(r.last_success, j.registered_at, r.first_run))::double precision,
           coalesce(r.failures, 0),
           monitoring._cron_interval_seconds(j.schedule)
      FROM j LEFT JOIN r ON r.jobid = j.jobid
     ORDER BY 1;
END
$$;
COMMENT ON FUNCTION monitoring.jobs() IS
  'Per maintenance job: last finished run failed (0/1), seconds since its last success (or since it was '
  'registered), failed runs in the last hour, the longest gap its schedule allows.';

-- The audit trail: the last recorded verify (ops.audit_verify_runs; NULL ok
-- when none is recorded yet) and the last signed checkpoint.
CREATE OR REPLACE FUNCTION monitoring.audit(
  OUT last_verify_ok int, OUT last_verify_age_seconds double precision,
  OUT last_checkpoint_age_seconds double precision)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
DECLARE
  v_at timestamptz;
BEGIN
  SELECT CASE WHEN v.ok THEN 1 ELSE 0 END, v.finished_at INTO last_verify_ok, v_at
    FROM ops.audit_verify_runs v ORDER BY v.run_id DESC LIMIT 1;
  last_verify_age_seconds := extract(epoch FROM now() - coalesce(v_at,
    (SELECT o.registered_at FROM ops.jobs o WHERE o.job_name = 'shieldx-audit-verify')));
  last_checkpoint_age_seconds := extract(epoch FROM now() - coalesce(
    (SELECT c.created_at FROM audit.checkpoints c ORDER BY c.checkpoint_id DESC LIMIT 1),
    (SELECT o.registered_at FROM ops.jobs o WHERE o.job_name = 'shieldx-audit-checkpoint')));
END
$$;
COMMENT ON FUNCTION monitoring.audit() IS
  'Audit trail: last recorded verify passed (1/0; NULL before the first), its age, and the age of the last signed'
  ' checkpoint, in seconds.';

-- Holds: active (before their deadline), expired but not yet released by the
-- job shieldx-expire-holds, and how long the oldest of those is overdue.
CREATE OR REPLACE FUNCTION monitoring.holds(
  OUT active bigint, OUT expired_unreleased bigint, OUT oldest_overdue_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
  SELECT count(*) FILTER (WHERE h.expires_at > now()),
         count(*) FILTER (WHERE h.expires_at <= now()),
         coalesce(extract(epoch FROM now() - min(h.expires_at) FILTER (WHERE h.expires_at <= now())), 0)::double precision
    FROM credits.holds h WHERE h.status = 'active';
$$;
COMMENT ON FUNCTION monitoring.holds() IS
  'Holds: active, past their deadline but still unreleased, and seconds the oldest unreleased one is overdue (0 '
  'if none).';

-- Distributed transactions without a decision: how many, how many past their
-- deadline (recovery presumes abort for those), the age of the oldest.
CREATE OR REPLACE FUNCTION monitoring.dist(
  OUT undecided bigint, OUT overdue bigint, OUT oldest_undecided_age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
  SELECT count(*), count(*) FILTER (WHERE t.deadline < now()),
         coalesce(extract(epoch FROM now() - min(t.created_at)), 0)::double precision
    FROM credits.dist_transactions t
   WHERE t.state NOT IN ('committed', 'aborted') AND t.decision IS NULL;
$$;
COMMENT ON FUNCTION monitoring.dist() IS
  'Distributed transactions not yet decided: count, count past their deadline, seconds since the oldest began (0 '
  'if none).';

-- PostgreSQL's own prepared transactions of this database
-- (credits.prepared_transactions; overdue = older than shieldx.prepared_max_age).
CREATE OR REPLACE FUNCTION monitoring.prepared(
  OUT xacts bigint, OUT overdue bigint, OUT oldest_age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
  SELECT count(*), count(*) FILTER (WHERE p.overdue), coalesce(extract(epoch FROM max(p.age)), 0)::double precision
    FROM credits.prepared_transactions(NULL) p;
$$;
COMMENT ON FUNCTION monitoring.prepared() IS
  'Native prepared transactions of this database: count, count older than shieldx.prepared_max_age, age of the '
  'oldest in seconds.';

-- The last reconcile run (the job shieldx-reconcile records it; a scrape
-- never recomputes it): accounts in mismatch, NULL before the first run.
CREATE OR REPLACE FUNCTION monitoring.reconcile(OUT mismatches bigint, OUT last_run_age_seconds double precision)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
DECLARE
  v_at timestamptz;
BEGIN
  SELECT r.ledger_mismatches + r.hold_mismatches, r.finished_at INTO mismatches, v_at
    FROM ops.reconcile_runs r ORDER BY r.run_id DESC LIMIT 1;
  last_run_age_seconds := extract(epoch FROM now() - coalesce(v_at,
    (SELECT o.registered_at FROM ops.jobs o WHERE o.job_name = 'shieldx-reconcile')));
END
$$;
COMMENT ON FUNCTION monitoring.reconcile() IS
  'Last recorded reconcile run: accounts failing reconcile() or reconcile_holds() (NULL before the first run), '
  'and its age in seconds.';

-- Shadow experiments per state, every state listed (0 when none), so each
-- series exists from the start. The states are shadow.experiments' CHECK.
CREATE OR REPLACE FUNCTION monitoring.shadow_experiments()
RETURNS TABLE (state text, experiments bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
  SELECT s.state, count(e.experiment_id)
    FROM unnest(ARRAY['running', 'paused', 'promoted', 'rolled_back', 'inconclusive']) s(state)
    LEFT JOIN shadow.experiments e ON e.state = s.state
   GROUP BY s.state ORDER BY s.state;
$$;
COMMENT ON FUNCTION monitoring.shadow_experiments() IS 'Shadow experiments per state (every state, 0 when none).';

-- Rollbacks ever made (shadow.deployment_events is append-only, so this only grows: a counter).
CREATE OR REPLACE FUNCTION monitoring.shadow_rollbacks(OUT total bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
  SELECT count(*) FROM shadow.deployment_events d WHERE d.kind = 'rolled_back';
$$;
COMMENT ON FUNCTION monitoring.shadow_rollbacks() IS 'Shadow rollbacks ever recorded (a counter).';

-- Standbys streaming from this server. SECURITY INVOKER on purpose (the one
-- exception in this schema): pg_stat_replication shows sync_state and
-- replay_lag only to members of pg_read_all_stats, which shieldx_monitor is
-- and the owner is not. Base backups' WAL senders are not standbys.
CREATE OR REPLACE FUNCTION monitoring.replication(
  OUT sync_standbys bigint, OUT standbys bigint, OUT max_replay_lag_seconds double precision)
LANGUAGE sql STABLE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
  SELECT count(*) FILTER (WHERE r.sync_state IN ('sync', 'quorum')), count(*),
         coalesce(max(extract(epoch FROM r.replay_lag)), 0)::double precision
    FROM pg_catalog.pg_stat_replication r
   WHERE r.state IS DISTINCT FROM 'backup';
$$;
COMMENT ON FUNCTION monitoring.replication() IS
  'Standbys of this server: synchronous ones, all, and the largest replay lag in seconds (0 if none). Needs '
  'pg_read_all_stats.';

-- The last good backup (ops.backups, recorded by `shieldx backup run`): its
-- age, +Inf when there is none (no backup is infinitely stale), and its end
-- as a Unix time (0 when none).
CREATE OR REPLACE FUNCTION monitoring.backup(
  OUT last_success_age_seconds double precision, OUT last_success_timestamp_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '100ms'
AS $$
  SELECT coalesce(extract(epoch FROM now() - max(b.finished_at))::double precision, 'Infinity'),
         coalesce(extract(epoch FROM max(b.finished_at))::double precision, 0)
    FROM ops.backups b WHERE b.outcome = 'succeeded';
$$;
COMMENT ON FUNCTION monitoring.backup() IS
  'Last successful backup: its age in seconds (+Inf if none) and its end as a Unix timestamp (0 if none).';
