"""Database facts for monitoring (schema monitoring) and the role that reads them.

The facts are read-only aggregates: the monitoring role calls them and
nothing else, and a scrape never waits for a ledger write's locks.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.types.json import Jsonb

from helpers import call, raises, setup_accounts

FACTS = [
    "monitoring.jobs()",
    "monitoring.audit()",
    "monitoring.holds()",
    "monitoring.dist()",
    "monitoring.prepared()",
    "monitoring.reconcile()",
    "monitoring.shadow_experiments()",
    "monitoring.shadow_rollbacks()",
    "monitoring.replication()",
    "monitoring.backup()",
]


def _wait_until(db, condition_sql: str, args=(), timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not db.execute(condition_sql, args).fetchone()["ok"]:
        assert time.monotonic() < deadline, condition_sql
        time.sleep(0.1)


def test_every_public_monitoring_function_is_a_fact_the_monitor_may_call(db):
    public = {
        r["fn"]
        for r in db.execute("""
            SELECT p.proname || '()' AS fn FROM pg_proc p
             WHERE p.pronamespace = 'monitoring'::regnamespace AND p.proname NOT LIKE '\\_%'""")
    }
    assert public == {f.removeprefix("monitoring.") for f in FACTS}
    bad = db.execute("""
        SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
         WHERE p.pronamespace = 'monitoring'::regnamespace AND p.proname NOT LIKE '\\_%'
           AND (p.provolatile <> 's' OR NOT ('search_path=pg_catalog, pg_temp' = ANY (p.proconfig))
                OR NOT ('lock_timeout=100ms' = ANY (p.proconfig))
                OR p.prosecdef <> (p.proname <> 'replication')
                OR pg_get_userbyid(p.proowner) <> 'shieldx_owner'
                OR obj_description(p.oid, 'pg_proc') IS NULL)""").fetchall()
    assert bad == []


def test_monitor_role_calls_the_facts_and_reads_nothing_else(db, connect):
    setup_accounts(db)
    mon = connect("shieldx_monitor")
    for fact in FACTS:
        mon.execute(f"SELECT * FROM {fact}").fetchall()
    for statement in (
        "SELECT * FROM credits.accounts",
        "SELECT * FROM ops.jobs",
        "SELECT * FROM ops.backups",
        "SELECT * FROM audit.log",
        "SELECT * FROM credits.reconcile()",
        "SELECT * FROM ops.health()",
        "SELECT monitoring._cron_interval_seconds('* * * * *')",
        "SELECT ops._job_reconcile()",
    ):
        with raises("42501"):
            mon.execute(statement)
    # Its sessions are read-only with short timeouts, whatever it runs.
    settings = mon.execute("""
        SELECT current_setting('default_transaction_read_only') AS ro, current_setting('lock_timeout') AS lt,
               current_setting('statement_timeout') AS st""").fetchone()
    assert settings == {"ro": "on", "lt": "100ms", "st": "5s"}
    assert mon.execute("SELECT pg_has_role('pg_read_all_stats', 'MEMBER') AS m").fetchone()["m"]
    assert not mon.execute("SELECT pg_has_role('pg_monitor', 'MEMBER') AS m").fetchone()["m"]


def test_a_scrape_never_waits_for_a_ledger_write(db, connect):
    """A ledger write holds its row locks (account, hold, distributed transaction) while the facts are read."""
    a, b = setup_accounts(db)
    hold = call(db, "credits.reserve", "acme", b, 10, "h-lock")["hold_id"]
    legs = Jsonb(
        [{"tenant_id": "acme", "account_id": a, "amount": -5}, {"tenant_id": "acme", "account_id": b, "amount": 5}]
    )
    dist = call(db, "credits.dist_begin", "x-lock", legs)["dist_tx_id"]
    writer = connect()
    writer.execute("BEGIN")
    call(writer, "credits.consume", "acme", a, 1, "lock-1")
    call(writer, "credits.commit_hold", "acme", hold, 10, "lock-2")
    writer.execute("SELECT 1 FROM credits.dist_transactions WHERE dist_tx_id = %s FOR UPDATE", (dist,))
    locked = db.execute(
        "SELECT count(*) AS n FROM pg_locks WHERE pid = %s AND locktype = 'transactionid'", (writer.info.backend_pid,)
    ).fetchone()["n"]
    assert locked == 1  # the writer's transaction holds row locks
    mon = connect("shieldx_monitor")
    mon.execute("SET lock_timeout = '10ms'")
    for fact in FACTS:
        mon.execute(f"SELECT * FROM {fact}").fetchall()  # a wait would fail with 55P03
    writer.execute("ROLLBACK")
    # And the other way round: a scrape's open transaction does not hold up a write.
    mon.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    for fact in FACTS:
        mon.execute(f"SELECT * FROM {fact}").fetchall()
    writer.execute("SET lock_timeout = '1s'")
    call(writer, "credits.consume", "acme", a, 1, "after-scrape")
    call(writer, "credits.commit_hold", "acme", hold, 10, "after-scrape-2")
    mon.execute("ROLLBACK")


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        ("* * * * *", 60),
        ("*/15 * * * *", 900),
        ("5-59/15 * * * *", 900),
        ("17 3 * * *", 86400),
        ("0,30 9-17 * * 1-5", (2 * 24 + 15.5) * 3600),  # Friday 17:30 to Monday 09:00
        ("0 2 * * 7", 7 * 86400),
        ("@hourly", 3600),
        ("0 0 1 * *", 31 * 86400),
        ("bogus", None),
        ("*/0 * * * *", None),
        ("61 * * * *", None),
    ],
)
def test_expected_interval_is_the_longest_gap_of_the_schedule(db, schedule, seconds):
    got = db.execute("SELECT monitoring._cron_interval_seconds(%s) AS s", (schedule,)).fetchone()["s"]
    assert got == seconds


def test_jobs_without_pg_cron_list_the_registry_with_no_runs(db):
    rows = {r["job"]: r for r in db.execute("SELECT * FROM monitoring.jobs()")}
    registered = {r["job_name"] for r in db.execute("SELECT job_name FROM ops.jobs")}
    assert set(rows) == registered
    assert {"shieldx-audit-verify", "shieldx-reconcile", "shieldx-purge-history"} <= registered
    assert rows["shieldx-expire-holds"]["expected_interval_seconds"] == 60
    assert rows["shieldx-reconcile"]["expected_interval_seconds"] == 1800
    assert all(r["last_run_failed"] == 0 and r["failures_last_hour"] == 0 for r in rows.values())
    # Never run here: silent since registration, which grows.
    before = rows["shieldx-reconcile"]["last_success_age_seconds"]
    _wait_until(
        db,
        "SELECT last_success_age_seconds > %s AS ok FROM monitoring.jobs() WHERE job = 'shieldx-reconcile'",
        (before,),
    )


def test_holds_dist_and_prepared_facts(db, dsn):
    a, b = setup_accounts(db)
    assert call(db, "monitoring.holds") == {"active": 0, "expired_unreleased": 0, "oldest_overdue_seconds": 0}
    call(db, "credits.reserve", "acme", a, 10, "live", "1 hour")
    short = call(db, "credits.reserve", "acme", b, 10, "short", "1 second")
    _wait_until(db, "SELECT now() > %s AS ok", (short["expires_at"],))
    holds = call(db, "monitoring.holds")
    assert (holds["active"], holds["expired_unreleased"]) == (1, 1)
    assert holds["oldest_overdue_seconds"] > 0
    db.execute("SELECT * FROM credits.expire_holds()")  # the job releases it
    assert call(db, "monitoring.holds") == {"active": 1, "expired_unreleased": 0, "oldest_overdue_seconds": 0}

    legs = Jsonb(
        [{"tenant_id": "acme", "account_id": a, "amount": -5}, {"tenant_id": "acme", "account_id": b, "amount": 5}]
    )
    tx = call(db, "credits.dist_begin", "mon-1", legs, "1 second")
    assert call(db, "monitoring.dist")["undecided"] == 1
    _wait_until(db, "SELECT now() > %s AS ok", (tx["deadline"],))
    dist = call(db, "monitoring.dist")
    assert (dist["undecided"], dist["overdue"]) == (1, 1)
    assert dist["oldest_undecided_age_seconds"] > 0

    assert call(db, "monitoring.prepared") == {"xacts": 0, "overdue": 0, "oldest_age_seconds": 0}
    gid = f"mon-prepared-{db.info.dbname}"
    with psycopg.connect(dsn) as other:
        other.execute("SELECT 1")
        other.execute(f"PREPARE TRANSACTION '{gid}'")
    try:
        assert call(db, "monitoring.prepared")["xacts"] == 1
        db.execute("SET shieldx.prepared_max_age = '0 seconds'")
        _wait_until(db, "SELECT overdue = 1 AS ok FROM monitoring.prepared()")
    finally:
        db.execute(f"ROLLBACK PREPARED '{gid}'")


def test_reconcile_fact_is_the_last_recorded_run_not_a_recomputation(db):
    a, _ = setup_accounts(db)
    first = call(db, "monitoring.reconcile")
    assert first["mismatches"] is None  # no run recorded yet
    assert db.execute("SELECT ops._job_reconcile() AS n").fetchone()["n"] == 0
    assert call(db, "monitoring.reconcile")["mismatches"] == 0
    # A balance edited behind the guards: the fact changes only when the job runs again.
    db.execute("ALTER TABLE credits.accounts DISABLE TRIGGER USER")
    db.execute("UPDATE credits.accounts SET balance = balance + 1 WHERE account_id = %s", (a,))
    db.execute("ALTER TABLE credits.accounts ENABLE TRIGGER USER")
    assert call(db, "monitoring.reconcile")["mismatches"] == 0
    assert db.execute("SELECT ops._job_reconcile() AS n").fetchone()["n"] == 1
    assert call(db, "monitoring.reconcile")["mismatches"] == 1
    with raises("42501"):  # the record is append-only
        db.execute("UPDATE ops.reconcile_runs SET ledger_mismatches = 0")


def test_audit_verify_job_records_its_result(db):
    setup_accounts(db)
    assert call(db, "monitoring.audit")["last_verify_ok"] is None
    db.execute("SELECT * FROM audit.checkpoint('manual')")
    assert db.execute("SELECT ops._job_audit_verify() AS ok").fetchone()["ok"] is True
    assert call(db, "monitoring.audit")["last_verify_ok"] == 1
    # An entry altered by a superuser with the guards off: the next run records the failure.
    db.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only")
    db.execute("UPDATE audit.log SET payload = payload || ' ' WHERE seq = (SELECT max(seq) FROM audit.log)")
    db.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only")
    assert db.execute("SELECT ops._job_audit_verify() AS ok").fetchone()["ok"] is False
    assert call(db, "monitoring.audit")["last_verify_ok"] == 0
    run = db.execute("SELECT * FROM ops.audit_verify_runs ORDER BY run_id DESC LIMIT 1").fetchone()
    assert run["broken_streams"] >= 1 and run["problem"]


def test_backup_fact_and_idempotent_record(db):
    fact = call(db, "monitoring.backup")
    assert fact == {"last_success_age_seconds": float("inf"), "last_success_timestamp_seconds": 0}
    args = ("shieldx", "full", "2026-01-01 00:00:00+00", "2026-01-01 00:05:00+00", "succeeded", "20260101-000000F")
    first = db.execute("SELECT ops._record_backup(%s, %s, %s, %s, %s, %s) AS id", args).fetchone()["id"]
    again = db.execute("SELECT ops._record_backup(%s, %s, %s, %s, %s, %s) AS id", args).fetchone()["id"]
    assert first == again
    assert db.execute("SELECT count(*) AS n FROM ops.backups").fetchone()["n"] == 1
    db.execute(
        "SELECT ops._record_backup('shieldx', 'diff', '2026-01-02 00:00+00', '2026-01-02 00:01+00', 'failed', NULL, "
        "'exit 1')"
    )
    fact = call(db, "monitoring.backup")
    assert fact["last_success_timestamp_seconds"] == 1767225900  # 2026-01-01 00:05 UTC: the failure does not count
    assert fact["last_success_age_seconds"] > 0
    with raises("23514"):  # a success names its backup
        db.execute("SELECT ops._record_backup('shieldx', 'full', now(), now(), 'succeeded')")
    with raises("42501"):
        db.execute("DELETE FROM ops.backups")


def test_purge_history_is_idempotent(db):
    setup_accounts(db)
    db.execute("SELECT ops._job_reconcile()")
    first = {r["relation"]: r["removed"] for r in db.execute("SELECT * FROM ops._job_purge_history()")}
    assert first == {"ops.audit_verify_runs": 0, "ops.reconcile_runs": 0}  # no pg_cron in a test database
    gone = {r["relation"]: r["removed"] for r in db.execute("SELECT * FROM ops._job_purge_history('7 days', '0 s')")}
    assert gone["ops.reconcile_runs"] == 1
    again = {r["relation"]: r["removed"] for r in db.execute("SELECT * FROM ops._job_purge_history('7 days', '0 s')")}
    assert again["ops.reconcile_runs"] == 0


def test_shadow_and_replication_facts_exist_on_a_single_node(db):
    states = {r["state"]: r["experiments"] for r in db.execute("SELECT * FROM monitoring.shadow_experiments()")}
    assert states == dict.fromkeys(["inconclusive", "paused", "promoted", "rolled_back", "running"], 0)
    assert call(db, "monitoring.shadow_rollbacks") == {"total": 0}
    assert call(db, "monitoring.replication") == {"sync_standbys": 0, "standbys": 0, "max_replay_lag_seconds": 0}
