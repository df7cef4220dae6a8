"""The monitoring stack for real: a running API and postgres_exporter, Prometheus and Alertmanager
(Debian's packages) on free loopback ports with 1-second scrape and evaluation intervals, started by
shieldx_local.observe exactly as `make observe` does.

The rules are the real ones of deploy/monitoring/prometheus/rules, rendered mechanically into a test
copy in which every `for:` duration is FOR_IN_TESTS (some are 5m; expressions, labels and annotations
are untouched): see `shortened_rules`. Every wait is bounded.

- A fresh stack (`make run` + `make observe`: the API, and the exporter on the cluster's `shieldx`
  database where pg_cron runs): every target is up, every alerting rule loaded, `status` says so, a
  second `up` only checks. After the rules were evaluated, no alert is pending or firing except
  ShieldxBackupStale while that database has no recorded backup (docs/runbooks.md#shieldxbackupstale).
- Every dashboard query evaluates without error and, once traffic went through the API (consumes, a
  replay, a refusal, an unknown key, a rate-limited key), returns data; only the queries that need a
  Patroni target (alerting.NEEDS_PATRONI, an explicit list) are left to test_ha_failover.py.
- Faults, each firing in Prometheus (/api/v1/alerts) with its labels, reaching Alertmanager
  (/api/v2/alerts) with its receiver, and resolving in both after the repair:
  the API stopped (ShieldxApiDown); a pg_cron job whose command fails, in the pg_cron database
  (ShieldxCronJobFailing; repaired by correcting its command); an audit entry edited as a superuser,
  found by the verify job's function (ShieldxAuditVerifyFailed; repaired by restoring the entry, the
  next verify records ok); the last good backup growing older than 26 hours (ShieldxBackupStale, for
  its age, not a missing one; repaired by recording a fresh one).
The HA alerts (a standby stopped) are exercised against the Patroni cluster of
deploy/tests/test_ha_failover.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[2]
try:
    from shieldx_local.observe import BINARIES, EXPORTER_QUERIES, Stack, missing_packages, wait_until
except ImportError:  # deploy/local not on the import path (pytest's pythonpath setting puts it there)
    sys.path.insert(0, str(ROOT / "deploy" / "local"))
    from shieldx_local.observe import BINARIES, EXPORTER_QUERIES, Stack, missing_packages, wait_until

from alerting import (  # noqa: E402 - after the import path is settled
    NEEDS_PATRONI,
    active,
    dashboard_exprs,
    evaluated_since,
    firing,
    free_port,
    get_json,
    in_alertmanager,
    query,
    shortened_rules,
    wait_all_up,
)

pytestmark = pytest.mark.slow

PGPORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))
BACKUP_MARGIN = 30  # seconds the baseline's last backup is short of ShieldxBackupStale's threshold
# With 1 s scrapes and evaluations and `for: 2s`, an alert fires seconds after its cause; pg_cron
# runs jobs on minute boundaries, so a failing job takes up to a minute to fail and, once corrected,
# up to another to succeed.
FIRE_TIMEOUT = 60.0
CRON_TIMEOUT = 150.0
RESOLVE_TIMEOUT = 60.0


class Api:
    """The real API server (uvicorn), stoppable and restartable on the same port."""

    def __init__(self, database_url: str, port: int, log: Path) -> None:
        self.database_url, self.port, self.log = database_url, port, log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.database_url}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shieldx.cli.serve_main", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def live() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                return urllib.request.urlopen(f"{self.url}/health/live", timeout=2).status == 200
            except OSError:
                return False

        wait_until(live, 60, "the API to answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


def cron_db_url(user: str = "postgres") -> str:
    """The database pg_cron runs in (cron.database_name: the `shieldx` database of `make run`)."""
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{PGPORT}/postgres") as conn:
        row = conn.execute("SELECT current_setting('cron.database_name', true)").fetchone()
    name = row[0] if row and row[0] else "shieldx"
    return f"postgresql://{user}@127.0.0.1:{PGPORT}/{name}"


def monitor_dsn(url: str) -> str:
    return url.replace("postgres@", "shieldx_monitor@", 1) + "?sslmode=disable"


@dataclasses.dataclass(frozen=True)
class FaultStack(Stack):
    """The local stack plus a second postgres_exporter target: the pg_cron database's exporter."""

    cron_exporter_port: int = 0

    def prometheus_config(self) -> dict[str, Any]:
        config = super().prometheus_config()
        if self.cron_exporter_port:
            (exporter,) = [j for j in config["scrape_configs"] if j["job_name"] == "postgres-exporter"]
            exporter["static_configs"].append(
                {"targets": [f"127.0.0.1:{self.cron_exporter_port}"], "labels": {"database": "cron"}}
            )
        return config


