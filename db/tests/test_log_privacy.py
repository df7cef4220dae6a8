"""No card number in any server log: failing statements' text and parameters are never logged.

A `vault.top_up(...)` typed in psql carries the card number in the statement's
text; the API sends it as a bind parameter. The server settings (cluster.sh,
deploy/patroni/patroni.yml.in, deploy/k8s/11-db-config.yaml) keep both out of
the log: `log_min_error_statement = panic`, `log_parameter_max_length[_on_error] = 0`,
`log_statement = none`, `log_min_duration_statement = -1`. The error itself is
still logged (message, DETAIL, CONTEXT), naming at most the last four digits.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import dict_row

from helpers import setup_accounts
from shieldx_local.private import api_server

PSQL = "/usr/lib/postgresql/15/bin/psql"
PAN = "4111111111111111"
PAN2 = "5555555555554444"
BAD_LUHN = "4111111111111112"
CARDS = (PAN, PAN2, BAD_LUHN)


def server_log(db) -> Path:
    """The local cluster's log file (cluster.sh starts it with pg_ctl -l <data>/server.log)."""
    log = Path(db.execute("SHOW data_directory").fetchone()["data_directory"]) / "server.log"
    assert log.exists(), f"no server log at {log}"
    return log


def read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def psql(dsn: str, sql: str, *settings: str) -> subprocess.CompletedProcess:
    """A DBA typing `sql` at psql (the card number is in the statement's text)."""
    script = "".join(f"SET {s};\n" for s in settings) + sql + "\n"
    return subprocess.run([PSQL, dsn, "-X", "-q"], input=script, capture_output=True, text=True, timeout=60)


def top_up_sql(account: int, key: str, pan: str) -> str:
    return f"SELECT * FROM vault.top_up('acme', {account}, 50, '{key}', '{pan}', '12/29');"


def test_failing_top_up_typed_in_psql_leaves_no_card_number_in_the_server_log(db, dsn):
    settings = {
        r["name"]: r["setting"]
        for r in db.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('log_min_error_statement', 'log_statement', "
            "'log_min_duration_statement', 'log_parameter_max_length', 'log_parameter_max_length_on_error')"
        )
    }
    assert settings["log_min_error_statement"] == "panic"
    assert settings["log_statement"] == "none"
    assert settings["log_min_duration_statement"] == "-1"
    assert settings["log_parameter_max_length"] == "0"
    assert settings["log_parameter_max_length_on_error"] == "0"
    (a,) = setup_accounts(db, n=1)
    log = server_log(db)
    start = log.stat().st_size
    ok = psql(dsn, top_up_sql(a, "pay-1", PAN))
    assert ok.returncode == 0 and "1111" in ok.stdout, ok.stderr
    reused = psql(dsn, top_up_sql(a, "pay-1", PAN2))  # idempotency key reused with another card
    assert "ERROR" in reused.stderr and PAN2 not in reused.stderr.split("LINE")[0], reused.stderr
    bad = psql(dsn, top_up_sql(a, "pay-2", BAD_LUHN))  # fails the Luhn check
    assert "ERROR" in bad.stderr
    tail = read_from(log, start)
    assert tail.count("ERROR:") >= 2, tail  # the failures are logged ...
    assert not [c for c in CARDS if c in tail], tail  # ... without the numbers


def test_the_log_check_sees_a_logged_statement(db, dsn):
    """Control: with the statement logged on error (a superuser's session setting), the number is there."""
    (a,) = setup_accounts(db, n=1)
    log = server_log(db)
    start = log.stat().st_size
    assert psql(dsn, top_up_sql(a, "pay-1", PAN)).returncode == 0
    psql(dsn, top_up_sql(a, "pay-1", PAN2), "log_min_error_statement = error")
    tail = read_from(log, start)
    assert "STATEMENT:" in tail and PAN2 in tail


def test_failing_top_up_through_the_api_leaves_no_card_number_in_any_log(db, dsn, app_dsn, tmp_path):
    (a,) = setup_accounts(db, n=1)
    key = db.execute("SELECT api_key FROM auth.create_operator_key('log-test', 'log-test')").fetchone()["api_key"]
    log = server_log(db)
    start = log.stat().st_size
    api_log = tmp_path / "api.log"
    with api_server(app_dsn, api_log, workers=1) as base:
        headers = {"Authorization": f"Bearer {key}"}
        url = f"{base}/v1/tenants/acme/accounts/{a}/card-top-ups"

        def top_up(idem: str, pan: str) -> httpx.Response:
            body = {"amount": 50, "card_number": pan, "expiry": "12/29", "holder": "Jane Doe", "subject": "s-1"}
            return httpx.post(url, json=body, headers={**headers, "Idempotency-Key": idem}, timeout=30)

        assert top_up("pay-1", PAN).status_code == 201
        reused = top_up("pay-1", PAN2)
        assert reused.status_code == 409, reused.text
        bad = top_up("pay-2", BAD_LUHN)
        assert bad.status_code in (400, 422), bad.text
    tail = read_from(log, start)
    assert "ERROR:" in tail, tail
    for text in (tail, api_log.read_text(errors="replace")):
        assert not [c for c in CARDS if c in text], text
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        assert conn.execute("SELECT count(*) AS n FROM vault.payments").fetchone()["n"] == 1
