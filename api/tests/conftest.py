"""API tests: the real Litestar app on a real test database, as the application role."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from litestar.testing import TestClient

from shieldx.app import create_app
from shieldx.config import Settings

PORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))


@pytest.fixture
def operator_key(dsn: str) -> str:
    """A platform operator API key, minted by a DBA in this test's database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT api_key FROM auth.create_operator_key('tests', 'tests')").fetchone()[0]


@pytest.fixture
def client(app_dsn: str, operator_key: str) -> Iterator[TestClient]:
    """The app, authenticated as the platform operator (may act on every tenant)."""
    # Tests send many refusals on purpose: the per-network limit of refusals is tested on its own.
    app = create_app(Settings(database_url=app_dsn, pool_min=1, pool_max=4, auth_failure_burst=1e6))
    with TestClient(app) as c:
        c.headers["Authorization"] = f"Bearer {operator_key}"
        yield c


@pytest.fixture
def tenant(client) -> str:
    assert client.put("/v1/tenants/acme", json={"name": "Acme"}).status_code == 201
    return "acme"


@pytest.fixture
def accounts(client, tenant) -> list[int]:
    ids = []
    for i in range(2):
        r = client.post(f"/v1/tenants/{tenant}/accounts", json={"name": f"a{i}"}, headers={"Idempotency-Key": f"o{i}"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["account_id"])
        g = client.post(
            f"/v1/tenants/{tenant}/accounts/{ids[-1]}/grants",
            json={"amount": 100},
            headers={"Idempotency-Key": f"g{i}"},
        )
        assert g.status_code == 201, g.text
    return ids


# --- logs the suite produces, for the log scan (test_zz_log_scan.py) ---------------
class SuiteLogs:
    """Where this session's logs go: API servers started by tests write their stderr into
    `dir`; every record logged in this process (in-process apps, fuzzing included) is
    copied there as JSON; `pg_log` and `pg_offset` mark the PostgreSQL server log and
    how far it went before the API tests began."""

    def __init__(self, dir: Path, pg_log: Path | None, pg_offset: int) -> None:
        self.dir, self.pg_log, self.pg_offset = dir, pg_log, pg_offset

    def server_log(self, name: str) -> Path:
        return self.dir / f"api-server-{name}.log"


def pg_server_log(admin_url: str) -> Path | None:
    """The local cluster's log: logging_collector's current file, else <data_directory>/server.log
    (where deploy/local/cluster.sh sends the server's stderr)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        current, data = conn.execute("SELECT pg_current_logfile(), current_setting('data_directory')").fetchone()
    path = Path(data) / (current or "server.log")
    return path if path.is_file() else None


@pytest.fixture(scope="session", autouse=True)
def suite_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteLogs]:
    from shieldx.observability.logging import JsonFormatter

    directory = tmp_path_factory.mktemp("suite-logs")
    pg_log = pg_server_log(f"postgresql://postgres@127.0.0.1:{PORT}/postgres")
    logs = SuiteLogs(directory, pg_log, pg_log.stat().st_size if pg_log else 0)
    handler = logging.FileHandler(directory / "in-process.log", encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    try:
        yield logs
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log scan reads what every other test logged: run it last, whatever the order of test paths."""
    last = [item for item in items if item.nodeid.split("::")[0].endswith("test_zz_log_scan.py")]
    if last:
        items[:] = [item for item in items if item not in last] + last
