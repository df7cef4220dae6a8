"""Attach metrics, logs and request ids to an assembled application (one call from app.py)."""

from __future__ import annotations

from typing import Any

import psycopg

from ..auth import ApiProblem
from ..errors import catalog
from . import logging as json_logging
from .middleware import observe


def install(app: Any, settings: Any, pool: Any, database: Any, key_auth: Any) -> None:
    json_logging.configure(settings.log_level)
    app.asgi_handler, recorder = observe(
        app.asgi_handler, metrics=settings.metrics, request_log=settings.request_log, sql_tag=settings.sql_request_id
    )
    app.on_shutdown.append(recorder.flush)  # what the worker answered last, before it exits
    if not settings.metrics:
        return
    from . import metrics

    metrics.mirror_breaker(database.breaker)
    metrics.mirror_auth(key_auth)
    app.after_exception.append(count_refusal)
    sampler = metrics.PoolSampler(pool)
    app.on_startup.append(sampler.start)
    app.on_shutdown.append(sampler.stop)
    app.on_shutdown.append(metrics.worker_exit)


async def count_refusal(exc: Exception, scope: Any) -> None:
    """After-exception hook: a named error (its SQLSTATE in ops.error_catalog) answered as 4xx.

    The catalog decides name and status, for the guard's refusals (ApiProblem) as for the
    SQL functions' errors: the answer's status comes from the same entry."""
    from .metrics import refused

    if isinstance(exc, ApiProblem):
        state = exc.sqlstate or ""
    elif isinstance(exc, psycopg.Error):
        state = exc.diag.sqlstate or ""
    else:
        return
    known = catalog.by_sqlstate.get(state)
    if known is not None and known[1] < 500:
        refused(state, known[0])
