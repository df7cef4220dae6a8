"""Body of the readiness route (ops.health)."""

from __future__ import annotations

import msgspec


class Readiness(msgspec.Struct):
    ready: bool
    is_primary: bool | None = None
    migrations_pending: list[str] = []
    reason: str | None = None
    breaker: str | None = None  # the circuit breaker's state: closed, open or half_open
    database: str | None = None  # "reachable", or "unreachable: <error>" (the last check; readiness ignores it)
