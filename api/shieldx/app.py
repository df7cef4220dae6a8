"""The Litestar application: routes, the database pool, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from .auth import ApiProblem, KeyAuth, document, problem_handler, provide_principal
from .breaker import Breaker, CircuitOpen, circuit_open_handler
from .config import Settings
from .db import Database, make_pool
from .errors import HANDLERS, catalog
from .observability.wiring import install as install_observability
from .routes import all_routes


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    pool = make_pool(settings)
    database = Database(pool, Breaker(settings.breaker_threshold, settings.breaker_open_s))
    key_auth = KeyAuth(database, enabled=settings.auth, cache_s=settings.auth_cache_s)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await pool.open(wait=False)
        try:
            catalog.load(await database.all("SELECT * FROM ops.error_codes()"))
        except Exception:  # noqa: BLE001, S110 - database not up yet: readiness says so; errors map on first success
            pass
        try:
            yield
        finally:
            await pool.close()

    async def provide_db() -> Database:
        if not catalog.by_sqlstate:
            catalog.load(await database.all("SELECT * FROM ops.error_codes()"))
        return database

    app = Litestar(
        route_handlers=all_routes(),
        dependencies={"db": Provide(provide_db, use_cache=False), "principal": Provide(provide_principal)},
        guards=[key_auth.guard],  # default deny: every route, see shieldx/auth.py
        state=State({"auth": key_auth, "database": database}),
        exception_handlers={**HANDLERS, ApiProblem: problem_handler, CircuitOpen: circuit_open_handler},  # type: ignore[dict-item]
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,  # JSON logs: shieldx/observability/logging.py
        openapi_config=OpenAPIConfig(
            title="ShieldX Credits & Shadow",
            version="1.0.0",
            path="/docs",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
    )
    document(app)  # the guard's and error handlers' answers, in OpenAPI
    install_observability(app, settings, pool, database, key_auth)  # metrics, request ids, JSON logs
    return app
