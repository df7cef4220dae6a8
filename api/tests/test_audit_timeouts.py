"""The audit verification routes run under their own statement_timeout (SHIELDX_AUDIT_VERIFY_TIMEOUT), not the
API's general one: a full verify reads the whole log, every other route keeps the general bound."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from shieldx.app import create_app
from shieldx.cli import main
from shieldx.config import Settings

ACCOUNTS = 10_000
PER_ACCOUNT = 20  # 200,000 journal entries and as many ledger audit entries, 10,000 account entries


def seed(dsn: str) -> int:
    """A log far bigger than a 50 ms statement can verify. One journal entry per account per statement: the audit
    trigger logs a statement's entries of one account one by one, so wide statements are the fast way to fill it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET shieldx.ledger_bulk = 'on'")  # one audit trigger call per statement
        conn.execute("SELECT credits.create_tenant('big', 'Big')")
        conn.execute(
            """INSERT INTO credits.accounts (tenant_id, name, idem_key)
               SELECT 'big', 'a' || g, 'open-' || g FROM generate_series(1, %s) g""",
            (ACCOUNTS,),
        )
        for s in range(1, PER_ACCOUNT + 1):
            conn.execute(
                """INSERT INTO credits.entries (account_id, tenant_id, seq, kind, amount, balance_after, idem_key,
                                                reason)
                   SELECT account_id, 'big', %s, 'grant', 1, %s, 'g-' || account_id || '-' || %s, 'bulk'
                     FROM credits.accounts WHERE tenant_id = 'big' ORDER BY account_id""",
                (s, s, s),
            )
        conn.execute(
            "UPDATE credits.accounts SET balance = %s, entry_seq = %s WHERE tenant_id = 'big'",
            (PER_ACCOUNT, PER_ACCOUNT),
        )
        conn.execute("VACUUM ANALYZE audit.log")
        conn.execute("VACUUM ANALYZE credits.entries")
        return conn.execute("SELECT count(*) FROM audit.log").fetchone()[0]


@pytest.fixture
def big_log(dsn) -> int:
    return seed(dsn)


def client(app_dsn: str, operator_key: str, **settings) -> TestClient:
    app = create_app(
        Settings(
            database_url=app_dsn, pool_min=1, pool_max=2, auth_failure_burst=1e6, statement_timeout_ms=50, **settings
        )
    )
    c = TestClient(app)
    c.headers["Authorization"] = f"Bearer {operator_key}"
    return c


def test_a_full_verify_through_the_api_outlives_the_general_statement_timeout(big_log, app_dsn, operator_key):
    assert big_log > 200_000
    with client(app_dsn, operator_key) as c:  # general timeout 50 ms, verify timeout the default
        v = c.get("/v1/audit/verify")  # full, journal content compared
        assert v.status_code == 200, v.text
        assert v.json()["ok"] and v.json()["entries_checked"] >= big_log, v.text
        # The general timeout still bounds the other routes: a checkpoint over 20,000 chains does not fit in it.
        cp = c.post("/v1/audit/checkpoints")
        assert cp.status_code == 503 and cp.json()["type"].endswith("#database_unavailable"), cp.text
        assert "did not complete in time" in cp.json()["detail"]
        # The verify route's connection went back to the pool with the general timeout, not the route's.
        assert c.get("/v1/audit/verify").status_code == 200
        assert c.post("/v1/audit/checkpoints").status_code == 503
    # And the verify route runs under SHIELDX_AUDIT_VERIFY_TIMEOUT: too short a one stops it.
    with client(app_dsn, operator_key, audit_verify_timeout_s=0.05) as c:
        v = c.get("/v1/audit/verify")
        assert v.status_code == 503 and "did not complete in time" in v.json()["detail"], v.text


def test_the_cli_verify_ignores_a_database_statement_timeout_unless_told(big_log, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {psycopg.conninfo.conninfo_to_dict(dsn)['dbname']} SET statement_timeout = 50")
        assert conn.execute("SELECT count(*) FROM audit.log").fetchone()[0] == big_log
    with psycopg.connect(dsn) as conn:  # every new session gets 50 ms
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "50ms"
    ok = CliRunner().invoke(main, ["audit", "verify", "--url", dsn])
    assert ok.exit_code == 0 and f"verified {big_log:,} entries" in ok.output, ok.output
    short = CliRunner().invoke(main, ["audit", "verify", "--url", dsn, "--timeout", "0.001"])
    assert short.exit_code == 2 and "verification did not finish" in short.output, short.output


def test_the_verify_timeout_is_read_from_the_environment():
    assert Settings.from_env({"SHIELDX_AUDIT_VERIFY_TIMEOUT": "600"}).audit_verify_timeout_s == 600
    assert Settings.from_env({}).audit_verify_timeout_s == 180
    assert [Settings(audit_verify_timeout_s=s).audit_verify_timeout_ms for s in (0, 0.0001, 2.5)] == [0, 1, 2500]
