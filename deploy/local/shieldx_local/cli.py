"""`python -m shieldx_local`: the developer harness's commands.

ha up|down|status|switchover|rolling-restart|backup|restore-drill
    a local three-node Patroni cluster (etcd, HAProxy, pgBackRest)
ha keys rotate PURPOSE|sync
    payment and audit key rotation on every node; every keyring following the database
observe up|down|status
    a local Prometheus, Alertmanager and postgres_exporter

Scheduling: `ha up` starts no scheduler. Backups and the restore drill are
meant to run on a schedule from the host's crontab (the Kubernetes manifests
schedule backups with a CronJob), for example:
    0 2 * * 0    python -m shieldx_local ha backup --type=full    # weekly full
    0 2 * * 1-6  python -m shieldx_local ha backup --type=diff    # daily differential
    30 3 * * 0   python -m shieldx_local ha restore-drill         # weekly drill, after the full
    */10 * * * * python -m shieldx_local ha keys sync               # keyrings follow the subject key epochs
(with PYTHONPATH=deploy/local and the project's virtualenv, as the Makefile runs it; a systemd timer
works as well: docs/operations/backups.md#scheduling). `ha backup` records each backup in ops.backups,
which the backup freshness metric and ShieldxBackupStale read.
"""

from __future__ import annotations

import json

import click

from . import observe
from .cluster import Cluster
from .layout import DBNAME, default_layout


@click.group(help="Local clusters for development and tests (not part of the shieldx service).")
def main() -> None:
    pass


@main.group(
    help="A local three-node Patroni cluster (etcd, HAProxy, pgBackRest) in the state directory's ha/.\n\n"
    "Nothing here runs on a schedule; run backups and the restore drill from the host's crontab, for example:\n\n"
    "\b\n"
    "0 2 * * 0    python -m shieldx_local ha backup --type=full   (weekly full)\n"
    "0 2 * * 1-6  python -m shieldx_local ha backup --type=diff   (daily differential)\n"
    "30 3 * * 0   python -m shieldx_local ha restore-drill        (weekly, after the full)"
)
def ha() -> None:
    pass


@ha.command(help="Start etcd, three Patroni nodes and HAProxy; create and migrate the shieldx database.")
@click.option("--no-migrate", is_flag=True, help="Do not run migrations.")
def up(no_migrate: bool) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    layout = default_layout()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()) as progress:
        task = progress.add_task("ha up")
        Cluster(layout, say=lambda m: progress.update(task, description=f"[ha] {m}")).up(migrate=not no_migrate)
    observe.write_patroni_targets([(name, layout.rest_port(name)) for name in layout.names])
    click.echo(f"writes: postgresql://postgres@127.0.0.1:{layout.writes_port}/{DBNAME}")
    click.echo(f"reads:  postgresql://postgres@127.0.0.1:{layout.reads_port}/{DBNAME}")
    click.echo(f"API:    DATABASE_URL='{layout.app_url()}' shieldx serve")
    click.echo(f"files:  {layout.base}")
    click.echo(f"HAProxy stats: http://127.0.0.1:{layout.stats_port}/")
    click.echo(
        "backups: not scheduled (ShieldxBackupStale fires until the first one): `python -m shieldx_local ha backup`,"
        " by hand or from cron (docs/operations/backups.md#scheduling)"
    )


@ha.command(help="Stop HAProxy, Patroni/PostgreSQL (standbys first) and etcd.")
@click.option("--purge", is_flag=True, help="Also delete the cluster's data (the layout's base directory).")
def down(purge: bool) -> None:
    Cluster(default_layout()).down(purge=purge)
    observe.write_patroni_targets([])
    click.echo("stopped" + (" and purged" if purge else ""))


@ha.command(help="Processes, Patroni members (role, state, timeline, lag) and endpoints.")
def status() -> None:
    from rich.console import Console
    from rich.table import Table

    cluster = Cluster(default_layout())
    console = Console()
    procs = Table(title="processes")
    procs.add_column("process")
    procs.add_column("pid", justify="right")
    for proc, pid in cluster.running().items():
        procs.add_row(proc, str(pid) if pid else "[red]stopped")
    console.print(procs)
    members = Table(title=f"Patroni cluster '{cluster.layout.scope}'")
    for col in ("member", "host", "role", "state", "timeline", "lag"):
        members.add_column(col)
    for m in cluster.members():
        members.add_row(
            m.get("name", ""),
            f"{m.get('host')}:{m.get('port')}",
            m.get("role", ""),
            m.get("state", ""),
            str(m.get("timeline", "")),
            str(m.get("lag", "")),
        )
    console.print(members)
    console.print(
        f"writes 127.0.0.1:{cluster.layout.writes_port}  reads 127.0.0.1:{cluster.layout.reads_port}  "
        f"stats http://127.0.0.1:{cluster.layout.stats_port}/"
    )


