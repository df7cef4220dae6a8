"""The Litestar application: routes, the database pool, error mapping, the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.routes import HTTPRoute

from . import openapi
from .auth import ApiProblem, KeyAuth, problem_handler, provide_principal, send_rate_limit
from .breaker import Breaker, CircuitOpen, circuit_open_handler
from .config import Settings
from .db import Database, make_pool
from .edge import check_body
from .errors import HANDLERS, catalog, with_instance
from .observability.wiring import install as install_observability
from .routes import all_routes
from .routes.health import check_schema


def allow_header(app: Litestar) -> Any:
    """A before_send hook: `Allow` on OPTIONS answers lists every method of the path.

    Litestar makes a path's OPTIONS handler when the path's first handler is
    registered, and keeps it when a controller adds more methods to the path:
    its `Allow` then named only the first handler's methods (GET missing from
    OPTIONS /v1/shadow/experiments). The hook answers each path's own set.
    """
    allow = {
        id(route.route_handler_map["OPTIONS"][0]): ", ".join(sorted(route.methods)).encode()
        for route in app.routes
        if isinstance(route, HTTPRoute) and "OPTIONS" in route.route_handler_map
    }

    async def send_allow(message: Any, scope: Any) -> None:
        if message["type"] == "http.response.start" and scope.get("method") == "OPTIONS":
            methods = allow.get(id(scope.get("route_handler")))
            if methods is not None:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message["headers"] = [*headers, (b"allow", methods)]

    return send_allow


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    pool = make_pool(settings)
    database = Database(pool, Breaker(settings.breaker_threshold, settings.breaker_open_s))
    key_auth = KeyAuth(
        database,
        enabled=settings.auth,
        cache_s=settings.auth_cache_s,
        failure_rate=settings.auth_failure_rate,
        failure_burst=settings.auth_failure_burst,
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await pool.open(wait=False)
        try:
            await catalog.refresh(database)
            await check_schema(database, settings.pool_timeout)  # readiness knows its schema from the start
        except Exception:  # noqa: BLE001, S110 - database not up yet: readiness says so; errors map on first success
            pass
        try:
            yield
        finally:
            await key_auth.flush()  # failed authentications counted since the last flush
            await pool.close()

    async def provide_db() -> Database:
        await catalog.ensure(database)
        return database

    handlers: dict[Any, Any] = with_instance(
        {**HANDLERS, ApiProblem: problem_handler, CircuitOpen: circuit_open_handler}
    )
    catalog.type_base = settings.errors_url
    app = Litestar(
        route_handlers=[*all_routes(), openapi.assets_router(), openapi.errors_page],
        dependencies={"db": Provide(provide_db, use_cache=False), "principal": Provide(provide_principal)},
        guards=[key_auth.guard],  # default deny: every route, see shieldx/auth.py
        before_request=check_body,  # JSON bodies: media type, syntax, depth, strict types (shieldx/edge.py)
        before_send=[send_rate_limit],  # RateLimit-* on keyed answers (shieldx/auth.py)
        state=State(
            {
                "auth": key_auth,
                "database": database,
                "audit_pubkey": bytes.fromhex(settings.audit_pubkey) if settings.audit_pubkey else None,
                "audit_verify_timeout_ms": settings.audit_verify_timeout_ms,
            }
        ),
        exception_handlers=handlers,
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,  # JSON logs: shieldx/observability/logging.py
        openapi_config=openapi.config(),
    )
    openapi.document(app)  # the guard's and error handlers' answers, in OpenAPI
    app.before_send.append(allow_header(app))  # OPTIONS answers name every method of the path
    install_observability(app, settings, pool, database, key_auth)  # metrics, request ids, JSON logs
    return app
