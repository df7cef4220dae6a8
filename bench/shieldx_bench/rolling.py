"""Rolling restart of the database under load (shieldx_local.rolling, as in deploy/tests/test_ha_failover.py).

rolling.lost_acked_ops      acknowledged operations missing from the ledger afterwards (must be 0)
rolling.longest_write_gap_s the longest time without a successful write through the API (a probe
                            writes every 50 ms) while the three nodes restart and switch over:
                            the unavailability, expected within one switchover
rolling.replica_restarts_write_gap_s  the same, while the replicas restart (before the switchover)
rolling.switchover_s        the switchover step (Patroni's POST /switchover until the candidate leads)
rolling.total_s             the whole rolling restart (three restarts, one switchover)
rolling.acked_ops           operations acknowledged during the run
rolling.indeterminate_retries  attempts retried with the same key

A private three-node Patroni cluster (own folder, free ports); 16 clients through the API.
"""

from __future__ import annotations

from shieldx_local.private import api_server, private_cluster, ready
from shieldx_local.processes import wait_until
from shieldx_local.rolling import rehearse

from .harness import Harness


def run(h: Harness) -> dict[str, float]:
    with private_cluster("rolling-bench", say=h.progress) as cluster:
        h.record_cluster(cluster.layout.url("postgres"))
        with api_server(cluster.layout.app_url(), cluster.layout.log_dir / "api.log") as base:
            wait_until(lambda: ready(base), 30, "API readiness")
            h.progress("workload, then the rolling restart")
            result = rehearse(cluster, base)
    if result["problems"]:
        raise RuntimeError(f"rolling restart checks failed: {result['problems'][:5]}")
    return {
        "rolling.lost_acked_ops": result["lost_acked_ops"],
        "rolling.longest_write_gap_s": result["longest_write_gap_s"],
        "rolling.replica_restarts_write_gap_s": result["restarts_write_gap_s"],
        "rolling.switchover_s": result["switchover_s"],
        "rolling.total_s": result["rolling_s"],
        "rolling.acked_ops": result["counts"].get("acked", 0),
        "rolling.indeterminate_retries": result["retries"],
    }
