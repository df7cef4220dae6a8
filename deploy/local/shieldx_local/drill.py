"""Restore drill: the latest pgBackRest backup, restored to a scratch node, checked, then thrown away.

The scratch node is a separate data directory and port, never part of the
Patroni cluster: `pgbackrest restore` of the latest backup with recovery to the
end of the WAL archive (the latest timeline), archiving off, pg_cron not loaded
(no job runs on a copy), its own copy of the cluster's keyring (without the keys
`audit.verify()` cannot check a checkpoint's signature and card data cannot be
read). It passes when `credits.reconcile()` is empty and `audit.verify()` is ok.

What it measures (`make bench`, suite dr; the tests assert correctness only):

restore_s  from the start of `pgbackrest restore` until the scratch node has
           finished recovery and passed both checks.
rpo_s      the data a lost cluster would lose at the drill's moment: the commit
           time of a row written on the primary just before the restore (an
           acknowledged commit) minus the time of the newest commit the scratch
           node has: the latest of the last transaction it replayed from the
           archive (pg_last_xact_replay_timestamp()), its newest probe row and its
           newest journal entry (created_at, the entry's transaction start: a
           few milliseconds early at most, so rpo_s errs on the high side).
           WAL reaches the archive a segment (16 MB) at a time, when a segment
           fills or after `archive_timeout` (300 s); nothing forces a switch here,
           so this is the window of a real loss at that moment, bounded by
           archive_timeout when writes are sparse. (A lost primary alone loses
           nothing: the synchronous standby has every acknowledged commit.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from .cluster import KEYRING_SH, Cluster
from .layout import DBNAME
from .processes import PGBIN, as_postgres, chown, free_port, pg_env, wait_until
from .sql import one, scalar

PROBE_TABLE = "shieldx_dr_probe"  # in the `postgres` database: the product's schema is left alone


def backups(cluster: Cluster) -> list[dict[str, Any]]:
    """The repository's backups, oldest first (`pgbackrest info --output=json`)."""
    info = json.loads(cluster.pgbackrest("info", "--output=json"))
    return list(info[0].get("backup", [])) if info else []


