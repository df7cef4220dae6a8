"""A release and its rollback under load (shieldx_local.upgrade, the same rehearsal as deploy/tests/test_upgrade.py).

upgrade.failed_requests   requests answered with an error other than a retryable 503/429 (must be 0)
upgrade.retried_requests  attempts that got a retryable answer or none, retried with the same key
upgrade.p99_ms_before     p99 latency (ms) of the last attempt of each acknowledged operation sent
                          before the migration
upgrade.p99_ms_during     the same, from the start of the migration to the end of the schema rollback
                          (migrate, two API processes side by side, stops and starts, rollback)
upgrade.migrate_s         the migrate (expand migrations + changed function files) under load
upgrade.rollback_s        the schema rollback under load

8 clients through the API on the local cluster, 2 uvicorn workers per API process.
"""

from __future__ import annotations

from shieldx_local.state import ROOT
from shieldx_local.upgrade import rehearse

from .harness import Harness


def run(h: Harness) -> dict[str, float]:
    h.progress("fresh database")
    url = h.fresh_database("upgrade")
    try:
        result = rehearse(url, ROOT / ".local" / "bench-upgrade", say=h.progress, before_s=h.seconds / 2)
    finally:
        h.drop_database(url)
    if result["problems"]:
        raise RuntimeError(f"upgrade checks failed: {result['problems'][:5]}")
    return {
        "upgrade.failed_requests": result["failed_requests"],
        "upgrade.retried_requests": result["retries"],
        "upgrade.p99_ms_before": result["p99_ms_before"],
        "upgrade.p99_ms_during": result["p99_ms_during"],
        "upgrade.migrate_s": result["migrate_s"],
        "upgrade.rollback_s": result["rollback_s"],
    }
