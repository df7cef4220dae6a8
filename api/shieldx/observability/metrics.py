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
UNMATCHED = "unmatched"  # the route label of requests no route matched (bounded cardinality)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

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
    """A dict of counts (`d[key] += n`) whose increments also go to Prometheus.

    The breaker and the key guard keep their plain per-process counts (for
    /health/ready); swapping their dicts for this one exports every increment
    without a line in their code. `on_add[key]` receives each increment; keys
    without an entry are handled by `default(key)` (None: not exported).
    """

    def __init__(
        self,
        initial: dict[str, int],
        on_add: dict[str, Callable[[int], None]],
        default: Callable[[str], Callable[[int], None] | None] | None = None,
    ) -> None:
        super().__init__(initial)
        self._on_add = dict(on_add)
        self._default = default

    def __setitem__(self, key: str, value: int) -> None:
        delta = value - self.get(key, 0)
        super().__setitem__(key, value)
        if delta > 0:
            add = self._on_add.get(key)
            if add is None and self._default is not None:
                add = self._default(key)
                if add is not None:
                    self._on_add[key] = add
            if add is not None:
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


def mirror_auth(key_auth: Any) -> None:
    key_auth.counters = MirroredCounts(
        key_auth.counters,
        {
            "cache_hits": AUTH_CACHE_HITS.inc,
            "verifications": AUTH_VERIFICATIONS.inc,
            "leases": AUTH_LEASES.inc,
            "rate_limited": RATE_LIMITED.inc,
            "forbidden": AUTH_FORBIDDEN.inc,
            "tenant_mismatch": AUTH_TENANT_MISMATCH.inc,
        },
    )
    # Reasons come from the guard and auth.authenticate: a small fixed set.
    key_auth.failures = MirroredCounts(key_auth.failures, {}, lambda reason: AUTH_FAILURES.labels(reason=reason).inc)


# --- per request: children resolved once per label set ------------------------
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_replay_children: dict[str, Any] = {}
_refusal_children: dict[tuple[str, str], Any] = {}


def observe_request(route: str, method: str, status: int, seconds: float, replayed: bool) -> None:
    if method not in METHODS:
        method = "other"  # any token is a valid method: keep the label set bounded
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


def render() -> tuple[bytes, str]:
    """The exposition of every worker's metrics (or this process's), and its content type."""
    path = os.environ.get(ENV)
    if path:
        forget_dead_workers(path)
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry, path)
        return generate_latest(registry), CONTENT_TYPE
    return generate_latest(REGISTRY), CONTENT_TYPE