def write_probe(cluster: Cluster) -> tuple[int, datetime]:
    """Commit one timestamped row on the primary; its id and commit time (once this returns, acknowledged)."""
    with psycopg.connect(cluster.layout.url("postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL)")
        probe_id = scalar(conn, f"INSERT INTO {PROBE_TABLE} (at) VALUES (clock_timestamp()) RETURNING id")
        # The commit has returned (autocommit): it is acknowledged as of now.
        acked_at = scalar(conn, "SELECT clock_timestamp()")
    return probe_id, acked_at


class ScratchNode:
    """A restored copy of the cluster on its own data directory and port (start, connect, stop, delete)."""

    def __init__(self, cluster: Cluster, name: str = "restore-drill") -> None:
        self.cluster = cluster
        self.dir = cluster.layout.base / f"{name}-{os.getpid()}"
        self.data = self.dir / "data"
        self.keys = self.dir / "keys"
        self.log = cluster.layout.log_dir / f"{name}.log"
        self.port = free_port()

    def url(self, dbname: str = DBNAME) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def restore(self, *args: str, keys: bool = True) -> None:
        """Restore the repository's latest backup (pgbackrest options `args`) and give the node the keys
        (with keys=False its shieldx.key_dir names an empty folder: a host without the keyring)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.dir.chmod(0o700)
        chown(self.dir)
        self.cluster.restore(self.data, *args)
        # The keys travel apart from the backup (it never contains them): the same keyring as every node.
        if keys:
            subprocess.run(
                [str(KEYRING_SH), "copy", str(self.cluster.layout.keyring), str(self.keys)],
                check=True,
                capture_output=True,
                text=True,
            )
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            conf.write(f"\n# restore drill: this node's keyring\nshieldx.key_dir = '{self.keys}'\n")

    def start(self) -> None:
        opts = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1"
            f" -c unix_socket_directories={self.cluster.layout.run_dir}"
            " -c archive_mode=off -c shared_preload_libraries='' -c synchronous_standby_names=''"
            f" -c hba_file={self.data}/pg_hba.conf -c ident_file={self.data}/pg_ident.conf"
        )
        subprocess.run(
            [str(PGBIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "300", "start"],
            check=True,
            env=pg_env(),
            capture_output=True,
            **as_postgres(),
        )

        def promoted() -> bool:
            with psycopg.connect(self.url("postgres"), connect_timeout=2) as conn:
                return bool(scalar(conn, "SELECT NOT pg_is_in_recovery()"))

        wait_until(promoted, 300, "the restored node to finish recovery", 0.1)

    def stop_and_delete(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                env=pg_env(),
                capture_output=True,
                **as_postgres(),
            )
        shutil.rmtree(self.dir, ignore_errors=True)


def restore_drill(
    cluster: Cluster, backup: bool = False, switch_wal: bool = False, say: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Restore the latest backup (taking one first if there is none, or if `backup`) to a scratch node and check it.

    With `switch_wal`, the WAL segment holding the probe row is switched and archived
    before the restore (`pgbackrest check`), so the node must have that row; rpo_s then
    measures only that forced case. Returns ok (both checks passed), the backup's label,
    the checks' results, restore_s, rpo_s, whether the probe row was restored, and the
    restored node's counts of journal entries and checkpoints.
    """
    say = say or (lambda message: None)
    if backup or not backups(cluster):
        say("taking a full backup")
        cluster.pgbackrest("backup", "--type=full")
    label = backups(cluster)[-1]["label"]
    probe_id, acked_at = write_probe(cluster)
    if switch_wal:
        cluster.pgbackrest("check")  # switches WAL and waits until the segment is archived
    node = ScratchNode(cluster)
    started = time.monotonic()
    try:
        say(f"restoring backup {label} to a scratch node (port {node.port}) up to the end of the archive")
        node.restore()
        node.start()
        say("checking credits.reconcile() and audit.verify() on the scratch node")
        with psycopg.connect(node.url(), autocommit=True, connect_timeout=5) as conn:
            mismatches = conn.execute("SELECT * FROM credits.reconcile()").fetchall()
            verify_cols = ("ok", "entries_checked", "streams_checked", "broken_streams", "stream", "seq", "problem")
            newest_entry = scalar(conn, "SELECT max(created_at) FROM credits.entries")
            counts = {
                "entries": scalar(conn, "SELECT count(*) FROM credits.entries"),
                "checkpoints": scalar(conn, "SELECT count(*) FROM audit.checkpoints"),
            }
            verify = dict(
                zip(
                    verify_cols,
                    one(conn, f"SELECT {', '.join(verify_cols)} FROM audit.verify()"),
                    strict=True,
                )
            )
        restore_s = time.monotonic() - started
        with psycopg.connect(node.url("postgres"), autocommit=True, connect_timeout=5) as conn:
            replayed_at = scalar(conn, "SELECT pg_last_xact_replay_timestamp()")
            has_table = scalar(conn, f"SELECT to_regclass('{PROBE_TABLE}') IS NOT NULL")
            has_probe = bool(
                has_table and scalar(conn, f"SELECT count(*) FROM {PROBE_TABLE} WHERE id = %s", (probe_id,))
            )
            newest_probe = scalar(conn, f"SELECT max(at) FROM {PROBE_TABLE}") if has_table else None
        newest = max((t for t in (replayed_at, newest_probe, newest_entry) if t is not None), default=None)
    finally:
        say("stopping and deleting the scratch node")
        node.stop_and_delete()
    return {
        "ok": not mismatches and verify["ok"] is True,
        "backup": label,
        "reconcile": [list(map(str, r)) for r in mismatches],
        "verify": verify,
        "restore_s": restore_s,
        "rpo_s": max(0.0, (acked_at - newest).total_seconds()) if newest else None,
        "last_acked_commit": acked_at.isoformat(),
        "newest_restored_commit": newest.isoformat() if newest else None,
        "last_replayed_commit": replayed_at.isoformat() if replayed_at else None,
        "probe_restored": has_probe,
        "restored_counts": counts,
    }


def scratch_dirs(cluster: Cluster) -> list[Path]:
    """Scratch nodes left behind (there should be none after a drill)."""
    return sorted(cluster.layout.base.glob("restore-drill-*"))
