"""The ASGI wrapper around the application's handler: request id, metrics and the
access log for every HTTP request, errors included.

It wraps Litestar's own handler (router + exception handling), so it sees the
final status of every answer, 404s and 500s too, and the route the router
chose (`scope["path_template"]`, absent when no route matched). It is one plain
ASGI callable, not a stack of middleware.

What a request pays for is kept to a few dictionary lookups and one tuple of
plain values appended to a list: the `Recorder` turns those tuples into metric
updates and access lines in batches, at most FLUSH_S after the answer (and
before every /metrics answer, and when the worker stops). In a loaded worker
each Python call on the request path costs far more than in a tight loop (its
code and data are no longer in the processor's caches); done together, the same
updates cost a fraction of that. A worker killed outright (SIGKILL, out of
memory) loses the metrics and access lines of its last FLUSH_S at most.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from . import context
from .logging import ACCESS, access_fields, access_line, only_json_handler, write_lines

UNMATCHED = "unmatched"  # the route of requests no route matched (bounded cardinality)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID = b"x-request-id"
_USER_AGENT = b"user-agent"

# One answered request: route, method, status, seconds, replayed, request id, tenant,
# client host, user agent, time answered. Plain values only (the garbage collector does
# not track such tuples), never the scope.
Answered = tuple[str, str, int, float, bool, str, "str | None", "str | None", "bytes | None", float]


def _tenant(scope: dict[str, Any]) -> str | None:
    tenant = scope.get("path_params", {}).get("tenant_id")
    if tenant is not None:
        return str(tenant)  # as the caller wrote it in the path, refused or not (scrubbed when logged)
    principal = scope.get("state", {}).get("principal")
    return getattr(principal, "tenant_id", None)


class Recorder:
    """Requests answered by this worker, not yet in the metrics or the log; `flush` puts them there."""

    FLUSH_S = 0.025
    MAX_PENDING = 512  # flush at once past this many (bounds memory and the size of one write)

    def __init__(self, metrics: bool, request_log: bool) -> None:
        self.metrics, self.request_log = metrics, request_log
        self.pending: list[Answered] = []
        self.in_flight = 0  # requests being served by this worker
        self._in_flight_shown = 0  # ... as the in-flight gauge has it
        self.timer: asyncio.TimerHandle | None = None
        self.pid = os.getpid()
        logger = logging.getLogger(ACCESS)
        # The access line bypasses `logging` only when logging would send it to the API's own JSON
        # handler and nowhere else (what `shieldx serve` sets up); a host application's or a test's
        # handlers get a record per request, written at once, as any other record.
        self.direct = only_json_handler(logger)
        self.log_record: Callable[..., None] | None = None
        if request_log and not self.direct:
            self.log_record = logger.info
        self.log_lines = request_log and self.direct and logger.isEnabledFor(logging.INFO)
        self._metrics: Any = None
        if metrics:
            from . import metrics as prom  # after PROMETHEUS_MULTIPROC_DIR is set (see the package)

            self._metrics = prom
            prom.FLUSHERS.append(self.flush)
        atexit.register(self.flush)

    def answered(self, item: Answered) -> None:
        self.pending.append(item)
        if len(self.pending) >= self.MAX_PENDING:
            self.flush()
        elif self.timer is None:
            self.schedule()

    def schedule(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(self.FLUSH_S, self.flush)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending, []
        try:
            if self.metrics:
                prom = self._metrics
                if self.in_flight != self._in_flight_shown:
                    prom.IN_FLIGHT.inc(self.in_flight - self._in_flight_shown)
                    self._in_flight_shown = self.in_flight
                observe = prom.observe_request
                for route, method, status, seconds, replayed, *_ in batch:
                    observe(route, method, status, seconds, replayed)
                prom.export_counts()
        finally:  # the lines are written even if a metric update failed
            if self.log_lines and batch:
                pid = self.pid
                write_lines(
                    [
                        access_line(
                            at, pid, access_fields(rid, tenant, route, method, status, s, client, agent, replayed)
                        )
                        for route, method, status, s, replayed, rid, tenant, client, agent, at in batch
                    ]
                )


def observe(app: Any, metrics: bool = True, request_log: bool = True, sql_tag: bool = True) -> tuple[Any, Recorder]:
    """Wrap an ASGI app; returns the wrapper and its recorder. `metrics`, `request_log` and `sql_tag`
    (the request id as the database session's application_name) False leave only the X-Request-ID
    header handling."""
    recorder = Recorder(metrics, request_log)
    record = recorder.answered if metrics or recorder.log_lines else None
    log_record = recorder.log_record
    track_start = metrics
    perf, now = time.perf_counter, time.time
    new_context, request_id_from, current = context.RequestContext, context.request_id_from, context.current

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
        ctx = new_context(request_id_from(raw_id), sql_tag)
        token = current.set(ctx)
        id_header = (_REQUEST_ID, ctx.request_id.encode())
        status = 500  # if the app fails before answering, the server answers 500

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        started = perf()
        recorder.in_flight += 1
        if track_start and recorder.timer is None:  # a request that hangs shows in the in-flight gauge
            recorder.schedule()
        try:
            await app(scope, receive, send_with_id)
        finally:
            elapsed = perf() - started
            recorder.in_flight -= 1
            route = scope.get("path_template") or UNMATCHED
            method = scope["method"]
            if method not in METHODS:
                method = "other"  # any token is a valid method: keep label sets and log fields bounded
            client = scope.get("client")
            host = client[0] if client else None
            if record is not None:
                record(
                    (route, method, status, elapsed, ctx.replayed, ctx.request_id, _tenant(scope), host, agent, now())
                )
            if log_record is not None:
                fields = access_fields(
                    ctx.request_id, _tenant(scope), route, method, status, elapsed, host, agent, ctx.replayed
                )
                log_record("%s %s %d", method, route, status, extra={"fields": fields})
            current.reset(token)

    return observed, recorder
