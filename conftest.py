"""Fixtures shared by db/tests and api/tests: real PostgreSQL, never mocked.

Tests run against the project's local cluster (started by `make test` as the
unprivileged postgres user, since the server refuses to run as root). A
template database is migrated once per session; every test gets a fresh clone.
The template is never the pg_cron database (cron.database_name = shieldx).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row
from pytest_postgresql import factories

from shieldx import schema

PORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))
TEST_DB = f"shieldx_test_{os.getpid()}"


def _load(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: object) -> None:
    schema.migrate(f"postgresql://{user}@{host}:{port}/{dbname}")


postgresql_noproc = factories.postgresql_noproc(
    host="127.0.0.1", port=PORT, user="postgres", dbname=TEST_DB, load=[_load]
)
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture
def dsn(postgresql: psycopg.Connection) -> str:
    """Superuser URL of this test's fresh database."""
    info = postgresql.info
    return f"postgresql://postgres@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture
def app_dsn(dsn: str) -> str:
    """The same database, as the application role."""
    return dsn.replace("postgres@", "shieldx_app@", 1)


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection]:
    """An autocommit superuser connection: a DBA at psql."""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def connect(dsn: str):
    """Open more connections to the test database (for concurrency tests)."""
    opened: list[psycopg.Connection] = []

    def _connect(role: str | None = None) -> psycopg.Connection:
        url = dsn if role is None else dsn.replace("postgres@", f"{role}@", 1)
        conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        opened.append(conn)
        return conn

    yield _connect
    for conn in opened:
        conn.close()
