"""The real postgres_exporter (Debian's prometheus-postgres-exporter) with the
queries file deploy/monitoring/exporter/queries.yaml, logged in as
shieldx_monitor: every database metric of the contract is exported, with the
values of a seeded situation, and a failing query shows as an exporter error."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from metric_names import DATABASE_METRICS

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "deploy" / "monitoring" / "exporter" / "queries.yaml"
BINARY = "prometheus-postgres-exporter"
PORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$")


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format -> {(name, labels without `server`): value}."""
    out: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(
            (k, v) for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or "") if k != "server"
        )
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics[(name, frozenset(labels.items()))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def exporter() -> Iterator[Callable[[str], Callable[[], dict]]]:
    """Start the exporter against a database (as shieldx_monitor); returns a scrape function."""
    if shutil.which(BINARY) is None:
        pytest.skip(f"{BINARY} not found: install the Debian package prometheus-postgres-exporter (make test does)")
    procs: list[subprocess.Popen] = []

    def start(dbname: str) -> Callable[[], dict]:
        port = _free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATA_SOURCE_NAME": f"postgresql://shieldx_monitor@127.0.0.1:{PORT}/{dbname}?sslmode=disable",
        }
        proc = subprocess.Popen(
            [
                BINARY,
                f"--extend.query-path={QUERIES}",
                "--disable-default-metrics",
                "--disable-settings-metrics",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, f"{BINARY} exited: {proc.stderr.read() if proc.stderr else ''}"
            try:
                httpx.get(url, timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"{BINARY} did not answer on {url}"
                time.sleep(0.2)

        def scrape() -> dict:
            return parse(httpx.get(url, timeout=10).text)

        return scrape

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _call(db: psycopg.Connection, fn: str, *args: object) -> dict:
    row = db.execute(f"SELECT * FROM {fn}({', '.join(['%s'] * len(args))})", args).fetchone()
    assert row is not None
    return row


def _wait_until(db: psycopg.Connection, condition_sql: str, args: tuple = ()) -> None:
    deadline = time.monotonic() + 10
    while not db.execute(condition_sql, args).fetchone()["ok"]:
        assert time.monotonic() < deadline, condition_sql
        time.sleep(0.1)


def _seed(db: psycopg.Connection) -> None:
    """Two accounts, an expired unreleased hold, an overdue distributed transaction,
    a recorded verify and reconcile, a recorded backup."""
    _call(db, "credits.create_tenant", "acme", "Acme")
    a = _call(db, "credits.create_account", "acme", "a", "open-a")["account_id"]
    b = _call(db, "credits.create_account", "acme", "b", "open-b")["account_id"]
    for acc in (a, b):
        _call(db, "credits.grant_credits", "acme", acc, 100, f"seed-{acc}")
    _call(db, "credits.reserve", "acme", a, 10, "live", "1 hour")
    short = _call(db, "credits.reserve", "acme", b, 10, "short", "1 second")
    legs = Jsonb(
        [{"tenant_id": "acme", "account_id": a, "amount": -5}, {"tenant_id": "acme", "account_id": b, "amount": 5}]
    )
    tx = _call(db, "credits.dist_begin", "seed-1", legs, "1 second")
    _wait_until(db, "SELECT now() > greatest(%s, %s) AS ok", (short["expires_at"], tx["deadline"]))
    db.execute("SELECT * FROM audit.checkpoint('manual')")
    assert db.execute("SELECT ops._job_audit_verify() AS ok").fetchone()["ok"]
    assert db.execute("SELECT ops._job_reconcile() AS n").fetchone()["n"] == 0
    db.execute(
        "SELECT ops._record_backup('shieldx', 'full', '2026-01-01 00:00+00', '2026-01-01 00:05+00', 'succeeded', "
        "'20260101-000000F')"
    )


def test_every_database_metric_is_exported_with_the_seeded_values(db, exporter):
    _seed(db)
    metrics = exporter(db.info.dbname)()
    names = {name for name, _ in metrics}
    assert [m for m in DATABASE_METRICS if m not in names] == []
    assert value(metrics, "pg_exporter_last_scrape_error") == 0
    assert value(metrics, "shieldx_holds_expired_unreleased") == 1
    assert value(metrics, "shieldx_holds_active") == 1
    assert value(metrics, "shieldx_holds_oldest_overdue_seconds") > 0
    assert value(metrics, "shieldx_dist_undecided") == 1
    assert value(metrics, "shieldx_dist_overdue") == 1
    assert value(metrics, "shieldx_prepared_xacts") == 0
    assert value(metrics, "shieldx_audit_last_verify_ok") == 1
    assert value(metrics, "shieldx_reconcile_mismatches") == 0
    assert value(metrics, "shieldx_backup_last_success_timestamp_seconds") == 1767225900
    assert value(metrics, "shieldx_backup_last_success_age_seconds") > 0
    assert value(metrics, "shieldx_shadow_experiments", state="running") == 0
    assert value(metrics, "shieldx_shadow_rollbacks_total") == 0
    assert value(metrics, "shieldx_replication_standbys") == 0  # a single node
    assert value(metrics, "shieldx_replication_sync_standbys") == 0
    # No pg_cron in a test database: the registry's jobs, none failed, each with its schedule's interval.
    assert value(metrics, "shieldx_job_expected_interval_seconds", job="shieldx-expire-holds") == 60
    assert value(metrics, "shieldx_job_expected_interval_seconds", job="shieldx-reconcile") == 1800
    assert value(metrics, "shieldx_job_last_run_failed", job="shieldx-audit-verify") == 0
    # The hold is released by its job: the next scrape says so.
    db.execute("SELECT * FROM credits.expire_holds()")
    assert value(exporter(db.info.dbname)(), "shieldx_holds_expired_unreleased") == 0


def test_a_failing_query_shows_as_an_exporter_error_not_a_gap(db, exporter):
    scrape = exporter(db.info.dbname)
    assert value(scrape(), "pg_exporter_last_scrape_error") == 0
    db.execute("REVOKE EXECUTE ON FUNCTION monitoring.holds() FROM shieldx_monitor")
    broken = scrape()
    assert value(broken, "pg_exporter_last_scrape_error") == 1
    assert ("shieldx_holds_active", frozenset()) not in broken  # the failed family is missing...
    assert ("shieldx_dist_undecided", frozenset()) in broken  # ...the others are still there
    db.execute("GRANT EXECUTE ON FUNCTION monitoring.holds() TO shieldx_monitor")
    assert value(scrape(), "pg_exporter_last_scrape_error") == 0


@pytest.mark.slow
def test_a_failing_pg_cron_job_is_exported_from_the_cron_database(db, exporter):
    """pg_cron lives in the cron database only: a job there that fails for real shows as failed."""
    cron_db = db.execute("SELECT current_setting('cron.database_name') AS d").fetchone()["d"]
    name = f"shieldx-probe-fails-{os.getpid()}"
    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{PORT}/{cron_db}", autocommit=True, row_factory=dict_row
    ) as cron:
        assert cron.execute("SELECT to_regproc('monitoring.jobs') IS NOT NULL AS ok").fetchone()["ok"], (
            f"the cron database {cron_db} is not migrated (shieldx db migrate)"
        )
        cron.execute("SELECT cron.schedule(%s, '* * * * *', 'SELECT 1/0')", (name,))
        try:
            deadline = time.monotonic() + 80  # one-minute resolution, plus slack
            while not cron.execute(
                "SELECT count(*) AS n FROM cron.job_run_details d JOIN cron.job j USING (jobid) "
                "WHERE j.jobname = %s AND d.status = 'failed'",
                (name,),
            ).fetchone()["n"]:
                assert time.monotonic() < deadline, "pg_cron did not run the probe job"
                time.sleep(1)
            metrics = exporter(cron_db)()
            assert value(metrics, "shieldx_job_last_run_failed", job=name) == 1
            assert value(metrics, "shieldx_job_failures_last_hour", job=name) >= 1
            assert value(metrics, "shieldx_job_expected_interval_seconds", job=name) == 60
            assert value(metrics, "pg_exporter_last_scrape_error") == 0
            purged = {r["relation"] for r in cron.execute("SELECT * FROM ops._job_purge_history()")}
            assert "cron.job_run_details" in purged  # the purge job reaches pg_cron's history there
            registered = [r["job_name"] for r in cron.execute("SELECT job_name FROM ops.jobs")]
            for job in registered:  # every registered job is a series too
                assert ("shieldx_job_last_run_failed", frozenset({("job", job)})) in metrics
        finally:
            jobid = cron.execute("SELECT jobid FROM cron.job WHERE jobname = %s", (name,)).fetchone()["jobid"]
            cron.execute("SELECT cron.unschedule(%s)", (name,))
            cron.execute("DELETE FROM cron.job_run_details WHERE jobid = %s", (jobid,))
