"""shieldx.client against a real server process (uvicorn on a free port), restarted in the middle."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shieldx.client import AsyncClient, Client, Refused, Retry, Unavailable, retry_after

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`shieldx serve` as a child process; stop() and start() again on the same port."""

    def __init__(self, database_url: str) -> None:
        self.database_url, self.port = database_url, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = ROOT / ".local" / f"client-test-api-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)

    def start(self, wait: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shieldx.cli.serve_main", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, "DATABASE_URL": self.database_url},
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_up()

    def wait_up(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/health/live", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"API did not start; see {self.log}")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=15)


@pytest.fixture
def server(app_dsn: str) -> Iterator[Server]:
    s = Server(app_dsn)
    s.start()
    yield s
    if s.proc and s.proc.poll() is None:
        s.stop()


@pytest.fixture
def sx(server: Server, operator_key: str) -> Iterator[Client]:
    with Client(server.base, operator_key, "acme", retry=Retry(attempts=60, base_s=0.05, cap_s=0.5)) as c:
        c.create_tenant("acme", "Acme")
        yield c


def test_typed_calls_and_named_refusals(sx: Client):
    a = sx.create_account("a", key="open-a").account_id
    b = sx.create_account("b", key="open-b").account_id
    assert sx.grant(a, 100, key="g").balance_after == 100
    moved = sx.consume(a, 30, key="c1", reason="scan")
    assert (moved.amount, moved.balance_after, moved.replayed) == (-30, 70, False)
    assert sx.consume(a, 30, key="c1", reason="scan").replayed  # the same call again
    t = sx.transfer(a, b, 20)
    assert (t.from_balance_after, t.to_balance_after) == (50, 20)
    hold = sx.reserve(b, 15, ttl_s=60)
    assert sx.commit_hold(hold.hold_id, 10).captured == 10
    assert sx.get_account(b).balance == 10
    assert [e.kind for e in sx.list_entries(a).items] == ["transfer_out", "consume", "grant"]
    with pytest.raises(Refused) as info:
        sx.consume(a, 1000)
    assert (info.value.status, info.value.name, info.value.sqlstate) == (409, "insufficient_funds", "SX004")
    assert info.value.facts == {"account_id": a, "available": 50, "requested": 1000}
    with pytest.raises(Refused) as conflict:
        sx.consume(a, 31, key="c1")
    assert conflict.value.name == "idempotency_conflict"
    res = sx.batch([{"op": "consume", "account_id": a, "amount": 5, "idempotency_key": "b1"}], atomic=False)
    assert (res.applied, res.items[0].result["balance_after"]) == (1, 45)


def test_a_call_during_a_server_restart_is_retried_with_its_key_and_applies_once(server: Server, sx: Client):
    a = sx.create_account("a", key="open-a").account_id
    sx.grant(a, 100, key="g")
    server.stop()
    restart = threading.Timer(1.0, server.start, kwargs={"wait": False})
    restart.start()
    sent_before = sx.stats.requests
    moved = sx.consume(a, 7, key="during-restart")  # connection refused until the server is back
    restart.join()
    assert sx.stats.requests - sent_before > 1 and sx.stats.retries >= 1
    assert (moved.balance_after, moved.replayed) == (93, False)
    assert sx.consume(a, 7, key="during-restart").replayed
    assert sx.get_account(a).balance == 93


def test_retry_after_is_honoured_and_a_refusal_is_not_retried():
    calls: list[float] = []
    slept: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        assert request.headers["Idempotency-Key"] == "same-key"  # every try carries the call's key
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"type": "/docs/errors#rate_limited"})
        if len(calls) == 2:
            return httpx.Response(503, json={"type": "/docs/errors#database_unavailable"})
        return httpx.Response(409, json={"type": "/docs/errors#insufficient_funds", "sqlstate": "SX004"})

    c = Client("http://x", tenant="t", transport=httpx.MockTransport(handler), sleep=slept.append)
    with pytest.raises(Refused) as info:
        c.consume(1, 5, key="same-key")
    assert info.value.sqlstate == "SX004" and len(calls) == 3
    assert 2.0 <= slept[0] <= 2.0 + Retry().base_s  # Retry-After, plus a little jitter
    assert 0 <= slept[1] <= Retry().base_s * 2
    assert retry_after(httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0

    gone = Client("http://x", transport=httpx.MockTransport(lambda r: httpx.Response(503)), sleep=slept.append)
    with pytest.raises(Unavailable):
        gone.get_account(1, tenant="t")


def test_autobatch_coalesces_concurrent_consumes_and_answers_each_caller(server: Server, sx: Client, operator_key):
    ids = [sx.create_account(f"a{i}", key=f"open-{i}").account_id for i in range(4)]
    for i, a in enumerate(ids):
        sx.grant(a, 10, key=f"g{i}")

    async def go() -> tuple[list[object], int, int]:
        async with AsyncClient(server.base, operator_key, "acme", autobatch=True, linger_s=0.005) as ac:
            calls = [ac.consume(ids[k % 4], 1, key=f"auto-{k}") for k in range(60)]  # 15 per account of 10
            results = await asyncio.gather(*calls, return_exceptions=True)
            return results, ac.stats.batches, ac.stats.requests

    results, batches, requests = asyncio.run(go())
    refused = [r for r in results if isinstance(r, Refused)]
    applied = [r for r in results if not isinstance(r, BaseException)]
    assert len(applied) == 40 and len(refused) == 20
    assert {r.name for r in refused} == {"insufficient_funds"}
    assert batches < 60 / 4 and requests == batches  # coalesced, no retries
    assert sorted(m.balance_after for m in applied if m.account_id == ids[0]) == list(range(10))
    assert [sx.get_account(a).balance for a in ids] == [0, 0, 0, 0]


def test_sync_autobatch_from_threads(server: Server, sx: Client, operator_key):
    a = sx.create_account("a", key="open-a").account_id
    sx.grant(a, 1000, key="g")
    results: list[object] = [None] * 32
    with Client(server.base, operator_key, "acme", autobatch=True, linger_s=0.01) as tc:

        def worker(k: int) -> None:
            results[k] = tc.consume(a, 1 if k else 5000, key=f"t-{k}")  # caller 0 asks too much

        def safe(k: int) -> None:
            try:
                worker(k)
            except Refused as exc:
                results[k] = exc

        threads = [threading.Thread(target=safe, args=(k,)) for k in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert tc.stats.batches < 32
    assert isinstance(results[0], Refused) and results[0].sqlstate == "SX004"
    assert sorted(r.balance_after for r in results[1:]) == list(range(969, 1000))  # type: ignore[union-attr]
