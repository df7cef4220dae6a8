"""`shieldx backup`: take a pgBackRest backup of the primary and record it.

    shieldx backup run [--type full|diff|incr] [--stanza S] [--config FILE] [-o KEY=VALUE ...]

pg_cron cannot run a shell command, so a scheduler outside the database
(a Kubernetes CronJob, cron, a systemd timer) runs this verb on every node
or against the primary's service: on a standby (pg_is_in_recovery()) it says
so and exits 0 without backing up. On the primary it runs
`pgbackrest --stanza=S backup --type=T` (as the postgres OS user when started
as root) and records the attempt - start, end, type, outcome, pgBackRest's
backup label - with ops._record_backup, which feeds the metric
shieldx_backup_last_success_age_seconds. A failed backup is recorded too,
and the exit status is then 1.

The stanza and configuration file default to PGBACKREST_STANZA (else
"shieldx") and PGBACKREST_CONFIG (else pgBackRest's own default); any other
pgBackRest option can be given with -o (pg1-path=/data, say) or in the
environment as PGBACKREST_<OPTION>.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from .common import admin_url

OSUSER = "postgres"


def _as_postgres() -> dict[str, Any]:
    """Run pgBackRest as the postgres OS user (it must read the data directory) when started as root."""
    if os.geteuid() != 0:
        return {"env": dict(os.environ)}
    pw = pwd.getpwnam(OSUSER)
    env = {**os.environ, "HOME": pw.pw_dir, "USER": OSUSER, "LOGNAME": OSUSER}
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": env, "cwd": pw.pw_dir}


PG_OPTION = re.compile(r"^(--)?pg\d+-")


def pgbackrest_argv(command: str, stanza: str, config: str | None, options: tuple[str, ...], *extra: str) -> list[str]:
    argv = ["pgbackrest", f"--stanza={stanza}"]
    if config:
        argv.append(f"--config={config}")
    argv += [f"--{o.removeprefix('--')}" for o in options]
    return [*argv, *extra, command]


def latest_label(stanza: str, config: str | None, options: tuple[str, ...]) -> tuple[str, str] | None:
    """(label, type) of the newest backup in the stanza's repository, per `pgbackrest info`."""
    done = subprocess.run(
        # `info` reads only the repository: it refuses the pgN-* options a backup takes.
        pgbackrest_argv("info", stanza, config, tuple(o for o in options if not PG_OPTION.match(o)), "--output=json"),
        capture_output=True,
        text=True,
        timeout=120,
        **_as_postgres(),
    )
    if done.returncode != 0:
        return None
    stanzas = [s for s in json.loads(done.stdout) if s.get("name") == stanza]
    backups = stanzas[0].get("backup", []) if stanzas else []
    if not backups:
        return None
    newest = max(backups, key=lambda b: (b["timestamp"]["stop"], b["label"]))
    return newest["label"], newest["type"]


def run_backup(
    conninfo: str,
    kind: str = "full",
    stanza: str = "shieldx",
    config: str | None = None,
    options: tuple[str, ...] = (),
    timeout: float = 24 * 3600,
) -> dict[str, Any]:
    """Back up the primary and record the attempt; on a standby, do nothing. Returns what happened."""
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        where = conn.execute(
            "SELECT pg_is_in_recovery() AS standby, clock_timestamp() AS now, "
            "coalesce(host(inet_server_addr()), current_setting('unix_socket_directories')) || ':' "
            "|| current_setting('port') AS host"
        ).fetchone()
    assert where is not None
    if where["standby"]:
        return {"outcome": "skipped", "detail": "this server is a standby: backups run on the primary"}
    argv = pgbackrest_argv("backup", stanza, config, options, f"--type={kind}")
    try:
        if shutil.which("pgbackrest") is None:
            raise OSError("pgbackrest not found: install the Debian package pgbackrest")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **_as_postgres())
        ok, output = done.returncode == 0, (done.stdout + done.stderr).strip()
        if not ok:
            output = f"pgbackrest exited with {done.returncode}: {output}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, output = False, f"pgbackrest did not run: {exc}"
    label = None
    if ok:
        newest = latest_label(stanza, config, options)
        if newest is None or newest[1] != kind:
            ok, output = False, f"pgbackrest reported success but `pgbackrest info` shows no new {kind} backup"
        else:
            label = newest[0]
    outcome = "succeeded" if ok else "failed"
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT ops._record_backup(%s, %s, %s, clock_timestamp(), %s, %s, %s, %s) AS backup_id",
            (stanza, kind, where["now"], outcome, label, output[-4000:] or None, where["host"]),
        ).fetchone()
    assert row is not None
    return {"outcome": outcome, "label": label, "detail": output, "backup_id": row["backup_id"]}


@click.group(help="pgBackRest backups of the primary, recorded for the backup freshness metric.")
def cli() -> None:
    pass


@cli.command("run", help="Back up the primary with pgBackRest and record it (a standby skips, exit 0).")
@click.option("--type", "kind", type=click.Choice(["full", "diff", "incr"]), default="full", show_default=True)
@click.option("--url", default=None, help="Superuser URL (default: SHIELDX_ADMIN_URL or the local cluster).")
@click.option("--stanza", default=lambda: os.environ.get("PGBACKREST_STANZA", "shieldx"), show_default="shieldx")
@click.option("--config", default=lambda: os.environ.get("PGBACKREST_CONFIG"), help="pgbackrest.conf path.")
@click.option("-o", "--option", "options", multiple=True, help="Another pgBackRest option, KEY=VALUE (repeatable).")
def run(kind: str, url: str | None, stanza: str, config: str | None, options: tuple[str, ...]) -> None:
    done = run_backup(url or admin_url(), kind, stanza, config, options)
    if done["outcome"] == "skipped":
        click.echo(f"skipped: {done['detail']}")
        return
    if done["outcome"] == "succeeded":
        click.echo(f"{kind} backup {done['label']} of stanza {stanza} recorded (ops.backups #{done['backup_id']})")
        return
    click.echo(f"{kind} backup of stanza {stanza} failed, recorded (ops.backups #{done['backup_id']}):", err=True)
    click.echo(done["detail"], err=True)
    raise SystemExit(1)
