"""Configuration from the environment, including libpq multi-host URLs."""

from __future__ import annotations

import pytest
from litestar.testing import TestClient

from shieldx.app import create_app
from shieldx.config import Settings


def test_settings_from_environment():
    s = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://a@h1:5432,h2:5433/db?target_session_attrs=read-write",
            "SHIELDX_POOL_MAX": "32",
            "SHIELDX_POOL_TIMEOUT": "2.5",
        }
    )
    assert s.database_url.startswith("postgresql://a@h1:5432,h2:5433/")
    assert (s.pool_max, s.pool_timeout, s.pool_min) == (32, 2.5, Settings().pool_min)


def test_bad_setting_is_refused():
    with pytest.raises(ValueError):
        Settings.from_env({"SHIELDX_POOL_MAX": "many"})


def test_multi_host_url_skips_a_dead_host_and_finds_the_primary(app_dsn):
    # app_dsn: postgresql://shieldx_app@127.0.0.1:PORT/db ; put a dead host first.
    user_host, rest = app_dsn.split("@", 1)
    hostport, dbname = rest.split("/", 1)
    url = f"{user_host}@127.0.0.1:1,{hostport}/{dbname}?target_session_attrs=read-write&connect_timeout=2"
    app = create_app(Settings(database_url=url, pool_min=1, pool_max=2))
    with TestClient(app) as client:
        r = client.get("/health/ready")
        assert r.status_code == 200 and r.json()["is_primary"] is True


def test_database_url_follows_the_local_cluster_port_unless_given():
    assert Settings.from_env({"SHIELDX_PGPORT": "55999"}).database_url == (
        "postgresql://shieldx_app@127.0.0.1:55999/shieldx"
    )
    given = "postgresql://shieldx_app@haproxy:5000/shieldx?target_session_attrs=read-write"
    assert Settings.from_env({"SHIELDX_PGPORT": "55999", "DATABASE_URL": given}).database_url == given
