"""Reading single rows and values: a query that must return a row says so when it does not."""

from __future__ import annotations

from typing import Any

import psycopg


def one(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    """The first row of `query`; an error if there is none."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError(f"no row from {query!r}")
    return row


def scalar(conn: psycopg.Connection[Any], query: Any, params: Any = None) -> Any:
    """The first column of the first row of `query` (a tuple-row connection)."""
    return one(conn, query, params)[0]
