"""The database seam: a psycopg async pool and one-call helpers.

Connections are autocommit (each SQL function is its own transaction) and
prepare every statement on first use, so a route costs one round trip.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from .config import Settings


async def _configure(conn: AsyncConnection) -> None:
    conn.prepare_threshold = 0


def make_pool(settings: Settings) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        settings.database_url,
        min_size=settings.pool_min,
        max_size=settings.pool_max,
        timeout=settings.pool_timeout,
        open=False,
        configure=_configure,
        kwargs={
            "autocommit": True,
            "row_factory": dict_row,
            "options": f"-c statement_timeout={settings.statement_timeout_ms}",
            "application_name": "shieldx-api",
        },
        # Drop a connection that broke (failover, restart) before reuse.
        check=AsyncConnectionPool.check_connection,
        name="shieldx",
    )


class Database:
    """What route handlers receive: call one SQL function, get rows back."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def one(self, query: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        assert row is not None, query
        return row

    async def all(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()
