"""pg_cron for real: jobs registered in ops.jobs are scheduled in the cron
database, and pg_cron's background workers run commands in other databases."""

from __future__ import annotations

import os
import time

import psycopg
import pytest

PORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))


def _cron_db(db) -> str:
    return db.execute("SELECT current_setting('cron.database_name') AS d").fetchone()["d"]


def test_sync_cron_is_a_noop_outside_the_cron_database(db):
    assert _cron_db(db) != db.info.dbname  # the template is never the cron database
    db.execute("SELECT ops._register_job('shieldx-test-noop', '* * * * *', 'SELECT 1', 'test')")
    actions = db.execute("SELECT * FROM ops._sync_cron()").fetchall()
    assert actions == [{"job_name": None, "action": "pg_cron not installed in this database; nothing scheduled"}]


def test_cron_database_schedules_exactly_the_registered_jobs(db):
    """`make test` migrates the cron database first; its pg_cron must match its ops.jobs."""
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{PORT}/{_cron_db(db)}") as cron:
        registered = {r[0]: (r[1], r[2]) for r in cron.execute("SELECT job_name, schedule, command FROM ops.jobs")}
        scheduled = {
            r[0]: (r[1], r[2])
            for r in cron.execute(
                "SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE 'shieldx-%' "
                "AND database = current_database()"
            )
        }
    assert scheduled == registered


@pytest.mark.slow
def test_pg_cron_runs_a_job_in_another_database_within_a_minute(db):
    """Background workers (cron.use_background_workers=on) run the command in this test database."""
    db.execute("CREATE TABLE public.cron_probe (ran_at timestamptz NOT NULL DEFAULT clock_timestamp())")
    name = f"shieldx-probe-{db.info.dbname}"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{PORT}/{_cron_db(db)}", autocommit=True) as cron:
        cron.execute(
            "SELECT cron.schedule_in_database(%s, '* * * * *', 'INSERT INTO public.cron_probe DEFAULT VALUES', %s)",
            (name, db.info.dbname),
        )
        try:
            deadline = time.monotonic() + 75  # one-minute resolution, plus slack
            while time.monotonic() < deadline:
                if db.execute("SELECT count(*) AS n FROM public.cron_probe").fetchone()["n"]:
                    break
                time.sleep(1)
            status = cron.execute(
                "SELECT d.status FROM cron.job_run_details d JOIN cron.job j USING (jobid) WHERE j.jobname = %s",
                (name,),
            ).fetchall()
        finally:
            cron.execute("SELECT cron.unschedule(%s)", (name,))
    assert db.execute("SELECT count(*) AS n FROM public.cron_probe").fetchone()["n"] >= 1, status
