"""A circuit breaker around the database seam.

closed     calls go through; `threshold` consecutive outage failures open it.
open       calls fail at once with CircuitOpen (503 + Retry-After) for `open_s`
           seconds, doubling after every failed probe up to `max_open_s`.
half_open  one call (the probe) goes through; the others still fail fast.
           The probe's success closes the breaker, its failure opens it again.

Only outages count: no connection, a lost connection, the server shutting
down, the pool timing out. An SQL error is an answer from a working database
and counts as a success. State is per process (each replica finds out for
itself); it is exposed by /health/ready and /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

log = logging.getLogger("shieldx.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# Server-side SQLSTATEs that mean "this server is going away or not accepting".
OUTAGE_STATES = ("57P01", "57P02", "57P03")


class CircuitOpen(Exception):
    """Raised instead of calling a database known to be unreachable."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"circuit open; retry after {retry_after:.1f}s")
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        # No SQLSTATE: the client could not talk to the server at all.
        return state is None or state.startswith("08") or state in OUTAGE_STATES
    return isinstance(exc, OSError)


class Breaker:
    # max_open_s bounds how late a recovered primary is noticed: a Patroni
    # failover takes ~10 s, so backing off to 30 s would triple the outage.
    def __init__(self, threshold: int = 3, open_s: float = 2.0, max_open_s: float = 4.0, clock=time.monotonic) -> None:
        self.threshold, self.open_s, self.max_open_s = max(1, threshold), open_s, max_open_s
        self.clock = clock
        self.state = CLOSED
        self.failures = 0  # consecutive outage failures
        self.open_for = open_s
        self.opened_at = 0.0
        self.probing = False
        self.counters = {"opened": 0, "closed": 0, "rejected": 0, "probes": 0, "outages": 0}
        self._flushing: asyncio.Future[None] | None = None

    # --- the state machine -------------------------------------------------
    def retry_after(self) -> float:
        if self.state == OPEN:
            return max(0.0, self.opened_at + self.open_for - self.clock())
        return self.open_for if self.state == HALF_OPEN else 0.0

    def before(self) -> bool:
        """Admit a call or raise CircuitOpen. Returns True when the call is the probe."""
        if self.state == OPEN:
            if self.clock() < self.opened_at + self.open_for:
                self.counters["rejected"] += 1
                raise CircuitOpen(self.retry_after())
            self.state, self.probing = HALF_OPEN, False
        if self.state == HALF_OPEN:
            if self.probing:
                self.counters["rejected"] += 1
                raise CircuitOpen(self.open_s)
            self.probing = True
            self.counters["probes"] += 1
            return True
        return False

    def success(self, probe: bool) -> None:
        self.failures = 0
        if probe:
            self.probing = False
        if self.state != CLOSED:
            self.state, self.open_for = CLOSED, self.open_s
            self.counters["closed"] += 1
            log.warning("circuit closed: the database answers again")

    def failure(self, probe: bool) -> None:
        self.failures += 1
        self.counters["outages"] += 1
        if probe:
            self.probing = False
            self.open_for = min(self.open_for * 2, self.max_open_s)
            self._open()
        elif self.state == CLOSED and self.failures >= self.threshold:
            self._open()

    def abandon(self, probe: bool) -> None:
        """The call ended without telling anything (cancelled): let another probe."""
        if probe:
            self.probing = False

    def _open(self) -> None:
        self.state, self.opened_at = OPEN, self.clock()
        self.counters["opened"] += 1
        log.warning("circuit open for %.1fs after %d outage failure(s)", self.open_for, self.failures)

    def _flush(self, pool: Any) -> None:
        """After an outage failure, test every idle pooled connection at once, in
        the background: connections that died with the old server are dropped
        together instead of failing one request each (and re-opening the breaker
        each time) after a failover."""
        if self._flushing is not None and not self._flushing.done():
            return

        async def check() -> None:
            try:
                await pool.check()
            except Exception as exc:  # noqa: BLE001 - the pool closing, say: nothing to flush
                log.debug("pool check after an outage failed: %s", exc)

        if hasattr(pool, "check"):
            self._flushing = asyncio.ensure_future(check())

    # --- use -----------------------------------------------------------------
    @asynccontextmanager
    async def connection(self, pool: Any) -> AsyncIterator[Any]:
        """pool.connection(), guarded: fail fast while open, learn from the outcome."""
        probe = self.before()
        try:
            async with pool.connection() as conn:
                yield conn
        except asyncio.CancelledError:
            self.abandon(probe)
            raise
        except BaseException as exc:
            if is_outage(exc):
                self.failure(probe)
                self._flush(pool)
            else:  # the database answered, even if with an error
                self.success(probe)
            raise
        else:
            self.success(probe)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "consecutive_failures": self.failures,
            "retry_after_s": round(self.retry_after(), 3),
            **{f"{k}_total": v for k, v in self.counters.items()},
        }


def circuit_open_handler(request: Any, exc: CircuitOpen) -> Any:
    from .errors import problem

    return problem(
        503,
        "circuit_open",
        "Database unavailable (circuit open)",
        "the database was unreachable moments ago; retry later with the same Idempotency-Key",
        headers={"Retry-After": exc.retry_after_header},
    )
