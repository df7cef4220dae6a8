"""Rolling restart of a Patroni cluster through Patroni's REST API, and its rehearsal under load.

The order Patroni recommends for a configuration change that needs a restart, or
a minor PostgreSQL upgrade (new binaries installed on every node first):

1. each replica, the asynchronous ones before the synchronous standby:
   `POST /restart` on the member, then wait until the cluster is whole again
   (a running leader, a synchronous standby, every replica streaming);
2. a switchover to the synchronous standby (`POST /switchover` on the leader):
   the only step during which writes stop, for about one switchover;
3. the old primary, now a replica: `POST /restart`, wait until whole.

In production the same steps are `patronictl restart <cluster> <member>` and
`patronictl switchover --candidate <sync standby>` (docs/operations/upgrades.md).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from .cluster import Cluster
from .processes import wait_until
from .sql import scalar
from .workload import Workload, seed_bank, verify

LEADER_ROLES = ("leader", "master", "primary")


def started_at(cluster: Cluster, name: str) -> float:
    """pg_postmaster_start_time() of a node, as epoch seconds."""
    with psycopg.connect(
        cluster.layout.url("postgres", port=cluster.layout.pg_port(name)), connect_timeout=3, autocommit=True
    ) as conn:
        return float(scalar(conn, "SELECT extract(epoch FROM pg_postmaster_start_time())"))


def restart_member(cluster: Cluster, name: str, timeout: float = 120.0) -> None:
    """POST /restart on one member (Patroni restarts its PostgreSQL and waits), then wait until the cluster is whole."""
    status, body = cluster.rest(name, "/restart", "POST", {}, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"Patroni refused to restart {name} ({status}): {body}")
    wait_until(cluster.healthy, timeout, f"the cluster to be whole after restarting {name}", 0.5)


def rolling_restart(cluster: Cluster, say: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Restart every member, replicas first, then switch over and restart the old primary.

    Returns the old and new leader, the order of the restarts and the switchover's duration."""
    if not cluster.healthy():
        raise RuntimeError("the cluster is not whole: a rolling restart would take down a needed member")
    members = cluster.members()
    leader = next(m["name"] for m in members if m.get("role") in LEADER_ROLES)
    replicas = sorted(
        (m for m in members if m["name"] != leader), key=lambda m: (m.get("role") == "sync_standby", m["name"])
    )
    order = []
    for member in replicas:
        say(f"restarting replica {member['name']}")
        restart_member(cluster, member["name"])
        order.append(member["name"])
    say("switching over to the synchronous standby")
    t0 = time.monotonic()
    new_leader = cluster.switchover()
    t1 = time.monotonic()
    wait_until(cluster.healthy, 120, "the old primary to follow as a standby", 0.5)
    say(f"restarting the old primary {leader}")
    restart_member(cluster, leader)
    order.append(leader)
    return {
        "old_leader": leader,
        "new_leader": new_leader,
        "order": order,
        "switchover_s": t1 - t0,
        "switchover_window": (t0, t1),
    }


def rehearse(
    cluster: Cluster, base: str, before_s: float = 3.0, after_s: float = 2.0, clients: int = 16
) -> dict[str, Any]:
    """A rolling restart while the workload runs through the API; returns figures and the verification."""
    tenant = f"bank-{uuid.uuid4().hex[:8]}"
    accounts, probe, api_key = seed_bank(cluster.layout.url(), tenant)
    timelines_before = cluster.timelines()
    started_before = {n: started_at(cluster, n) for n in cluster.layout.names}
    work = Workload(base, accounts, probe, clients=clients, seed=13, tenant=tenant, api_key=api_key)
    work.start()
    try:
        time.sleep(before_s)
        t0 = time.monotonic()
        done = rolling_restart(cluster)
        t1 = time.monotonic()
        time.sleep(after_s)
    finally:
        work.stop()
    result = verify(cluster, work, tenant)
    result.update(
        {
            **done,
            "restarted": sorted(n for n in cluster.layout.names if started_at(cluster, n) > started_before[n]),
            "timelines_before": timelines_before,
            "timelines_after": cluster.timelines(),
            "retries": work.retries,
            "unexpected": work.unexpected,
            "rolling_s": t1 - t0,
            "longest_write_gap_s": longest_gap(work, t0, t1),
            # The same while the replicas restart, before the switchover (with strict synchronous
            # replication commits wait while the synchronous standby restarts, until Patroni names another).
            "restarts_write_gap_s": longest_gap(work, t0, done["switchover_window"][0]),
            "ready_statuses": sorted({s for t, s in work.ready if t0 <= t <= t1}),
        }
    )
    return result


def longest_gap(work: Workload, t0: float, t1: float) -> float:
    """The longest time within [t0, t1] without a successful write probe (the workload probes every 50 ms)."""
    ends = sorted(end for start, end, ok in work.probes if ok and t0 <= end <= t1)
    marks = [t0, *ends, t1]
    return max(b - a for a, b in itertools.pairwise(marks))
