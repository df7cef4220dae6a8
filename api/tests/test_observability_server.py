"""Metrics and logs of a real server: `shieldx serve --workers 2` on a free port.

The server runs against its own database (migrated here) and writes its stderr,
JSON lines, into this session's log directory, which test_zz_log_scan.py scans.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from itertools import pairwise

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shieldx import schema

PORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))
ADMIN = f"postgresql://postgres@127.0.0.1:{PORT}"
LIVE = ("shieldx_http_requests_total", (("method", "GET"), ("route", "/health/live"), ("status", "200")))
CLIENT = "203.0.113.77"  # a documentation address, forwarded by a proxy on loopback (uvicorn trusts 127.0.0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: str, proc: subprocess.Popen, log: os.PathLike, key: str, url: str) -> None:
        self.base, self.proc, self.log, self.key, self.url = base, proc, log, key, url

    def scrape(self) -> dict[tuple[str, tuple], float]:
        text = httpx.get(self.base + "/metrics", timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def lines(self) -> list[dict]:
        out = []
        with open(self.log, encoding="utf-8") as f:
            for raw in f:
                if raw.startswith("{"):
                    out.append(json.loads(raw))
        return out

    def workers(self) -> set[int]:
        """The worker processes (children of the server, but multiprocessing's resource tracker)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        pids = set()
        for pid in map(int, out.split()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"resource_tracker" not in f.read():
                        pids.add(pid)
            except OSError:
                pass  # gone meanwhile
        return pids


def _until(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(suite_logs) -> Iterator[Server]:
    dbname = f"shieldx_obs_{os.getpid()}"
    with psycopg.connect(f"{ADMIN}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {dbname}")
    url = f"{ADMIN}/{dbname}"
    schema.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        key = conn.execute("SELECT api_key FROM auth.create_operator_key('obs', 'obs')").fetchone()[0]
    port = _free_port()
    log_path = suite_logs.server_log(f"workers2-{port}")
    env = {
        **os.environ,
        "DATABASE_URL": url.replace("postgres@", "shieldx_app@", 1),
        "SHIELDX_POOL_MIN": "1",
        "SHIELDX_POOL_MAX": "3",
        "SHIELDX_LOG_LEVEL": "INFO",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shieldx.cli.serve_main", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(base + "/health/live", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert _until(up), f"the server did not start; see {log_path}"
        srv = Server(base, proc, log_path, key, url)
        assert _until(lambda: len(srv.workers()) == 2), "two workers never ran"
        yield srv
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with psycopg.connect(f"{ADMIN}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def test_counts_add_up_over_workers_and_never_go_back(server):
    before = server.scrape()
    n, seen = 0, [before.get(LIVE, 0.0)]
    ids = []
    # A new connection per request, so both workers serve some (the kernel spreads accepts).
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as c:
        for _batch in range(10):
            for _ in range(20):
                rid = f"count-{uuid.uuid4().hex}"
                ids.append(rid)
                assert c.get(server.base + "/health/live", headers={"X-Request-ID": rid}).status_code == 200
                n += 1
            seen.append(server.scrape().get(LIVE, 0.0))
        final = [server.scrape() for _ in range(10)]
    assert all(b >= a for a, b in pairwise(seen)), f"a total went backwards: {seen}"
    for scrape in final:  # whichever worker answers the scrape, it reports all of them
        assert scrape[LIVE] - before.get(LIVE, 0.0) == n
        count = ("shieldx_http_request_duration_seconds_count", (("method", "GET"), ("route", "/health/live")))
        assert scrape[count] - before.get(count, 0.0) == n
        assert scrape[("shieldx_http_requests_in_flight", ())] == 1.0  # the scrape itself
    wanted = set(ids)
    pids = {line["pid"] for line in server.lines() if line.get("request_id") in wanted}
    assert len(pids) == 2, f"every request was served by one worker ({pids}): the test proves nothing"


def test_a_killed_worker_keeps_its_counts_and_drops_its_gauges(server):
    pool_max = ("shieldx_db_pool_max", ())
    # Each worker's pool may open 3 connections (SHIELDX_POOL_MAX): live workers add up to 6.
    assert _until(lambda: server.scrape().get(pool_max) == 6.0), server.scrape().get(pool_max)
    with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0)) as c:
        for _ in range(20):
            assert c.get(server.base + "/health/live").status_code == 200
    before = server.scrape()
    victim = min(server.workers())
    os.kill(victim, signal.SIGKILL)
    values = []

    def replaced() -> bool:
        scrape = server.scrape()
        values.append((scrape[LIVE], scrape.get(pool_max)))
        workers = server.workers()
        return victim not in workers and len(workers) == 2 and scrape.get(pool_max) == 6.0

    assert _until(replaced), values
    assert all(total >= before[LIVE] for total, _ in values), "the dead worker's requests vanished from the total"
    assert all(pm in (3.0, 6.0) for _, pm in values), f"a dead worker's gauge was still counted: {values}"


def test_request_id_reaches_the_log_and_postgresql(server):
    rid = f"dba-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=30) as c:
        assert c.put("/v1/tenants/obs", json={"name": "Obs"}).status_code in (200, 201)
        r = c.post("/v1/tenants/obs/accounts", json={"name": "a"}, headers={"Idempotency-Key": "a"})
        account = r.json()["account_id"]
        g = c.post(f"/v1/tenants/obs/accounts/{account}/grants", json={"amount": 10}, headers={"Idempotency-Key": "g"})
        assert g.status_code in (200, 201), g.text
        # Hold the account's row: the consume below waits on the lock, as a slow statement would.
        with psycopg.connect(server.url) as dba:
            dba.execute("SELECT 1 FROM credits.accounts WHERE account_id = %s FOR UPDATE", (account,))
            answer = {}

            def consume() -> None:
                answer["r"] = c.post(
                    f"/v1/tenants/obs/accounts/{account}/consume",
                    json={"amount": 1},
                    headers={"Idempotency-Key": "slow", "X-Request-ID": rid},
                )

            thread = threading.Thread(target=consume)
            thread.start()
            try:
                with psycopg.connect(server.url, autocommit=True) as watcher:

                    def waiting() -> list:
                        return watcher.execute(
                            "SELECT usename, query FROM pg_stat_activity "
                            "WHERE wait_event_type = 'Lock' AND application_name = %s",
                            (f"shieldx-api {rid}",),
                        ).fetchall()

                    rows = _until(waiting, timeout=20)
                # A request that hangs counts as in flight (with the scrape itself), whichever worker has it.
                in_flight = server.scrape()[("shieldx_http_requests_in_flight", ())]
            finally:
                dba.rollback()
                thread.join(timeout=30)
    assert rows and rows[0][0] == "shieldx_app" and "consume" in rows[0][1], rows
    assert in_flight >= 2, in_flight
    assert answer["r"].status_code == 201 and answer["r"].headers["x-request-id"] == rid
    # The access line is written once the answer is sent: wait for it (bounded) rather than race the worker.
    lines = _until(
        lambda: [x for x in server.lines() if x.get("request_id") == rid and x["logger"] == "shieldx.access"]
    )
    assert lines, f"no access line for request {rid}"
    line = lines[0]
    assert line["route"] == "/v1/tenants/{tenant_id}/accounts/{account_id}/consume"
    assert (line["status"], line["tenant"], line["method"]) == (201, "obs", "POST")
    assert set(line) >= {"time", "level", "duration_ms", "client", "user_agent"}


# Inputs the logs must never show; test_zz_log_scan.py checks every log for them.
CARDS = ("4111111111111111", "5500 0000 0000 0004", "3400-0000-0000-009")
WRONG_SECRET = "sx_00000000beef_" + "5e" * 32


def test_sensitive_inputs_through_the_api(server):
    """Card top-ups that fail, wrong and malformed keys, a forwarded client address: all logged, masked."""
    operator = {"Authorization": f"Bearer {server.key}", "X-Forwarded-For": CLIENT, "User-Agent": "Mozilla/5.0 (X11)"}
    with httpx.Client(base_url=server.base, timeout=30) as c:
        assert c.put("/v1/tenants/obs2", json={"name": "Obs2"}, headers=operator).status_code in (200, 201)
        r = c.post("/v1/tenants/obs2/accounts", json={"name": "a"}, headers={**operator, "Idempotency-Key": "a"})
        account = r.json()["account_id"]
        statuses = []
        for i, card in enumerate(CARDS):
            for body in (
                {"amount": 10, "card_number": card, "expiry": "13/99"},  # bad expiry
                {"amount": -5, "card_number": card, "expiry": "12/30"},  # bad amount
                {
                    "amount": 10,
                    "card_number": card[:-1] + str((int(card[-1]) + 1) % 10),
                    "expiry": "12/30",
                },  # fails Luhn
            ):
                r = c.post(
                    f"/v1/tenants/obs2/accounts/{account}/card-top-ups",
                    json=body,
                    headers={**operator, "Idempotency-Key": f"card-{i}-{len(statuses)}"},
                )
                statuses.append(r.status_code)
            r = c.post(  # an account that does not exist
                "/v1/tenants/obs2/accounts/999999/card-top-ups",
                json={"amount": 10, "card_number": card, "expiry": "12/30", "holder": "A. Person", "subject": "s1"},
                headers={**operator, "Idempotency-Key": f"card-missing-{i}"},
            )
            statuses.append(r.status_code)
        assert all(400 <= s < 500 for s in statuses), statuses
        ok = c.post(
            f"/v1/tenants/obs2/accounts/{account}/card-top-ups",
            json={"amount": 10, "card_number": CARDS[0], "expiry": "12/30", "holder": "A. Person", "subject": "s2"},
            headers={**operator, "Idempotency-Key": "card-ok"},
        )
        assert ok.status_code == 201, ok.text
        for auth in (
            {"Authorization": f"Bearer {WRONG_SECRET}"},
            {"X-API-Key": WRONG_SECRET},
            {"Authorization": f"Bearer {server.key[:-4]}0000"},
            {"Authorization": f"Bearer {CARDS[0]}"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
        ):
            r = c.get("/v1/tenants/obs2/accounts", headers={**auth, "X-Forwarded-For": CLIENT})
            assert r.status_code == 401

    # Access lines are written in batches, shortly after the answers: wait for them (bounded).
    def mine() -> list[dict]:
        return [line for line in server.lines() if line.get("client") == "203.0.113.0/24"]

    assert _until(lambda: len(mine()) >= len(statuses) + 6), len(mine())
    assert {line["user_agent"] for line in mine()} >= {"Mozilla", "python-httpx"}
