"""SQLSTATE -> HTTP, as RFC 9457 problem+json.

The mapping for the product's own errors (SXnnn) is read from the database's
ops.error_catalog at start-up: the rule lives once, in SQL. Only PostgreSQL's
own classes (connection loss, timeouts, bad input types) are mapped here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from psycopg_pool import PoolTimeout

log = logging.getLogger("shieldx.api")

PROBLEM = "application/problem+json"
RETRY_AFTER_S = 1


# Where a problem's `type` points: the page of every error, served by the API
# itself at /docs/errors (shieldx/openapi.py), one anchor per name, so
# `<page>#<name>` resolves against the API's own address. SHIELDX_ERRORS_URL
# may name another copy (an absolute URL, say behind a path-rewriting proxy).
ERRORS_PAGE = "/docs/errors"

# The API's own answers, that no SQL function raises (the named errors are ops.error_catalog's).
API_ERRORS: dict[str, tuple[int, str, str]] = {
    "invalid_request": (422, "Invalid request", "The body or a parameter does not match the documented schema"),
    "not_found": (404, "Not found", "No such route"),
    "method_not_allowed": (405, "Method not allowed", "The route does not take this method"),
    "http_error": (400, "Bad request", "A malformed request Litestar refused before any handler"),
    "database_unavailable": (
        503,
        "Database unavailable",
        "Connection lost, a standby, a shutdown, a timeout or a serialization failure: indeterminate; "
        "retry with the same Idempotency-Key after Retry-After",
    ),
    "circuit_open": (503, "Circuit open", "The database failed repeatedly; retry after Retry-After"),
    "internal_error": (500, "Internal error", "An unexpected failure (logged); nothing is known to have changed"),
}


class ErrorCatalog:
    """ops.error_catalog, as loaded from the database: SQLSTATE -> (name, HTTP status, title)."""

    def __init__(self) -> None:
        self.by_sqlstate: dict[str, tuple[str, int, str]] = {}
        self.type_base = ERRORS_PAGE

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.by_sqlstate = {r["sqlstate"]: (r["name"], r["http_status"], r["title"]) for r in rows}

    async def refresh(self, database: Any) -> None:
        self.load(await database.all("SELECT * FROM ops.error_codes()"))

    async def ensure(self, database: Any) -> None:
        """Load the catalog if it is not yet (the database was down at start-up)."""
        if not self.by_sqlstate:
            await self.refresh(database)

    def entry(self, sqlstate: str) -> tuple[str, int, str]:
        try:
            return self.by_sqlstate[sqlstate]
        except KeyError:
            raise LookupError(f"{sqlstate} is not in ops.error_catalog (is the database migrated?)") from None


catalog = ErrorCatalog()


def problem(
    status: int, name: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    body = {"type": f"{catalog.type_base}#{name}", "title": title, "status": status, "detail": detail, **extra}
    return Response(content=body, status_code=status, media_type=PROBLEM, headers=headers)


def with_instance(handlers: dict[Any, Any]) -> dict[Any, Any]:
    """Exception handlers whose problem answers name the request they answer (`instance`: its path)."""

    def wrap(handler: Any) -> Any:
        def answer(request: Request, exc: Exception) -> Response:
            response = handler(request, exc)
            if response.media_type == PROBLEM and isinstance(response.content, dict):
                response.content.setdefault("instance", request.url.path)
            return response

        return answer

    return {exc: wrap(handler) for exc, handler in handlers.items()}


def named_problem(sqlstate: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """The answer for a named error: its name, HTTP status and title are the catalog's."""
    name, status, title = catalog.entry(sqlstate)
    return problem(status, name, title, detail, headers=headers, sqlstate=sqlstate, **extra)


def unavailable(detail: str) -> Response:
    return problem(
        503, "database_unavailable", "Database unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def database_error(request: Request, exc: psycopg.Error) -> Response:
    diag = exc.diag
    state = diag.sqlstate or ""
    known = catalog.by_sqlstate.get(state)
    if known:
        try:
            facts = json.loads(diag.message_detail or "{}")
        except ValueError:
            facts = {}
        return named_problem(state, diag.message_primary or known[2], facts=facts)
    # Before the outage test: a statement timeout (57014) and a lock timeout are OperationalErrors too.
    if state in ("40001", "40P01", "57014", "55P03"):
        return unavailable("the operation did not complete in time; retry with the same Idempotency-Key")
    if (
        state.startswith("08")
        or state in ("57P01", "57P02", "57P03", "25006")
        or isinstance(exc, psycopg.OperationalError)
    ):
        # Connection lost, server shutting down, or a read-only (standby) server.
        return unavailable("the database is unreachable or not the primary; retry with the same Idempotency-Key")
    if state.startswith("22"):
        return problem(
            422, "invalid_argument", "Invalid argument", diag.message_primary or "invalid input", sqlstate=state
        )
    log.error("unmapped database error %s: %s", state, diag.message_primary)
    return problem(500, "internal_error", "Internal error", "unexpected database error", sqlstate=state)


def pool_timeout(request: Request, exc: PoolTimeout) -> Response:
    return unavailable("no database connection became free in time")


def validation_error(request: Request, exc: ValidationException) -> Response:
    return problem(
        422,
        "invalid_request",
        "Invalid request",
        str(exc.detail),
        errors=exc.extra if isinstance(exc.extra, list) else [],
    )


# Refusals Litestar decides before a handler runs, that the catalog names.
HTTP_NAMED = {413: "SX308"}  # too_large


def http_error(request: Request, exc: HTTPException) -> Response:
    sqlstate = HTTP_NAMED.get(exc.status_code)
    if sqlstate is not None and sqlstate in catalog.by_sqlstate:  # loaded by the guard before any request body is read
        return named_problem(sqlstate, str(exc.detail), headers=exc.headers)
    name = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return problem(exc.status_code, name, str(exc.detail), str(exc.detail), headers=exc.headers)


def data_error(request: Request, exc: psycopg.DataError) -> Response:
    # Raised by psycopg itself before sending, e.g. an integer beyond int64.
    if exc.diag.sqlstate:
        return database_error(request, exc)
    return problem(422, "invalid_argument", "Invalid argument", str(exc))


def unexpected(request: Request, exc: Exception) -> Response:
    # Whatever else went wrong is still answered as problem+json (and logged with its stack).
    log.exception("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return problem(500, "internal_error", "Internal error", "unexpected error")


HANDLERS = {
    Exception: unexpected,
    ValidationException: validation_error,
    HTTPException: http_error,
    PoolTimeout: pool_timeout,
    psycopg.DataError: data_error,
    psycopg.Error: database_error,
}
