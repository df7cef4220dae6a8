"""The circuit breaker against a PostgreSQL server that really stops and comes back.

The server is a throwaway cluster of this test module (initdb into a temporary
directory, run as the postgres OS user on a free port), never the shared one.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import psycopg
import pytest
from litestar.testing import TestClient

from shieldx import schema
from shieldx.app import create_app
from shieldx.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, CircuitOpen
from shieldx.config import Settings
from shieldx.routes import health

PGBIN = "/usr/lib/postgresql/15/bin"
SHARED_PORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Throwaway:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="shieldx_breaker_")
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        self.uid = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else None
        if self.uid is not None:
            os.chown(self.dir, self.uid, -1)

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.uid is not None:  # the server refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(f"{PGBIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8")
        conf = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.dir}'",
            "max_connections = 40",
            "shared_buffers = 32MB",
            "fsync = off",
        ]
        # Settings other domains' migrations read (e.g. the keyring path), as on the shared cluster.
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{SHARED_PORT}/postgres") as conn:
            for name in ("shieldx.key_dir", "shieldx.env"):
                value = conn.execute("SELECT current_setting(%s, true)", (name,)).fetchone()[0]
                if value:
                    conf.append(f"{name} = '{value}'")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("\n" + "\n".join(conf) + "\n")

    def start(self) -> None:
        self._run(f"{PGBIN}/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(f"{PGBIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def url(self, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/shieldx"


@pytest.fixture(scope="module")
def server() -> Iterator[Throwaway]:
    pg = Throwaway()
    try:
        pg.init()
        pg.start()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE shieldx")
        schema.migrate(pg.url())
        yield pg
    finally:
        try:
            pg.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(pg.dir, ignore_errors=True)


def _until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_fail_fast_while_down_probe_then_close(server):
    with psycopg.connect(server.url(), autocommit=True) as conn:
        key = conn.execute("SELECT api_key FROM auth.create_operator_key('breaker', 'breaker')").fetchone()[0]
    settings = Settings(
        database_url=server.url("shieldx_app"),
        pool_min=1,
        pool_max=2,
        pool_timeout=1.0,
        breaker_threshold=2,
        breaker_open_s=1.0,
    )
    app = create_app(settings)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {key}"
        assert c.put("/v1/tenants/acme", json={"name": "Acme"}).status_code == 201
        ready = c.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["breaker"] == CLOSED

        server.stop()
        # The first failures are real attempts (503 from the pool or the lost connection) ...
        for _ in range(2):
            r = c.get("/v1/tenants/acme/accounts")
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"]
        # ... then the breaker is open: no attempt, an immediate 503 with Retry-After.
        started = time.monotonic()
        r = c.get("/v1/tenants/acme/accounts")
        assert time.monotonic() - started < 0.5
        assert r.status_code == 503 and r.json()["type"] == "/docs/errors#circuit_open"
        assert int(r.headers["retry-after"]) >= 1
        # Readiness does not follow the database: the pod stays in service and answers 503 itself.
        ready = c.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["breaker"] == OPEN
        assert "shieldx_breaker_open 1.0" in c.get("/metrics").text

        # Still down after the open period: the one probe fails and the breaker opens again, for longer.
        time.sleep(1.1)
        assert c.get("/v1/tenants/acme/accounts").status_code == 503
        assert app.state.database.breaker.state == OPEN and app.state.database.breaker.open_for == 2.0

        server.start()

        def served():
            r = c.get("/v1/tenants/acme/accounts")
            return r.status_code == 200

        assert _until(served), "the breaker never closed after the server came back"
        assert app.state.database.breaker.state == CLOSED
        ready = c.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["breaker"] == CLOSED
        metrics = c.get("/metrics").text
        assert "shieldx_breaker_open 0.0" in metrics
        opened = app.state.database.breaker.counters["opened"]
        assert opened in (2, 3)
        # The counter is process-wide (every app made in this test process adds to it): at least this app's openings.
        total = next(
            line for line in metrics.splitlines() if line.startswith('shieldx_breaker_transitions_total{to="open"}')
        )
        assert float(total.split()[-1]) >= opened


def test_sql_errors_do_not_open_the_breaker(server):
    """A named error is an answer from a working database, not an outage."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        key = conn.execute("SELECT api_key FROM auth.create_operator_key('breaker2', 'breaker2')").fetchone()[0]
    settings = Settings(database_url=server.url("shieldx_app"), pool_min=1, pool_max=2, breaker_threshold=1)
    app = create_app(settings)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {key}"
        for i in range(3):
            assert c.get(f"/v1/tenants/nobody{i}/accounts/1").status_code == 404
        assert app.state.database.breaker.state == CLOSED


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_state_machine_half_open_admits_one_probe():
    clock = _Clock()
    b = Breaker(threshold=2, open_s=1.0, max_open_s=4.0, clock=clock)
    b.failure(b.before())
    assert b.state == CLOSED
    b.failure(b.before())
    assert b.state == OPEN
    with pytest.raises(CircuitOpen) as info:
        b.before()
    assert info.value.retry_after_header == "1"
    clock.now += 1.0
    assert b.before() is True and b.state == HALF_OPEN  # the probe
    with pytest.raises(CircuitOpen):
        b.before()  # only one probe at a time
    b.failure(True)
    assert b.state == OPEN and b.open_for == 2.0  # backs off
    clock.now += 2.0
    b.failure(b.before())
    clock.now += 4.0
    b.failure(b.before())
    assert b.open_for == 4.0  # capped
    clock.now += 4.0
    b.success(b.before())
    assert b.state == CLOSED and b.open_for == 1.0 and b.failures == 0


