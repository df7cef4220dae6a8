"""High availability: a bank-style workload through the API while the primary dies.

ha.failover_unavailable_s  seconds from kill -9 of the primary (PostgreSQL and
                           its Patroni) until a write through the API succeeds
                           again (a probe writes every 50 ms; only probes sent
                           after the kill count)
ha.lost_acked_ops          acknowledged operations missing from the ledger
                           afterwards (must be 0)
ha.acked_ops               operations acknowledged during the run
ha.indeterminate_retries   attempts that timed out, lost their connection or
                           got 503, and were retried with the same key

The cluster is a private one (own folder and free ports), so the cluster of
`make ha-up` is left alone. The workload and its checks are the harness's
(shieldx_local.workload), the same the failover tests in deploy/tests use.
"""

from __future__ import annotations

from shieldx_local.private import api_server, private_cluster, ready
from shieldx_local.processes import wait_until
from shieldx_local.workload import failover

from .harness import Harness


def run(h: Harness) -> dict[str, float]:
    with private_cluster("ha-bench", say=h.progress) as cluster:
        h.record_cluster(cluster.layout.url("postgres"))
        h.progress("API on the cluster")
        with api_server(cluster.layout.app_url(), cluster.layout.log_dir / "api.log") as base:
            wait_until(lambda: ready(base), 30, "API readiness")
            h.progress("workload, then kill -9 of the primary")
            result = failover(cluster, base)
    if result["problems"]:
        raise RuntimeError(f"failover checks failed: {result['problems'][:5]}")
    if result["unavailable_s"] is None:
        raise RuntimeError("no write succeeded through the API after the kill")
    return {
        "ha.failover_unavailable_s": result["unavailable_s"],
        "ha.lost_acked_ops": result["lost_acked_ops"],
        "ha.acked_ops": result["counts"].get("acked", 0),
        "ha.indeterminate_retries": result["retries"],
    }
