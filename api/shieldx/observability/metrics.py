"""The API's Prometheus metrics (prometheus-client), correct with several workers.

`shieldx serve` sets PROMETHEUS_MULTIPROC_DIR (see `multiproc`) before any
worker starts: every worker then writes its values to memory-mapped files in
that directory and /metrics, whichever worker answers it, adds up all of them
(MultiProcessCollector). Counters of a worker that exited keep counting in the
total, so a total never goes backwards; gauges of live workers only
(`livesum`, `livemax`) drop a dead worker's files (`mark_process_dead`).
Without the variable (tests with an in-process client), the values live in
this process and /metrics shows them with the default registry.

Names and labels follow the contract in docs/operations/monitoring.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import weakref
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import multiprocess as _mp
from prometheus_client.exposition import generate_latest

from .multiproc import ENV

log = logging.getLogger("shieldx.metrics")
disable_created_metrics()  # no *_created series: multiprocess mode has none either, so both look alike

# Prometheus text format 0.0.4 (the web framework adds the charset).
CONTENT_TYPE = "text/plain; version=0.0.4"

# 1 ms .. 5 s; 0.05 is the consume latency objective (99.9 % under 50 ms).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "shieldx_http_requests",
    "HTTP requests answered, by route template, method and status code",
    ["route", "method", "status"],
)
DURATION = Histogram(
    "shieldx_http_request_duration_seconds",
    "Time from receiving a request to the end of its answer, by route template and method",
    ["route", "method"],
    buckets=BUCKETS,
)
IN_FLIGHT = Gauge(
    "shieldx_http_requests_in_flight", "HTTP requests being served (all live workers)", multiprocess_mode="livesum"
)
POOL_SIZE = Gauge(
    "shieldx_db_pool_size", "Database connections open in the pools (all live workers)", multiprocess_mode="livesum"
)
POOL_IDLE = Gauge(
    "shieldx_db_pool_idle", "Pooled database connections idle (all live workers)", multiprocess_mode="livesum"
)
POOL_WAITING = Gauge(
    "shieldx_db_pool_waiting", "Requests waiting for a pooled connection (live workers)", multiprocess_mode="livesum"
)
POOL_MAX = Gauge(
    "shieldx_db_pool_max", "Most connections the pools may open (live workers)", multiprocess_mode="livesum"
)
BREAKER_OPEN = Gauge(
    "shieldx_breaker_open",
    "1 while a worker's database circuit breaker is open or half-open (calls fail fast), else 0 (max over workers)",
    multiprocess_mode="livemax",
)
BREAKER_TRANSITIONS = Counter(
    "shieldx_breaker_transitions", "Circuit breaker state changes, by the state entered", ["to"]
)
BREAKER_REJECTED = Counter("shieldx_breaker_rejected", "Calls refused at once by an open circuit breaker (503)")
BREAKER_PROBES = Counter("shieldx_breaker_probes", "Calls let through by a half-open breaker to test the database")
BREAKER_OUTAGES = Counter(
    "shieldx_breaker_outage_failures", "Database calls that failed for an outage (no connection, shutdown, timeout)"
)
AUTH_FAILURES = Counter(
    "shieldx_auth_failures", "Requests refused 401: missing, malformed, unknown, revoked or expired key", ["reason"]
)
AUTH_CACHE_HITS = Counter("shieldx_auth_cache_hits", "API keys accepted from a worker's cache of verified keys")
AUTH_VERIFICATIONS = Counter("shieldx_auth_verifications", "API keys verified by the database (auth.authenticate)")
AUTH_LEASES = Counter("shieldx_auth_leases", "Rate-limit token leases taken from the database (auth.take)")
AUTH_FORBIDDEN = Counter("shieldx_auth_forbidden", "Requests refused 403: the key lacks a role the route needs")
AUTH_TENANT_MISMATCH = Counter(
    "shieldx_auth_tenant_mismatch", "Requests refused 404 because a tenant key named another tenant"
)
RATE_LIMITED = Counter("shieldx_rate_limited", "Requests refused 429 by the per-key rate limit")
REPLAYS = Counter(
    "shieldx_idempotent_replays",
    "Idempotent calls answered with their original result (replayed: true), by route template",
    ["route"],
)
REFUSALS = Counter(
    "shieldx_refusals", "Named errors answered as 4xx (nothing changed), by SQLSTATE and name", ["sqlstate", "name"]
)


class MirroredCounts(dict):
    """A dict of counts (`d[key] += n`) whose increments also go to Prometheus at once.

    The breaker keeps its plain per-process counts (for /health/ready); swapping
    its dict for this one exports every increment, and sets the open gauge, without
    a line in its code (it changes only on failures and state changes). `on_add[key]`
    receives each increment.
    """

    def __init__(self, initial: dict[str, int], on_add: dict[str, Callable[[int], None]]) -> None:
        super().__init__(initial)
        self._on_add = dict(on_add)

    def __setitem__(self, key: str, value: int) -> None:
        delta = value - self.get(key, 0)
        super().__setitem__(key, value)
        if delta > 0 and (add := self._on_add.get(key)) is not None:
            add(delta)


def _breaker_opened(n: int) -> None:
    BREAKER_TRANSITIONS.labels(to="open").inc(n)
    BREAKER_OPEN.set(1)


def _breaker_closed(n: int) -> None:
    BREAKER_TRANSITIONS.labels(to="closed").inc(n)
    BREAKER_OPEN.set(0)


def mirror_breaker(breaker: Any) -> None:
    BREAKER_OPEN.set(0 if breaker.state == "closed" else 1)
    for state in ("open", "closed"):  # both series exist from the start (0), for increase() and alerts
        BREAKER_TRANSITIONS.labels(to=state)
    breaker.counters = MirroredCounts(
        breaker.counters,
        {
            "opened": _breaker_opened,
            "closed": _breaker_closed,
            "rejected": BREAKER_REJECTED.inc,
            "probes": BREAKER_PROBES.inc,
            "outages": BREAKER_OUTAGES.inc,
        },
    )


# The guard's counters change on nearly every request (a cache hit, a token spent): rather
# than a metric update per change, `export_counts` adds what each guard counted since its
# last call, with the request metrics (see middleware.Recorder) and before every scrape.
_AUTH_COUNTERS = {
    "cache_hits": AUTH_CACHE_HITS,
    "verifications": AUTH_VERIFICATIONS,
    "leases": AUTH_LEASES,
    "rate_limited": RATE_LIMITED,
    "forbidden": AUTH_FORBIDDEN,
    "tenant_mismatch": AUTH_TENANT_MISMATCH,
}
# (the guard, what its counters were at the last export, its failures by reason then)
_guards: list[tuple[weakref.ref[Any], dict[str, int], dict[str, int]]] = []

# Called before /metrics answers: each worker's `Recorder.flush` (requests not yet counted).
FLUSHERS: list[Callable[[], None]] = []


def mirror_auth(key_auth: Any) -> None:
    """Export a guard's counters (its plain per-process counts stay as they are, for /health/ready)."""
    _guards.append((weakref.ref(key_auth), dict.fromkeys(_AUTH_COUNTERS, 0), {}))


