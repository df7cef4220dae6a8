"""Liveness and readiness (the Kubernetes probes: docs/operations/kubernetes.md).

live   the process answers: nothing else. A failed liveness probe restarts the pod.
ready  the process answers, its connection pool is open, and the schema it was
       built for is applied (no migration on disk missing from the database),
       as last seen. Not whether the database answers now: during a database
       outage every pod would turn unready at once and callers would get the
       load balancer's errors; instead each pod stays in service and answers
       503 with Retry-After itself (the breaker and the problem handlers).

The schema is checked at most every SCHEMA_CHECK_S seconds, within
SCHEMA_CHECK_TIMEOUT_S; a check that cannot reach the database keeps the
last answer. Until a first check succeeds the pod is not ready (a new pod
of a release whose migrations have not run must not take traffic).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass

from litestar import Request, Response, get

from ..db import Database
from ..models.health import Readiness
from ..schema import migration_ids

SCHEMA_CHECK_S = 5.0
SCHEMA_CHECK_TIMEOUT_S = 0.5  # well within the probe timeout (3 s) and a client's 1 s


@dataclass
class SchemaSeen:
    checked_at: float = float("-inf")  # monotonic time of the last successful check
    is_primary: bool | None = None
    pending: list[str] | None = None  # None: never checked
    reachable: bool | None = None  # the last attempt's outcome
    error: str | None = None


_seen: weakref.WeakKeyDictionary[Database, SchemaSeen] = weakref.WeakKeyDictionary()


async def check_schema(db: Database, timeout: float = SCHEMA_CHECK_TIMEOUT_S) -> SchemaSeen:
    """The schema as last seen by this process; checked again when older than SCHEMA_CHECK_S.

    Also run once at start-up (app.py), so every worker process knows its schema
    before a probe reaches it: a worker first asked during an outage would
    otherwise not know, and turn the pod unready."""
    seen = _seen.setdefault(db, SchemaSeen())
    if time.monotonic() - seen.checked_at < SCHEMA_CHECK_S:
        return seen
    try:
        row = await asyncio.wait_for(db.one("SELECT * FROM ops.health()"), timeout)
    except Exception as exc:  # noqa: BLE001 - the database's state is reported, not raised
        seen.reachable, seen.error = False, type(exc).__name__
        return seen
    seen.checked_at, seen.reachable, seen.error = time.monotonic(), True, None
    seen.is_primary = row["is_primary"]
    seen.pending = sorted(set(migration_ids()) - set(row["migrations"]))
    return seen


@get("/health/live", tags=["health"], summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/health/ready",
    tags=["health"],
    summary="Pool open and schema current (as last seen); stays ready while the database is down",
)
async def ready(request: Request) -> Response[Readiness]:
    # The app's Database itself, not the `db` dependency: that one first loads the
    # error catalog, which would make the probe wait on the database.
    db: Database = request.app.state.database
    seen = await check_schema(db)
    if db.pool.closed:
        reason: str | None = "connection pool closed"
    elif seen.pending is None:
        reason = f"schema not checked yet (database unreachable: {seen.error})"
    elif seen.pending:
        reason = "migrations pending"
    else:
        reason = None
    return Response(
        Readiness(
            ready=reason is None,
            is_primary=seen.is_primary,
            migrations_pending=seen.pending or [],
            reason=reason,
            breaker=db.breaker.state,
            database="reachable" if seen.reachable else f"unreachable: {seen.error}",
        ),
        status_code=200 if reason is None else 503,
        headers={} if reason is None else {"Retry-After": "1"},
    )


ROUTES = [live, ready]
