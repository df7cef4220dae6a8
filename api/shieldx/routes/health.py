"""Liveness and readiness."""

from __future__ import annotations

from litestar import Response, get

from ..models.health import Readiness
from ..schema import migration_ids
from .params import DB


@get("/health/live", tags=["health"], summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get("/health/ready", tags=["health"], summary="Database reachable, primary, migrations current")
async def ready(db: DB) -> Response[Readiness]:
    try:
        row = await db.one("SELECT * FROM ops.health()")
    except Exception as exc:  # noqa: BLE001 - any failure to reach the database means not ready
        return Response(
            Readiness(ready=False, reason=f"database unreachable: {type(exc).__name__}", breaker=db.breaker.state),
            status_code=503,
            headers={"Retry-After": "1"},
        )
    pending = sorted(set(migration_ids()) - set(row["migrations"]))
    ok = row["is_primary"] and not pending
    reason = None if ok else ("not the primary" if not row["is_primary"] else "migrations pending")
    return Response(
        Readiness(
            ready=ok, is_primary=row["is_primary"], migrations_pending=pending, reason=reason, breaker=db.breaker.state
        ),
        status_code=200 if ok else 503,
    )


ROUTES = [live, ready]
