"""Disaster recovery: the restore drill on a private Patroni cluster (shieldx_local.drill).

A full pgBackRest backup, then consumes through HAProxy (pgbench, 4 clients)
for the run's length, then at once the drill: the latest backup restored to a
scratch node up to the end of the WAL archive, checked (credits.reconcile()
empty, audit.verify() ok), thrown away.

dr.restore_s       seconds from the start of `pgbackrest restore` until the
                   scratch node has finished recovery and passed both checks
dr.rpo_s           data a lost cluster would lose at the drill's moment: the
                   commit time of a row acknowledged on the primary just before
                   the restore minus the time of the newest commit the scratch
                   node has (see shieldx_local.drill). Nothing forces a WAL switch:
                   WAL is archived a 16 MB segment at a time (when it fills, or
                   after archive_timeout), so this is the age of the unarchived
                   tail under this write load
dr.rpo_bound_s     archive_timeout: the longest a commit waits to be archived
                   when writes are too sparse to fill a segment
dr.entries_not_in_archive  journal entries acknowledged on the primary but absent
                   from the scratch node (the consumes in WAL not yet archived)
"""

from __future__ import annotations

import psycopg

from shieldx_local.drill import restore_drill
from shieldx_local.private import private_cluster
from shieldx_local.sql import scalar

from .harness import Harness, seed_ledger


def run(h: Harness) -> dict[str, float]:
    with private_cluster("dr-bench", say=h.progress) as cluster:
        url = cluster.layout.url()
        h.record_cluster(cluster.layout.url("postgres"))
        h.progress("seeding the ledger")
        seed_ledger(url, 100)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT * FROM audit.checkpoint('manual')")
            archive_timeout = scalar(conn, "SELECT setting::float FROM pg_settings WHERE name = 'archive_timeout'")
        h.progress("full backup")
        cluster.pgbackrest("backup", "--type=full")
        h.progress("consumes through HAProxy after the backup")
        h.pgbench(url, "consume.sql", clients=4, defines={"naccounts": 100})
        with psycopg.connect(url, autocommit=True) as conn:
            acked_entries = scalar(conn, "SELECT count(*) FROM credits.entries")
        result = restore_drill(cluster, say=h.progress)
    if not result["ok"]:
        raise RuntimeError(f"restore drill failed: reconcile {result['reconcile'][:5]}, verify {result['verify']}")
    if result["rpo_s"] is None:
        raise RuntimeError("the scratch node has no commit to date")
    return {
        "dr.restore_s": result["restore_s"],
        "dr.rpo_s": result["rpo_s"],
        "dr.rpo_bound_s": archive_timeout,
        "dr.entries_not_in_archive": acked_entries - result["restored_counts"]["entries"],
    }