def export_counts() -> None:
    """Add to the Prometheus counters what each guard counted since the last call."""
    for ref, shown, failures_shown in list(_guards):
        guard = ref()
        if guard is None:  # its app is gone (tests make many)
            _guards.remove((ref, shown, failures_shown))
            continue
        counters = guard.counters
        for name, metric in _AUTH_COUNTERS.items():
            delta = counters.get(name, 0) - shown[name]
            if delta > 0:
                metric.inc(delta)
                shown[name] += delta
        for reason, count in guard.failures.items():  # reasons: a small fixed set
            delta = count - failures_shown.get(reason, 0)
            if delta > 0:
                AUTH_FAILURES.labels(reason=reason).inc(delta)
                failures_shown[reason] = count


# --- per request: children resolved once per label set ------------------------
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_replay_children: dict[str, Any] = {}
_refusal_children: dict[tuple[str, str], Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float, replayed: bool) -> None:
    """One answered request (route and method already bounded by the middleware)."""
    key = (route, method, status)
    children = _request_children.get(key)
    if children is None:
        children = REQUESTS.labels(route, method, str(status)), DURATION.labels(route, method)
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)
    if replayed:
        child = _replay_children.get(route)
        if child is None:
            child = _replay_children[route] = REPLAYS.labels(route)
        child.inc()


def refused(sqlstate: str, name: str) -> None:
    key = (sqlstate, name)
    child = _refusal_children.get(key)
    if child is None:
        child = _refusal_children[key] = REFUSALS.labels(sqlstate, name)
    child.inc()


# --- the connection pool, sampled --------------------------------------------
POOL_SAMPLE_S = 1.0


def sample_pool(pool: Any) -> None:
    stats = pool.get_stats()
    POOL_SIZE.set(stats.get("pool_size", 0))
    POOL_IDLE.set(stats.get("pool_available", 0))
    POOL_WAITING.set(stats.get("requests_waiting", 0))
    POOL_MAX.set(stats.get("pool_max", 0))


class PoolSampler:
    """Copies the pool's size, idle and waiting counts into gauges every POOL_SAMPLE_S
    (off the request path: a request pays nothing for them)."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            try:
                sample_pool(self.pool)
            except Exception as exc:  # noqa: BLE001 - a sample missed is not worth a dead sampler
                log.debug("pool sample failed: %s", exc)
            await asyncio.sleep(POOL_SAMPLE_S)

    async def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for gauge in (POOL_SIZE, POOL_IDLE, POOL_WAITING, POOL_MAX):
            gauge.set(0)


# --- exposition ----------------------------------------------------------------
_LIVE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_workers(path: str) -> None:
    """Drop the live gauges of workers that died without shutting down (killed, crashed)."""
    pids = set()
    for name in os.listdir(path):
        match = _LIVE_FILE.fullmatch(name)
        if match:
            pids.add(int(match.group(1)))
    for pid in pids:
        if not _alive(pid):
            _mp.mark_process_dead(pid, path)


def worker_exit() -> None:
    """This worker stops: its live gauges stop counting (its counters stay in the totals)."""
    path = os.environ.get(ENV)
    if path and os.path.isdir(path):
        _mp.mark_process_dead(os.getpid(), path)


# How long a scrape waits for the other workers' recorders (they flush at most every
# middleware.Recorder.FLUSH_S): so it counts every request answered before it began.
SCRAPE_WAIT_S = 0.06


async def render() -> tuple[bytes, str]:
    """The exposition of every worker's metrics (or this process's), and its content type."""
    for flush in FLUSHERS:
        flush()
    path = os.environ.get(ENV)
    if path:
        await asyncio.sleep(SCRAPE_WAIT_S)
        forget_dead_workers(path)
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry, path)
        return generate_latest(registry), CONTENT_TYPE
    return generate_latest(REGISTRY), CONTENT_TYPE
