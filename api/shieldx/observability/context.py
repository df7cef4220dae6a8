"""The request being served, as a context variable shared by the middleware, the
database seam and the error hooks.

The middleware sets one `RequestContext` per HTTP request; code below it (the
guard, handlers, the database seam) reads or fills it. Dependencies Litestar
resolves in child tasks see the same object (contexts are copied shallowly).
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Any

# What an incoming X-Request-ID may be: at most 128 printable characters from a
# set that cannot end an SQL comment (no `*`), start a placeholder (no `%`),
# break a header or a log line. Anything else is replaced by a fresh id.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._~:@+=/-]{1,128}")


class RequestContext:
    __slots__ = ("replayed", "request_id", "sql_comment")

    def __init__(self, request_id: str, sql_tag: bool = True) -> None:
        self.request_id = request_id
        # Prefixed to every statement the API sends for this request: a DBA sees it in
        # pg_stat_activity.query and in the server's statement and error logs.
        self.sql_comment = f"/* request_id={request_id} */ " if sql_tag else ""
        self.replayed = False  # an idempotent call answered with its original result


current: ContextVar[RequestContext | None] = ContextVar("shieldx_request", default=None)


def request_id_from(raw: bytes | None) -> str:
    """The caller's X-Request-ID when it is acceptable, else a new uuid4 (hex)."""
    if raw:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if REQUEST_ID_RE.fullmatch(text):
            return text
    return uuid.uuid4().hex


def tag(query: str) -> str:
    """The statement as sent to PostgreSQL: prefixed with the request id, if serving a request."""
    ctx = current.get()
    return ctx.sql_comment + query if ctx is not None and ctx.sql_comment else query


def saw_row(row: Any) -> None:
    """Note what the database answered that the request's metrics and log need."""
    if row and row.get("replayed"):
        ctx = current.get()
        if ctx is not None:
            ctx.replayed = True
