"""`shieldx backup run` for real: a throwaway primary with WAL archiving to a
pgBackRest repository in a temporary directory, and a streaming standby of it.
The primary is backed up and the attempt recorded (the freshness metric
follows); a failed backup is recorded as failed; the standby skips."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

from shieldx import schema
from shieldx.cli import main

PGBIN = Path("/usr/lib/postgresql/15/bin")
STANZA = "drill"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*argv: str) -> None:
    kwargs = {}
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "cwd": pw.pw_dir}
    subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=300, **kwargs)


class Node:
    def __init__(self, base: Path, name: str) -> None:
        self.data = base / name
        self.port = _free_port()
        self.sock = base

    def url(self, dbname: str = "shieldx") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        _as_postgres(str(PGBIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _as_postgres(str(PGBIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture(scope="module")
def drill() -> Iterator[dict]:
    for binary in ("pgbackrest", str(PGBIN / "initdb")):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} not found: install the Debian packages pgbackrest and postgresql-15")
    base = Path(tempfile.mkdtemp(prefix="shieldx-backup-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    conf = base / "pgbackrest.conf"
    primary, standby = Node(base, "primary"), Node(base, "standby")
    conf.write_text(
        f"[global]\nrepo1-path={base}/repo\nlog-path={base}/log\nlock-path={base}/lock\nspool-path={base}/spool\n"
        f"start-fast=y\nlog-level-console=warn\nlog-level-file=off\nrepo1-retention-full=2\n\n"
        f"[{STANZA}]\npg1-path={primary.data}\npg1-port={primary.port}\npg1-socket-path={base}\npg1-user=postgres\n"
    )
    conf.chmod(0o644)
    try:
        _as_postgres(str(PGBIN / "initdb"), "-D", str(primary.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with (primary.data / "postgresql.conf").open("a") as f:
            f.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {primary.port}\nunix_socket_directories = '{base}'\n"
                f"wal_level = replica\narchive_mode = on\nmax_prepared_transactions = 8\n"
                f"archive_command = 'pgbackrest --config={conf} --stanza={STANZA} archive-push %p'\n"
            )
        primary.start()
        with psycopg.connect(primary.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shieldx")
        schema.migrate(primary.url())
        _as_postgres("pgbackrest", f"--config={conf}", f"--stanza={STANZA}", "stanza-create")
        _as_postgres(
            str(PGBIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(standby.data), "-R", "-X", "stream",
        )  # fmt: skip
        with (standby.data / "postgresql.conf").open("a") as f:
            f.write(f"\nport = {standby.port}\narchive_mode = off\n")
        standby.start()
        yield {"conf": str(conf), "primary": primary, "standby": standby}
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(base, ignore_errors=True)


def _backup(url: str, conf: str, *args: str):
    return CliRunner().invoke(main, ["backup", "run", "--url", url, "--config", conf, *args], catch_exceptions=False)


@pytest.mark.slow
def test_backup_run_on_the_primary_records_it_and_the_metric_follows(drill):
    primary = drill["primary"]
    with psycopg.connect(primary.url(), autocommit=True, row_factory=dict_row) as conn:
        assert conn.execute("SELECT * FROM monitoring.backup()").fetchone()["last_success_age_seconds"] == float("inf")
    done = _backup(primary.url(), drill["conf"], "--stanza", STANZA, "--type", "full")
    assert done.exit_code == 0, done.output
    # pgN-* options as -o (the HA nodes' way): the backup takes them; the `info` it runs after must not.
    diff = _backup(primary.url(), drill["conf"], "--stanza", STANZA, "--type", "diff", "-o", f"pg1-path={primary.data}")
    assert diff.exit_code == 0, diff.output
    info = subprocess.run(
        ["pgbackrest", f"--config={drill['conf']}", f"--stanza={STANZA}", "info", "--output=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    labels = [(b["label"], b["type"]) for b in json.loads(info.stdout)[0]["backup"]]
    with psycopg.connect(primary.url(), autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT label, kind, outcome FROM ops.backups ORDER BY backup_id").fetchall()
        fact = conn.execute("SELECT * FROM monitoring.backup()").fetchone()
        last = conn.execute("SELECT extract(epoch FROM max(finished_at)) AS t FROM ops.backups").fetchone()["t"]
    assert [(r["label"], r["kind"]) for r in rows] == labels  # what pgBackRest has, in order
    assert {r["outcome"] for r in rows} == {"succeeded"}
    assert fact["last_success_timestamp_seconds"] == float(last)
    assert 0 < fact["last_success_age_seconds"] < float("inf")


@pytest.mark.slow
def test_a_failed_backup_is_recorded_and_exits_1(drill):
    primary = drill["primary"]
    done = _backup(primary.url(), drill["conf"], "--stanza", "missing-stanza")
    assert done.exit_code == 1
    with psycopg.connect(primary.url(), autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute("SELECT * FROM ops.backups WHERE stanza = 'missing-stanza'").fetchone()
    assert row["outcome"] == "failed" and row["label"] is None and "exited with" in row["detail"]


@pytest.mark.slow
def test_a_standby_skips_and_records_nothing(drill):
    primary, standby = drill["primary"], drill["standby"]
    with psycopg.connect(primary.url(), row_factory=dict_row) as conn:
        before = conn.execute("SELECT count(*) AS n FROM ops.backups").fetchone()["n"]
    done = _backup(standby.url(), drill["conf"], "--stanza", STANZA)
    assert done.exit_code == 0
    assert done.output.startswith("skipped: this server is a standby")
    with psycopg.connect(primary.url(), row_factory=dict_row) as conn:
        assert conn.execute("SELECT count(*) AS n FROM ops.backups").fetchone()["n"] == before
