"""The ASGI wrapper around the application's handler: request id, metrics and the
access log for every HTTP request, errors included.

It wraps Litestar's own handler (router + exception handling), so it sees the
final status of every answer, 404s and 500s too, and the route the router
chose (`scope["path_template"]`, absent when no route matched).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from . import context
from .logging import mask_ip, scrub, ua_family

access_log = logging.getLogger("shieldx.access")

UNMATCHED = "unmatched"
_REQUEST_ID = b"x-request-id"
_USER_AGENT = b"user-agent"


def _tenant(scope: dict[str, Any]) -> str | None:
    tenant = scope.get("path_params", {}).get("tenant_id")
    if tenant is not None:
        return scrub(str(tenant))  # as the caller wrote it in the path, refused or not
    principal = scope.get("state", {}).get("principal")
    return getattr(principal, "tenant_id", None)


def observe(app: Any, metrics: bool = True, request_log: bool = True, sql_tag: bool = True) -> Any:
    """Wrap an ASGI app. `metrics`, `request_log` and `sql_tag` (the request id as the database
    session's application_name) False leave only the X-Request-ID header handling."""
    if metrics:
        from .metrics import IN_FLIGHT, observe_request

        in_flight_inc, in_flight_dec = IN_FLIGHT.inc, IN_FLIGHT.dec
    perf = time.perf_counter

    async def observed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        raw_id = agent = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                raw_id = value
            elif name == _USER_AGENT:
                agent = value
        ctx = context.RequestContext(context.request_id_from(raw_id), sql_tag)
        token = context.current.set(ctx)
        id_header = (_REQUEST_ID, ctx.request_id.encode())
        status = 500  # if the app fails before answering, the server answers 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        started = perf()
        if metrics:
            in_flight_inc()
        try:
            await app(scope, receive, send_with_id)
        finally:
            elapsed = perf() - started
            route = scope.get("path_template") or UNMATCHED
            method = scope["method"]
            if metrics:
                in_flight_dec()
                observe_request(route, method, status, elapsed, ctx.replayed)
            if request_log:
                fields = {
                    "request_id": ctx.request_id,
                    "tenant": _tenant(scope),
                    "route": route,
                    "method": method,
                    "status": status,
                    "duration_ms": round(elapsed * 1000.0, 3),
                    "client": mask_ip(scope["client"][0]) if scope.get("client") else None,
                    "user_agent": ua_family(agent.decode("latin-1")) if agent else None,
                }
                if ctx.replayed:
                    fields["replayed"] = True
                access_log.info("%s %s %d", method, route, status, extra={"fields": fields})
            context.current.reset(token)

    return observed
