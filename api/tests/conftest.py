"""API tests: the real Litestar app on a real test database, as the application role."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from litestar.testing import TestClient

from shieldx.app import create_app
from shieldx.config import Settings


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