class Exporter:
    """A postgres_exporter process of the test's own (the queries file of deploy/monitoring)."""

    def __init__(self, dsn: str, port: int, log: Path) -> None:
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    shutil.which(BINARIES["postgres-exporter"][0]) or BINARIES["postgres-exporter"][0],
                    f"--extend.query-path={EXPORTER_QUERIES}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                env={**os.environ, "DATA_SOURCE_NAME": dsn},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def require_packages() -> None:
    missing = missing_packages()
    if missing:
        pytest.fail(f"missing Debian packages {missing}: apt-get install {' '.join(missing)}")


def run_stack(observe: Stack, api: Api) -> Iterator[tuple[Stack, Api]]:
    api.start()
    try:
        observe.up(say=lambda _m: None)
        yield observe, api
    finally:
        api.stop()
        observe.down(say=lambda _m: None)


@pytest.fixture
def fresh_stack(dsn: str, tmp_path: Path) -> Iterator[tuple[Stack, Api]]:
    """What `make run` + `make observe` start: the exporter watches the pg_cron database."""
    require_packages()
    api = Api(dsn.replace("postgres@", "shieldx_app@", 1), free_port(), tmp_path / "api.log")
    observe = Stack(
        base=tmp_path / "observe",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        exporter_port=free_port(),
        api_port=api.port,
        dsn=monitor_dsn(cron_db_url()),
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_files=shortened_rules(tmp_path / "rules"),
    )
    yield from run_stack(observe, api)


@pytest.fixture
def fault_stack(dsn: str, tmp_path: Path) -> Iterator[tuple[FaultStack, Api]]:
    """The exporter watches this test's database; a second one the pg_cron database (for the job fault)."""
    require_packages()
    api = Api(dsn.replace("postgres@", "shieldx_app@", 1), free_port(), tmp_path / "api.log")
    cron_port = free_port()
    observe = FaultStack(
        base=tmp_path / "observe",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        exporter_port=free_port(),
        api_port=api.port,
        dsn=monitor_dsn(dsn),
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_files=shortened_rules(tmp_path / "rules"),
        cron_exporter_port=cron_port,
    )
    cron_exporter = Exporter(monitor_dsn(cron_db_url()), cron_port, tmp_path / "cron-exporter.log")
    try:
        yield from run_stack(observe, api)
    finally:
        cron_exporter.stop()


