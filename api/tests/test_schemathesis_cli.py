"""Conformance: the schemathesis CLI, every phase and every check, against a real server.

A real server (`shieldx serve`, one worker) on this test's real database;
schemathesis runs the examples, coverage, fuzzing and stateful phases with all
its checks over every operation of the served document, once per kind of
caller: the platform operator, a tenant key with the admin and consumer
roles, an auditor, a wrong key and no key. Any failure fails the test.

api/tests/schemathesis.toml turns off the few checks that cannot hold for one
operation, each with its reason (rules JSON Schema cannot state);
api/tests/schemathesis_hooks.py spells whole numbers as JSON integers (the
API's strict types). The per-network limit of 401/403 answers stays on, with
a budget (SHIELDX_AUTH_FAILURE_BURST) a conformance run does not exhaust.
The seed is fixed and the example count small (SHIELDX_SCHEMATHESIS_CLI_EXAMPLES).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import psycopg
import pytest

from shieldx_local.private import api_server

HERE = Path(__file__).parent
CONFIG = HERE / "schemathesis.toml"
HOOKS = HERE / "schemathesis_hooks.py"
EXAMPLES = os.environ.get("SHIELDX_SCHEMATHESIS_CLI_EXAMPLES", "4")
SEED = "20261202"
# Refusals of authentication a run may draw from one network before 429: far above what one run sends.
FAILURE_BUDGET = "100000"


def schemathesis_cli() -> list[str]:
    """The CLI of the environment running the tests."""
    found = Path(sys.executable).with_name("schemathesis")
    return [str(found)] if found.exists() else [shutil.which("schemathesis") or "schemathesis"]


class Server(NamedTuple):
    base: str
    log: Path


@pytest.fixture
def server(app_dsn: str, dsn: str, suite_logs) -> Iterator[Server]:
    log = suite_logs.server_log(f"schemathesis-{uuid.uuid4().hex[:8]}")
    with api_server(
        app_dsn,
        log,
        workers=1,
        env={"SHIELDX_AUTH_FAILURE_BURST": FAILURE_BUDGET, "SHIELDX_POOL_MIN": "1", "SHIELDX_POOL_MAX": "4"},
    ) as base:
        yield Server(base, log)


def statuses(base: str, log: Path) -> dict[int, int]:
    """The statuses the server answered on /v1 routes, from its access log. Access lines are written in
    batches (observability.middleware.Recorder); a scrape of /metrics writes the worker's waiting ones first."""
    httpx.get(base + "/metrics", timeout=30).raise_for_status()
    seen: dict[int, int] = {}
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "shieldx.access" and str(entry.get("route", "")).startswith("/v1/"):
                seen[entry["status"]] = seen.get(entry["status"], 0) + 1
    return seen


@pytest.fixture
def keys(server: Server, dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        operator = conn.execute("SELECT api_key FROM auth.create_operator_key('conformance', 'conformance')").fetchone()
    op = {"Authorization": f"Bearer {operator[0]}"}
    with httpx.Client(base_url=server.base, headers=op, timeout=30) as c:
        assert c.put("/v1/tenants/acme", json={"name": "Acme"}).status_code == 201
        accounts: list[int] = []
        for i in range(2):
            r = c.post("/v1/tenants/acme/accounts", json={"name": f"a{i}"}, headers={"Idempotency-Key": f"a{i}"})
            account = r.json()["account_id"]
            accounts.append(account)
            g = c.post(
                f"/v1/tenants/acme/accounts/{account}/grants",
                json={"amount": 1000},
                headers={"Idempotency-Key": f"g{i}"},
            )
            assert g.status_code == 201, g.text

        def key(name: str, roles: list[str]) -> str:
            body = {"name": name, "roles": roles, "rate_per_s": 100000, "burst": 100000}
            r = c.post("/v1/tenants/acme/keys", json=body, headers={"Idempotency-Key": name})
            assert r.status_code == 201, r.text
            return r.json()["api_key"]

        tenant = key("tenant", ["admin", "consumer"])
        auditor = key("auditor", ["auditor"])
    return {
        "operator": operator[0],
        "tenant": tenant,
        "auditor": auditor,
        "wrong": tenant[:-4] + ("0000" if not tenant.endswith("0000") else "1111"),
        "none": None,
        "accounts": accounts,
    }


def config(cwd: Path, accounts: list[int]) -> Path:
    """The run's configuration: schemathesis.toml, and half the drawn tenant and account ids pinned to
    the tenant's real ones, so the calls reach the ledger and not only its 404s."""
    path = cwd / "schemathesis.toml"
    path.write_text(
        CONFIG.read_text()
        + f"""
[dictionaries.tenants]
values = ["acme"]

[dictionaries.accounts]
values = {accounts!r}

[parameters]
"path.tenant_id" = {{ dictionary = "tenants", probability = 0.5 }}
"path.account_id" = {{ dictionary = "accounts", probability = 0.5 }}
"""
    )
    return path


def run(base: str, key: str | None, cwd: Path, accounts: list[int]) -> subprocess.CompletedProcess:
    command = [
        *schemathesis_cli(),
        "--config-file",
        str(config(cwd, accounts)),
        "run",
        f"{base}/docs/openapi.json",
        "--phases=examples,coverage,fuzzing,stateful",
        f"--max-examples={EXAMPLES}",
        f"--seed={SEED}",
        "--workers=1",  # hypothesis draws are not thread-safe on every Python (AST recursion errors)
        "--no-color",
    ]
    if key is not None:
        command += ["-H", f"Authorization: Bearer {key}"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    # In a scratch directory: the CLI keeps a cache (.schemathesis/) where it runs.
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False, cwd=cwd)


SUMMARY = re.compile(r"^\s*(\d+) generated, (.*)$", re.MULTILINE)


@pytest.mark.parametrize("kind", ["operator", "tenant", "auditor", "wrong", "none"])
def test_schemathesis_finds_nothing(server, keys, kind, tmp_path) -> None:
    before = statuses(server.base, server.log)
    done = run(server.base, keys[kind], tmp_path, keys["accounts"])
    summary = SUMMARY.search(done.stdout)
    print(f"schemathesis ({kind}): {summary.group(0).strip() if summary else '?'}")
    assert done.returncode == 0, (
        f"schemathesis ({kind}) found something:\n{done.stdout[-20000:]}\n{done.stderr[-2000:]}"
    )
    assert summary is not None and int(summary.group(1)) > 500, done.stdout[-3000:]
    assert "passed" in summary.group(2) and "failure" not in summary.group(2) and "error" not in done.stdout[-300:]
    # The run reached the ledger with a valid key, and nothing but refusals without one.
    after = statuses(server.base, server.log)
    answered = {status: n - before.get(status, 0) for status, n in after.items() if n > before.get(status, 0)}
    print(f"  statuses on /v1: {dict(sorted(answered.items()))}")
    ok = sum(n for status, n in answered.items() if 200 <= status < 300)
    if kind in ("wrong", "none"):
        assert ok == 0 and answered.get(401, 0) > 500, answered
    else:
        assert ok > 0, answered  # most of a tenant key's calls are 403 (operator routes) or 404 (other tenants)