def test_probes_while_the_database_is_down(server):
    """Liveness and readiness stay 200 during an outage; requests get the API's own 503 with Retry-After."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        key = conn.execute("SELECT api_key FROM auth.create_operator_key('probes', 'probes')").fetchone()[0]
    settings = Settings(database_url=server.url("shieldx_app"), pool_min=1, pool_max=2, pool_timeout=1.0)
    app = create_app(settings)
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {key}"
        assert c.put("/v1/tenants/probes", json={"name": "Probes"}).status_code == 201
        assert c.get("/health/ready").json()["database"] == "reachable"
        server.stop()
        try:
            # Past one schema re-check, so readiness has tried the database and failed.
            deadline = time.monotonic() + health.SCHEMA_CHECK_S + 1.5
            answers = set()
            while time.monotonic() < deadline:
                assert c.get("/health/live").status_code == 200
                ready = c.get("/health/ready")
                assert ready.status_code == 200, ready.text
                r = c.post(
                    "/v1/tenants/probes/accounts", json={"name": "a"}, headers={"Idempotency-Key": "probes-open"}
                )
                assert r.status_code == 503, r.text
                assert int(r.headers["retry-after"]) >= 1
                assert r.headers["content-type"].startswith("application/problem+json")
                answers.add(r.json()["type"])
                time.sleep(0.3)
            assert ready.json()["database"].startswith("unreachable")
            assert ready.json()["migrations_pending"] == [] and ready.json()["ready"] is True
            assert answers <= {"/docs/errors#database_unavailable", "/docs/errors#circuit_open"}
        finally:
            server.start()
        assert _until(
            lambda: (
                c.post(
                    "/v1/tenants/probes/accounts", json={"name": "a"}, headers={"Idempotency-Key": "probes-open"}
                ).status_code
                == 201
            )
        )


def test_a_pod_that_never_reached_the_database_is_live_but_not_ready():
    """A new pod cannot tell whether its migrations ran: it takes no traffic until it can."""
    app = create_app(Settings(database_url=f"postgresql://shieldx_app@127.0.0.1:{_free_port()}/shieldx", pool_min=0))
    with TestClient(app) as c:
        assert c.get("/health/live").status_code == 200
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["ready"] is False and ready.json()["reason"].startswith("schema not checked yet")
