"""The monitoring stack for real: a running API and postgres_exporter, Prometheus and Alertmanager
(Debian's packages) on free loopback ports with 1-second scrape and evaluation intervals, started by
shieldx_local.observe exactly as `make observe` does, the rules of deploy/monitoring/prometheus/rules.

- Every target is up, every alerting rule is loaded, `status` says so, a second `up` only checks.
- Every dashboard query evaluates without error against that Prometheus.
- Stopping the API fires ShieldxApiDown in Prometheus (/api/v1/alerts) and it reaches Alertmanager
  (/api/v2/alerts); restarting the API resolves it in both.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
try:
    from shieldx_local.observe import BINARIES, Stack, missing_packages, wait_until
except ImportError:  # deploy/local not on the import path (pytest's pythonpath setting puts it there)
    sys.path.insert(0, str(ROOT / "deploy" / "local"))
    from shieldx_local.observe import BINARIES, Stack, missing_packages, wait_until

pytestmark = pytest.mark.slow

# ShieldxApiDown fires after `for: 1m`; with 1 s scrapes and evaluations it fires about a minute after the stop.
FIRE_TIMEOUT = 150.0
RESOLVE_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


class Api:
    """The real API server (uvicorn), stoppable and restartable on the same port."""

    def __init__(self, database_url: str, port: int, log: Path) -> None:
        self.database_url, self.port, self.log = database_url, port, log
        self.proc: subprocess.Popen | None = None

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
                return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/live", timeout=2).status == 200
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


@pytest.fixture
def stack(dsn: str, tmp_path: Path) -> Iterator[tuple[Stack, Api]]:
    missing = missing_packages()
    if missing:
        pytest.fail(f"missing Debian packages {missing}: apt-get install {' '.join(missing)}")
    with psycopg.connect(dsn) as conn:
        monitor = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'shieldx_monitor'").fetchone()
    exporter_dsn = (dsn.replace("postgres@", "shieldx_monitor@", 1) if monitor else dsn) + "?sslmode=disable"
    api = Api(dsn.replace("postgres@", "shieldx_app@", 1), free_port(), tmp_path / "api.log")
    observe = Stack(
        base=tmp_path / "observe",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        exporter_port=free_port(),
        api_port=api.port,
        dsn=exporter_dsn,
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    api.start()
    try:
        observe.up(say=lambda _m: None)
        yield observe, api
    finally:
        api.stop()
        observe.down(say=lambda _m: None)


def firing(observe: Stack, alertname: str) -> list[dict]:
    alerts = get_json(f"{observe.prometheus_url}/api/v1/alerts")["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def in_alertmanager(observe: Stack, alertname: str) -> list[dict]:
    query = urllib.parse.urlencode({"filter": f'alertname="{alertname}"', "active": "true"})
    return get_json(f"{observe.alertmanager_url}/api/v2/alerts?{query}")


def test_monitoring_stack_scrapes_every_target_and_fires_and_resolves_api_down(stack: tuple[Stack, Api]) -> None:
    observe, api = stack

    def all_up() -> bool:
        targets = observe.targets()
        return bool(targets) and all(t["health"] == "up" for t in targets)

    try:
        wait_until(all_up, 30, "every target to be up")
    except TimeoutError:
        pytest.fail(f"targets: {observe.targets()}")
    assert {t["job"] for t in observe.targets()} == {"shieldx-api", "postgres-exporter", "prometheus", "alertmanager"}
    rules = observe.rules()
    assert len(rules) >= 15 and all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]
    assert not firing(observe, "ShieldxApiDown")
    assert observe.status(say=lambda _m: None) is True

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

    # Every dashboard query evaluates (Grafana cannot run here; Prometheus answers what it would ask).
    for board in sorted((ROOT / "deploy" / "monitoring" / "dashboards").glob("*.json")):
        text = board.read_text()
        for expr in re.findall(r'"expr": ("(?:[^"\\]|\\.)*")', text):
            query = urllib.parse.urlencode({"query": json.loads(expr)})
            answer = get_json(f"{observe.prometheus_url}/api/v1/query?{query}")
            assert answer["status"] == "success", (board.name, expr, answer)

    api.stop()
    wait_until(lambda: firing(observe, "ShieldxApiDown"), FIRE_TIMEOUT, "ShieldxApiDown to fire", interval=1)
    (alert,) = firing(observe, "ShieldxApiDown")
    assert alert["labels"]["severity"] == "page"
    assert alert["labels"]["instance"] == f"127.0.0.1:{api.port}"
    assert alert["annotations"]["runbook_url"] == "docs/runbooks.md#shieldxapidown"
    wait_until(lambda: in_alertmanager(observe, "ShieldxApiDown"), 30, "Alertmanager to receive it", interval=1)
    (received,) = in_alertmanager(observe, "ShieldxApiDown")
    assert received["labels"]["severity"] == "page" and received["status"]["state"] == "active"
    assert received["receivers"] == [{"name": "page"}]

    api.start()
    wait_until(lambda: not firing(observe, "ShieldxApiDown"), RESOLVE_TIMEOUT, "ShieldxApiDown to resolve", interval=1)
    wait_until(
        lambda: not in_alertmanager(observe, "ShieldxApiDown"),
        RESOLVE_TIMEOUT,
        "Alertmanager to resolve it",
        interval=1,
    )


def test_monitoring_observe_names_the_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the binaries on PATH, `up` refuses with the Debian package names."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which(BINARIES["prometheus"][0]) is None
    observe = Stack(base=tmp_path / "observe")
    with pytest.raises(Exception, match="prometheus-alertmanager") as refused:
        observe.up(say=lambda _m: None)
    assert "apt-get install prometheus prometheus-alertmanager prometheus-postgres-exporter" in str(refused.value)
    assert not (tmp_path / "observe").exists()
