"""A release rehearsed under load: expand migration, old and new API side by side, rollback.

The workload (shieldx_local.workload) sends grants, consumes, transfers and
holds to the API processes in `work.bases`, as a Service spreads requests over
pods; removing a process from that list before stopping it is what taking a pod
out of the endpoints does. The steps, in order (docs/operations/upgrades.md):

1. the old release serves (API process `old`), the workload runs;
2. the new release's API process starts: live, but not ready (its migrations
   are pending), so it gets no requests;
3. migrate to the new release: the expand migrations (a column, an index built
   concurrently) and the new release's function files (a new overload), while
   the old API serves; the new process turns ready and serves next to the old one;
4. the old process is taken out, then stopped;
5. rollback of the API: an old-release process starts, the new one is taken out
   and stopped;
6. rollback of the schema: the expand migrations are rolled back while the
   old release serves;
7. the workload stops; every acknowledged operation is checked against the
   ledger, `credits.reconcile()` must be empty and `audit.verify()` ok.

Both "releases" run the same code here; the new one's files (SHIELDX_ROOT, see
release_tree) add the fixture migrations (deploy/tests/upgrade_migrations), and
its migrate applies those and the fixture function file
(deploy/tests/upgrade_functions). The old one runs on a schema it does not know
(expand), which is what a rolling release does.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

from shieldx import schema

from .private import api_server, ready
from .processes import http_json, wait_until
from .state import ROOT
from .workload import Workload, seed_bank, verify

MIGRATIONS = ROOT / "deploy" / "tests" / "upgrade_migrations"
FUNCTIONS = ROOT / "deploy" / "tests" / "upgrade_functions"


class _Layout:
    def __init__(self, url: str) -> None:
        self._url = url

    def url(self, *_: Any, **__: Any) -> str:
        return self._url


class SingleNode:
    """The part of shieldx_local.cluster.Cluster that workload.verify() uses, for one PostgreSQL server."""

    def __init__(self, url: str) -> None:
        self.layout = _Layout(url)

    def writable_nodes(self) -> list[str]:
        with psycopg.connect(self.layout.url(), autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return [] if row is None or row[0] else ["single"]


def _p99_ms(latencies: list[float]) -> float | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def rehearse(
    admin_url: str,
    log_dir: Path,
    say: Callable[[str], None] = lambda message: None,
    before_s: float = 3.0,
    side_by_side_s: float = 3.0,
    clients: int = 8,
) -> dict[str, Any]:
    """Run the release and its rollback under load on a migrated database (superuser URL `admin_url`)."""
    app_url = admin_url.replace("postgres@", "shieldx_app@", 1)
    tenant = f"upg-{uuid.uuid4().hex[:8]}"
    accounts, probe, api_key = seed_bank(admin_url, tenant)
    steps: dict[str, float] = {}
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as servers:

        def serve(name: str, env: dict[str, str] | None = None, wait_ready: bool = True) -> tuple[str, ExitStack]:
            own = ExitStack()
            base = own.enter_context(api_server(app_url, log_dir / f"api-{name}.log", env=env))
            servers.callback(own.close)  # stopped at the end in any case (a no-op once closed)
            if wait_ready:
                wait_until(lambda: ready(base), 30, f"the {name} API to be ready")
            return base, own

        old, old_proc = serve("old")
        work = Workload(old, accounts, probe, clients=clients, tenant=tenant, api_key=api_key, bases=[old])
        work.start()
        servers.callback(lambda: work.stop() if work._thread is not None and work._thread.is_alive() else None)
        time.sleep(before_s)
        # The new release's first pod starts before its migrations ran: live, not ready.
        steps["release_start"] = time.monotonic()
        new, new_proc = serve("new", env={"SHIELDX_ROOT": str(release_tree(log_dir / "release"))}, wait_ready=False)
        readiness_before = http_json(new + "/health/ready")
        say("migrating to the new release under load")
        steps["migrate_start"] = time.monotonic()
        applied = schema.migrate(admin_url, extra_migrations=[MIGRATIONS], extra_functions=[FUNCTIONS])
        steps["migrate_end"] = time.monotonic()
        wait_until(lambda: ready(new), 30, "the new API to be ready once its migrations ran")
        say("old and new API side by side")
        work.bases[:] = [old, new]
        time.sleep(side_by_side_s)
        new_call = _call_new_function(app_url, tenant, accounts[0])
        say("stopping the old API")
        work.bases[:] = [new]  # out of the endpoints first, then stopped (a pod's termination)
        time.sleep(0.5)
        old_proc.close()
        time.sleep(1.0)
        say("rolling back the API")
        back, _ = serve("rollback")
        work.bases[:] = [new, back]
        time.sleep(1.0)
        work.bases[:] = [back]
        time.sleep(0.5)
        new_proc.close()
        say("rolling back the schema under load")
        steps["rollback_start"] = time.monotonic()
        rolled = schema.rollback(admin_url, count=len(applied), extra_migrations=[MIGRATIONS])
        steps["rollback_end"] = time.monotonic()
        time.sleep(1.5)
        work.stop()
    result = verify(SingleNode(admin_url), work, tenant)
    t0, t1 = steps["release_start"], steps["rollback_end"]
    latencies = [
        (op.sent_at, op.acked_at - op.sent_at)
        for op in work.ops
        if op.status == "acked" and op.sent_at is not None and op.acked_at is not None
    ]
    result.update(
        {
            "applied": applied,
            "new_readiness_before_migrate": readiness_before,
            "rolled_back": rolled,
            "new_function": new_call,
            "retries": work.retries,
            "unexpected": work.unexpected,
            "failed_requests": len(work.unexpected),
            "p99_ms_before": _p99_ms([d for t, d in latencies if t < t0]),
            "p99_ms_during": _p99_ms([d for t, d in latencies if t0 <= t <= t1]),
            "migrate_s": steps["migrate_end"] - steps["migrate_start"],
            "rollback_s": steps["rollback_end"] - steps["rollback_start"],
            "acked_during": sum(1 for t, _ in latencies if t0 <= t <= t1),
        }
    )
    return result


def release_tree(base: Path) -> Path:
    """The new release's files as its API process sees them (SHIELDX_ROOT): db/migrations holds the
    current migrations and the release's own; db/functions is the current one."""
    migrations = base / "db" / "migrations"
    if base.exists():
        shutil.rmtree(base)
    migrations.mkdir(parents=True)
    for folder in (schema.MIGRATIONS_DIR, MIGRATIONS):
        for path in folder.iterdir():
            (migrations / path.name).symlink_to(path)
    (base / "db" / "functions").symlink_to(schema.FUNCTIONS_DIR)
    return base


def _call_new_function(app_url: str, tenant: str, account: int) -> dict[str, Any]:
    """What the new release's code calls: the new overload, as the application role."""
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("SET ROLE shieldx_app")
        row = conn.execute(
            "SELECT account_id, balance, upgrade_note FROM credits.get_account(%s, %s, true)", (tenant, account)
        ).fetchone()
        assert row is not None
        return {"account_id": row[0], "balance": row[1], "upgrade_note": row[2]}
