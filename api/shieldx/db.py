"""The database seam: a psycopg async pool and one-call helpers.

Connections are autocommit (each SQL function is its own transaction) and
prepare every statement on first use, so a route costs one round trip.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from .breaker import Breaker
from .config import Settings
from .observability.context import saw_row, statement  # request id -> application_name; replays seen

# A connection returned to the pool less than this long ago is handed out
# without a round trip to check it: a failure on it is reported as 503
# (indeterminate; the client retries with the same Idempotency-Key). Older
# idle connections are checked first, so a failover or restart that happened
# while they sat idle is caught before a request uses them.
CHECK_IDLE_AFTER_S = 1.0

# psycopg_pool retries a lost connection with exponential backoff (1, 2, 4,
# 8 s...) for reconnect_timeout seconds while its slot stays taken, so after a
# failover the pool could wait 15 s+ to reconnect. Giving up early frees the
# slot; the next request then opens a connection at once (to the new primary).
RECONNECT_TIMEOUT_S = 2.0


async def _configure(conn: AsyncConnection) -> None:
    conn.prepare_threshold = 0


async def _stamp_return(conn: AsyncConnection) -> None:
    conn._shieldx_returned_at = time.monotonic()  # type: ignore[attr-defined]


async def _check_if_idle(conn: AsyncConnection) -> None:
    returned = getattr(conn, "_shieldx_returned_at", 0.0)
    if conn.broken or time.monotonic() - returned > CHECK_IDLE_AFTER_S:
        await AsyncConnectionPool.check_connection(conn)


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
        check=_check_if_idle,
        reconnect_timeout=RECONNECT_TIMEOUT_S,
        reset=_stamp_return,
        name="shieldx",
    )


class Database:
    """What route handlers receive: call one SQL function, get rows back."""

    def __init__(self, pool: AsyncConnectionPool, breaker: Breaker | None = None) -> None:
        self.pool = pool
        self.breaker = breaker or Breaker()  # fail fast while the database is unreachable

    async def one(self, query: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        async with self.breaker.connection(self.pool) as conn:
            cur = await conn.execute(*statement(query, params))
            row = await cur.fetchone()
        assert row is not None, query
        saw_row(row)
        return row

    async def one_with_timeout(self, query: str, params: Sequence[Any], timeout_ms: int) -> dict[str, Any]:
        """One call under its own statement_timeout (0: none) instead of the pool's: `SET LOCAL` in
        the call's own transaction, so the connection goes back to the pool with its usual timeout.
        For the operator's checks that read the whole audit log."""
        async with self.breaker.connection(self.pool) as conn, conn.transaction():
            await conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(timeout_ms),))
            cur = await conn.execute(*statement(query, params))
            row = await cur.fetchone()
        assert row is not None, query
        saw_row(row)
        return row

    async def all(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self.breaker.connection(self.pool) as conn:
            cur = await conn.execute(*statement(query, params))
            return await cur.fetchall()