@ha.command(help="Planned switchover to CANDIDATE (default: the synchronous standby).")
@click.argument("candidate", required=False)
def switchover(candidate: str | None) -> None:
    click.echo(f"new leader: {Cluster(default_layout()).switchover(candidate)}")


@ha.command(
    "rolling-restart",
    help="Restart every node through Patroni's REST API: replicas first, then a switchover to the synchronous "
    "standby, then the old primary (a configuration change or a minor upgrade).",
)
def rolling_restart() -> None:
    from .rolling import rolling_restart as run

    done = run(Cluster(default_layout()), say=click.echo)
    click.echo(f"restarted {', '.join(done['order'])}; leader {done['old_leader']} -> {done['new_leader']}")


@ha.command(
    help="Take a pgBackRest backup of the current primary and record it in ops.backups (as `shieldx backup run`"
    " does), then list the repository. Nothing schedules it: the harness runs no scheduler and pg_cron cannot run"
    " a shell command; run it from the host's crontab or a systemd timer (see `python -m shieldx_local --help`)."
)
@click.option("--type", "kind", type=click.Choice(["full", "diff", "incr"]), default="full", show_default=True)
def backup(kind: str) -> None:
    cluster = Cluster(default_layout())
    done = cluster.backup(kind)
    if done["outcome"] != "succeeded":
        click.echo(f"{kind} backup failed, recorded (ops.backups #{done['backup_id']}):\n{done['detail']}", err=True)
        raise SystemExit(1)
    click.echo(f"{kind} backup {done['label']} recorded (ops.backups #{done['backup_id']})")
    click.echo(cluster.pgbackrest("info"))


@ha.command(
    "restore-drill",
    help="Restore the latest pgBackRest backup (one is taken if there is none) to a scratch node, up to the end of "
    "the WAL archive; check credits.reconcile() is empty and audit.verify() is ok; stop and delete the node. "
    "Prints the result as JSON (restore_s, rpo_s); exits 1 if a check failed.",
)
@click.option("--backup", is_flag=True, help="Take a new full backup first.")
@click.option(
    "--switch-wal",
    is_flag=True,
    help="Archive the current WAL segment first: the node then has every commit made before the drill.",
)
def restore_drill(backup: bool, switch_wal: bool) -> None:
    from .drill import restore_drill as drill

    result = drill(
        Cluster(default_layout()),
        backup=backup,
        switch_wal=switch_wal,
        say=lambda m: click.echo(f"[drill] {m}", err=True),
    )
    click.echo(json.dumps(result, indent=2, default=str))
    if not result["ok"]:
        raise SystemExit(1)


@ha.group(
    help="Keys on every node. Payment and audit keys are made outside the database and installed on every node "
    "before they become current; subject master keys ratchet forward on each node (docs/operations/ha.md#keys)."
)
def keys() -> None:
    pass


@keys.command(
    "rotate",
    help="Make a new PURPOSE key (payment or audit) with deploy/local/keyring.sh, install it on every node "
    "(postgres-owned, 700/600), activate it through HAProxy's write port (vault.rotate_key(purpose, key_id)) and "
    "name it in every copy's CURRENT. Existing values move with the shieldx-vault-reencrypt job.",
)
@click.argument("purpose", type=click.Choice(["payment", "audit"]))
def keys_rotate(purpose: str) -> None:
    from .keys import rotate

    done = rotate(Cluster(default_layout()), purpose)
    click.echo(f"{purpose} key {done['key_id']} is current on every node (was {done['previous_key_id']})")


@keys.command(
    "sync",
    help="Every keyring follows the database: each running node ratchets its subject master keys "
    "(privacy.ratchet_local_keys()), files of keys recorded retired and of closed epochs are removed from every "
    "node and from the cluster's keyring. An erasure is final on a node once this (or Patroni's on_start / "
    "on_role_change callback) ran there. Run it from cron every 10 minutes, like the epoch job.",
)
def keys_sync() -> None:
    from .keys import sync

    click.echo(json.dumps(sync(Cluster(default_layout())), indent=2))