# --- traffic ----------------------------------------------------------------------------------
def http(method: str, url: str, body: dict | None = None, headers: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def traffic(db: psycopg.Connection, api: Api) -> None:
    """Consumes (and an idempotent replay), a refusal, an unknown key, a rate-limited key: every
    family of the API's metrics gets a series."""
    db.execute("SELECT credits.create_tenant('acme', 'Acme')")
    account = db.execute("SELECT account_id FROM credits.create_account('acme', 'a', 'open-a')").fetchone()[
        "account_id"
    ]
    db.execute("SELECT credits.grant_credits('acme', %s, 1000, 'seed')", (account,))
    key = db.execute("SELECT api_key FROM auth.create_key('acme', 'c', ARRAY['consumer'], 'k1', 1000, 1000)")
    consumer = {"Authorization": f"Bearer {key.fetchone()['api_key']}"}
    slow = db.execute("SELECT api_key FROM auth.create_key('acme', 's', ARRAY['consumer'], 'k2', 0.01, 1)")
    limited = {"Authorization": f"Bearer {slow.fetchone()['api_key']}"}
    consume = f"{api.url}/v1/tenants/acme/accounts/{account}/consume"
    for i in range(20):
        assert http("POST", consume, {"amount": 1}, {**consumer, "Idempotency-Key": f"c{i}"}) // 100 == 2
    assert http("POST", consume, {"amount": 1}, {**consumer, "Idempotency-Key": "c0"}) // 100 == 2  # a replay
    assert http("POST", consume, {"amount": 10**6}, {**consumer, "Idempotency-Key": "big"}) // 100 == 4
    assert http("POST", consume, {"amount": 1}, {"Authorization": "Bearer sx_nope", "Idempotency-Key": "x"}) == 401
    codes = [http("POST", consume, {"amount": 1}, {**limited, "Idempotency-Key": f"l{i}"}) for i in range(3)]
    assert 429 in codes, codes
    assert http("GET", f"{api.url}/health/ready") == 200


# --- a fresh stack ------------------------------------------------------------------------------
def test_monitoring_fresh_stack_is_up_quiet_and_fills_every_dashboard(
    fresh_stack: tuple[Stack, Api], db: psycopg.Connection
) -> None:
    observe, api = fresh_stack
    wait_all_up(observe)
    assert {t["job"] for t in observe.targets()} == {"shieldx-api", "postgres-exporter", "prometheus", "alertmanager"}
    rules = observe.rules()
    assert len(rules) >= 15 and all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    assert observe.status(say=lambda _m: None) is True

    # Quiet: once every group has been evaluated past the `for:` of the test copy with every target
    # scraped, nothing is pending or firing but what is genuinely wrong. The one expected: no backup
    # recorded yet in the watched database (+Inf age), which is how `make run` leaves it.
    with psycopg.connect(cron_db_url(), row_factory=dict_row) as cron:
        migrated = cron.execute("SELECT to_regproc('monitoring.backup') IS NOT NULL AS ok").fetchone()
        assert migrated and migrated["ok"], f"{cron_db_url()} is not migrated: run `shieldx db migrate` (make db)"
        backup = cron.execute("SELECT last_success_age_seconds AS age FROM monitoring.backup()").fetchone()
    expected = {"ShieldxBackupStale"} if backup and backup["age"] > 93600 else set()
    settled = time.time() + 3  # past FOR_IN_TESTS after the targets were up
    wait_until(lambda: time.time() > settled and evaluated_since(observe, settled), 30, "the rules to be evaluated")
    names = {a["labels"]["alertname"] for a in active(observe, state=None)}
    assert names == expected, active(observe, state=None)
    if expected:
        (stale,) = firing(observe, "ShieldxBackupStale")
        assert stale["value"] in ("+Inf", "Inf")  # never backed up, not merely old

    # A second `up` only checks: the same processes keep running.
    pids = {proc: observe.pid(proc) for proc in BINARIES}
    said: list[str] = []
    observe.up(say=said.append)
    assert {proc: observe.pid(proc) for proc in BINARIES} == pids
    assert all("running" in line for line in said if not line.startswith("warning")), said
    # ... unless the configuration changed: then Prometheus reloads it, still without a restart.
    time.sleep(1.1)  # a later modification time than the last load's stamp
    changed = dataclasses.replace(observe, evaluation_interval="2s")
    said.clear()
    changed.up(say=said.append)
    assert any("reloaded" in line for line in said), said
    assert {proc: observe.pid(proc) for proc in BINARIES} == pids
    config = get_json(f"{observe.prometheus_url}/api/v1/status/config")["data"]["yaml"]
    assert "evaluation_interval: 2s" in config

    # Every dashboard query evaluates (Grafana cannot run here; Prometheus answers what it would ask),
    # and returns data once the API has served traffic, unless a metric it needs is exported by no target.
    traffic(db, api)
    after = time.time()

    def scraped_since() -> bool:  # the API's metrics as they are after the traffic
        (sample,) = query(observe, 'timestamp(up{job="shieldx-api"})')["data"]["result"]
        return float(sample["value"][1]) > after

    wait_until(scraped_since, 10, "a scrape of the API after the traffic")
    exported = set(get_json(f"{observe.prometheus_url}/api/v1/label/__name__/values")["data"])
    recorded = {r["name"]: r["query"] for g in _groups(observe) for r in g["rules"] if r["type"] == "recording"}
    checked, skipped = [], []

    def needs(expr: str) -> set[str]:
        """The raw metric names an expression reads, through recording rules."""
        names: set[str] = set()
        for m in re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=[{\[)\s]|$)", expr):
            if m in recorded:
                names |= needs(recorded[m])
            elif m.startswith(("shieldx_", "pg_", "patroni_")) or m == "up":
                names.add(m)
        return names

    exprs = dashboard_exprs()
    assert len(exprs) > 30

    def has_data(expr: str) -> bool:
        answer = query(observe, expr)
        assert answer["status"] == "success", (expr, answer)
        return bool(answer["data"]["result"])

    pending = []
    for board, expr in exprs:
        assert query(observe, expr)["status"] == "success", (board, expr)
        if expr in NEEDS_PATRONI:
            continue
        missing = needs(expr) - exported
        if missing:
            skipped.append((board, expr, sorted(missing)))
        else:
            pending.append((board, expr))
    # rate() over a counter born with the traffic needs two scrapes of it, a recording rule one more
    # evaluation: wait, bounded, for every query at once.
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for board, expr in list(pending):
            if has_data(expr):
                pending.remove((board, expr))
                checked.append(expr)
        time.sleep(1)
    assert pending == [], f"dashboard queries without data: {pending}"
    # The traffic gave every metric family of the API a series and the exporter has them all: no
    # panel may read a metric no target exports (a renamed metric, a query file that lost a column).
    assert skipped == [], f"dashboard queries reading metrics no target exports: {skipped}"
    assert len(checked) == len(exprs) - len(NEEDS_PATRONI), checked
    print(f"dashboards: {len(checked)} queries returned data; {len(NEEDS_PATRONI)} need Patroni (HA test)")


def _groups(observe: Stack) -> list[dict]:
    return get_json(f"{observe.prometheus_url}/api/v1/rules")["data"]["groups"]


# --- faults ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Fault:
    """One fault: how to cause it, which alert (and labels) it fires, how to repair it."""

    alert: str
    labels: dict[str, str]
    severity: str
    cause: Callable[[], None]
    repair: Callable[[], None]
    fire_timeout: float = FIRE_TIMEOUT
    resolve_timeout: float = RESOLVE_TIMEOUT
    times: dict[str, float] = dataclasses.field(default_factory=dict)


def audit_history(db: psycopg.Connection) -> str:
    """A tenant, an account and a few movements: a ledger audit chain. Returns its stream."""
    db.execute("SELECT credits.create_tenant('acme', 'Acme')")
    account = db.execute("SELECT account_id FROM credits.create_account('acme', 'a', 'open-a')").fetchone()[
        "account_id"
    ]
    db.execute("SELECT credits.grant_credits('acme', %s, 100, 'seed')", (account,))
    for i in range(3):
        db.execute("SELECT credits.consume('acme', %s, 1, %s)", (account, f"c{i}"))
    return f"ledger/{account}"


def as_superuser_without_guards(db: psycopg.Connection, sql: str, *args: object) -> None:
    """What a superuser can do: switch the append-only trigger off, change a row, switch it back."""
    db.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only")
    try:
        db.execute(sql, args)
    finally:
        db.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only")


def test_monitoring_faults_fire_reach_alertmanager_and_resolve(
    fault_stack: tuple[FaultStack, Api], db: psycopg.Connection
) -> None:
    observe, api = fault_stack
    wait_all_up(observe)
    assert len([t for t in observe.targets() if t["job"] == "postgres-exporter"]) == 2

    # Healthy to begin with: the audit chain verified by the job's function, and a good backup that
    # ends BACKUP_MARGIN seconds short of the 26-hour threshold: time alone makes it stale.
    stream = audit_history(db)
    assert db.execute("SELECT ops._job_audit_verify() AS ok").fetchone()["ok"] is True
    db.execute(
        "SELECT ops._record_backup('shieldx', 'full', now() - interval '26 hours 10 minutes', "
        "now() - interval '26 hours' + %s * interval '1 second', 'succeeded', 'aging-F')",
        (BACKUP_MARGIN,),
    )
    main = f"127.0.0.1:{observe.exporter_port}"
    healthy = (
        f'shieldx_audit_last_verify_ok{{instance="{main}"}} == 1 '
        f'and on () shieldx_backup_last_success_age_seconds{{instance="{main}"}} < 93600'
    )
    wait_until(lambda: query(observe, healthy)["data"]["result"], 10, "the verify and the backup to be scraped")

    def quiet() -> bool:  # the next evaluation after that scrape
        return not (
            active(observe, "ShieldxApiDown", None)
            or active(observe, "ShieldxAuditVerifyFailed", None, instance=main)
            or active(observe, "ShieldxBackupStale", None, instance=main)
        )

    wait_until(quiet, 10, "the healthy baseline to be evaluated")

    cron = psycopg.connect(cron_db_url(), autocommit=True, row_factory=dict_row)
    probe = f"shieldx-fault-probe-{os.getpid()}"
    entry = db.execute(
        "SELECT seq, payload FROM audit.log WHERE stream = %s ORDER BY seq DESC LIMIT 1", (stream,)
    ).fetchone()

    def tamper() -> None:
        as_superuser_without_guards(
            db,
            "UPDATE audit.log SET payload = replace(payload, '\"amount\":-1', '\"amount\":-1000') "
            "WHERE stream = %s AND seq = %s",
            stream,
            entry["seq"],
        )
        assert db.execute("SELECT ops._job_audit_verify() AS ok").fetchone()["ok"] is False

    def restore() -> None:
        as_superuser_without_guards(
            db,
            "UPDATE audit.log SET payload = %s WHERE stream = %s AND seq = %s",
            entry["payload"],
            stream,
            entry["seq"],
        )
        assert db.execute("SELECT ops._job_audit_verify() AS ok").fetchone()["ok"] is True

    def time_passes() -> None:
        """The last good backup crosses the threshold by itself BACKUP_MARGIN s after it was recorded."""

    def fresh_backup() -> None:
        db.execute(
            "SELECT ops._record_backup('shieldx', 'diff', now() - interval '1 minute', now(), 'succeeded', 'new-D')"
        )

    def failing_job() -> None:
        cron.execute("SELECT cron.schedule(%s, '* * * * *', 'SELECT 1/0')", (probe,))

    def corrected_job() -> None:
        cron.execute("SELECT cron.alter_job(jobid, command := 'SELECT 1') FROM cron.job WHERE jobname = %s", (probe,))

    faults = [
        Fault("ShieldxApiDown", {"instance": f"127.0.0.1:{api.port}"}, "page", api.stop, api.start),
        Fault(
            "ShieldxCronJobFailing",
            {"cron_job": probe},
            "ticket",
            failing_job,
            corrected_job,
            CRON_TIMEOUT,
            CRON_TIMEOUT,
        ),
        Fault("ShieldxAuditVerifyFailed", {"instance": main}, "page", tamper, restore),
        Fault("ShieldxBackupStale", {"instance": main}, "ticket", time_passes, fresh_backup),
    ]
    try:
        _exercise(observe, faults)
    finally:
        row = cron.execute("SELECT jobid FROM cron.job WHERE jobname = %s", (probe,)).fetchone()
        if row:
            cron.execute("SELECT cron.unschedule(%s)", (row["jobid"],))
            cron.execute("DELETE FROM cron.job_run_details WHERE jobid = %s", (row["jobid"],))
        cron.close()
    for f in faults:
        print(
            f"{f.alert}: fired {f.times['fired']:.1f}s after the fault, in Alertmanager {f.times['received']:.1f}s, "
            f"resolved {f.times['resolved']:.1f}s after the repair, in Alertmanager {f.times['am_resolved']:.1f}s"
        )


def _exercise(observe: Stack, faults: list[Fault]) -> None:
    """Cause every fault at once, wait for each alert (each within its own bound), repair them all,
    wait for each to resolve; every fault's times are measured on its own."""
    started = time.monotonic()
    for f in faults:
        f.cause()
    _each(
        faults,
        started,
        [
            ("fired", lambda f: bool(firing(observe, f.alert, **f.labels)), lambda f: f.fire_timeout),
            ("received", lambda f: bool(in_alertmanager(observe, f.alert, **f.labels)), lambda f: f.fire_timeout + 30),
        ],
    )
    for f in faults:
        (alert,) = firing(observe, f.alert, **f.labels)
        assert alert["labels"]["severity"] == f.severity
        assert alert["annotations"]["runbook_url"] == f"docs/runbooks.md#{f.alert.lower()}"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        (received,) = in_alertmanager(observe, f.alert, **f.labels)
        assert received["status"]["state"] == "active"
        assert received["receivers"] == [{"name": f.severity}]
    # The stale backup fires for its age (just over 26 hours), not for a missing backup (+Inf).
    backup = next(f for f in faults if f.alert == "ShieldxBackupStale")
    (stale,) = firing(observe, backup.alert, **backup.labels)
    assert 93600 < float(stale["value"]) < 93600 + 600, stale["value"]

    repaired = time.monotonic()
    for f in faults:
        f.repair()
    _each(
        faults,
        repaired,
        [
            ("resolved", lambda f: not active(observe, f.alert, None, **f.labels), lambda f: f.resolve_timeout),
            (
                "am_resolved",
                lambda f: not in_alertmanager(observe, f.alert, **f.labels),
                lambda f: f.resolve_timeout + 30,
            ),
        ],
    )


Stage = tuple[str, Callable[[Fault], bool], Callable[[Fault], float]]


def _each(faults: list[Fault], since: float, stages: list[Stage]) -> None:
    """Poll every fault through its stages in order, each stage within its timeout of `since`;
    note when each was reached in f.times[stage name]."""
    progress = {id(f): 0 for f in faults}
    while any(progress[id(f)] < len(stages) for f in faults):
        for f in faults:
            while progress[id(f)] < len(stages):
                name, done, timeout = stages[progress[id(f)]]
                if done(f):
                    f.times[name] = time.monotonic() - since
                    progress[id(f)] += 1
                    continue
                if time.monotonic() - since > timeout(f):
                    pytest.fail(f"{f.alert} {name}: not within {timeout(f):.0f}s (labels {f.labels})")
                break
        time.sleep(0.5)


def test_monitoring_observe_names_the_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the binaries on PATH, `up` refuses with the Debian package names."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which(BINARIES["prometheus"][0]) is None
    observe = Stack(base=tmp_path / "observe")
    with pytest.raises(Exception, match="prometheus-alertmanager") as refused:
        observe.up(say=lambda _m: None)
    assert "apt-get install prometheus prometheus-alertmanager prometheus-postgres-exporter" in str(refused.value)
    assert not (tmp_path / "observe").exists()
