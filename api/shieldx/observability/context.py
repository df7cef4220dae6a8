"""The request being served, as a context variable shared by the middleware, the
database seam and the error hooks.

The middleware sets one `RequestContext` per HTTP request; code below it (the
guard, handlers, the database seam) reads or fills it. Dependencies Litestar
resolves in child tasks see the same object (contexts are copied shallowly).

The database sees the request id as its session's `application_name`
("shieldx-api <request id>"): pg_stat_activity shows it next to the running
statement, and the server log shows it wherever log_line_prefix has %a. It is
set by the statement itself (`statement` below wraps the query so that it first
calls set_config with the id as a bound parameter): no extra round trip, and the
text stays the same for every request, so each statement stays prepared. A
comment with the id in front of the text would be simpler but makes every text
unique, hence parsed and planned on every call: measured at about 100 µs more per
statement than the prepared one, against about 15 µs for this wrapper.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

# What an incoming X-Request-ID may be: at most 128 printable characters from a
# set that cannot break a header, a log line or an SQL comment (no `*`, no `%`,
# no spaces or quotes). Anything else is replaced by a fresh id.
REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._~:@+=/-]{1,128}")


APPLICATION = "shieldx-api"


class RequestContext:
    __slots__ = ("application_name", "replayed", "request_id")

    def __init__(self, request_id: str, sql_tag: bool = True) -> None:
        self.request_id = request_id
        # PostgreSQL shows the first 63 bytes: ids up to 51 characters are shown whole.
        self.application_name = f"{APPLICATION} {request_id}" if sql_tag else None
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


# The query runs only after set_config: a LATERAL subquery that refers to _s is on the
# inner side of the join, and OFFSET 0 keeps the planner from flattening it away.
_WRAP = (
    "SELECT _q.* FROM (SELECT pg_catalog.set_config('application_name', %s, false) AS _rid) AS _s, "
    "LATERAL (SELECT * FROM ({}) AS _i WHERE _s._rid IS NOT NULL OFFSET 0) AS _q"
)
_wrapped: dict[str, str] = {}


def statement(query: str, params: Sequence[Any]) -> tuple[str, Sequence[Any]]:
    """The SELECT and its parameters as sent to PostgreSQL: while serving a request, made to
    set application_name to the request's first (see the module's docstring)."""
    ctx = current.get()
    if ctx is None or ctx.application_name is None or isinstance(params, dict):
        return query, params
    text = _wrapped.get(query)
    if text is None:
        text = _WRAP.replace("{}", query)
        if len(_wrapped) < 1024:  # the API's queries are constants: a few dozen texts
            _wrapped[query] = text
    return text, (ctx.application_name, *params)


def saw_row(row: Any) -> None:
    """Note what the database answered that the request's metrics and log need."""
    if row and row.get("replayed"):
        ctx = current.get()
        if ctx is not None:
            ctx.replayed = True
