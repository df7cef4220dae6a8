"""`shieldx prepared`: report and reap orphaned native prepared transactions.

PostgreSQL's PREPARE TRANSACTION (psycopg's tpc_* API) leaves a transaction
that survives its client: if the coordinator disappears, the transaction keeps
its row locks until someone issues COMMIT/ROLLBACK PREPARED. That statement
cannot run inside a function or a transaction block (so not from pg_cron's
SQL jobs either), hence this verb: the database decides which prepared
transactions are overdue (credits.prepared_transactions, older than
shieldx.prepared_max_age) and records what happened (credits.prepared_reaper_log);
this process issues ROLLBACK PREPARED on a plain autocommit session, as a
superuser (or the role that prepared them). Schedule it like any cron job:
`shieldx prepared reap` every minute.
"""

from __future__ import annotations

from typing import Any

import click
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from .common import admin_url


def reap(conninfo: str, max_age: str | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
    """Roll back this database's prepared transactions older than max_age; returns what was done."""
    done: list[dict[str, Any]] = []
    with psycopg.connect(conninfo, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT credits.report_prepared(%s::interval)", (max_age,))
        overdue = conn.execute(
            "SELECT gid, owner, prepared_at, age FROM credits.prepared_transactions(%s::interval) WHERE overdue",
            (max_age,),
        ).fetchall()
        for tx in overdue:
            if dry_run:
                done.append({**tx, "action": "would roll back", "detail": None})
                continue
            try:
                conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(tx["gid"])))
                action, detail = "rolled_back", f"older than {max_age or 'shieldx.prepared_max_age'}"
            except psycopg.errors.UndefinedObject:  # its owner finished it meanwhile
                action, detail = "gone", "finished by its owner before the reaper"
            except psycopg.Error as exc:
                action, detail = "failed", f"{exc.sqlstate}: {exc}"
            conn.execute(
                "SELECT credits._record_prepared_action(%s, %s, %s, %s, %s)",
                (tx["gid"], tx["owner"], tx["prepared_at"], action, detail),
            )
            done.append({**tx, "action": action, "detail": detail})
    return done


@click.group(help="Native prepared transactions (PREPARE TRANSACTION): list and reap orphans.")
def cli() -> None:
    pass


@cli.command("list", help="List this database's prepared transactions.")
@click.option("--url", default=None, help="Superuser URL (default: SHIELDX_ADMIN_URL or the local cluster).")
@click.option("--max-age", default=None, help="Overdue past this age (default: shieldx.prepared_max_age, 10 min).")
def list_(url: str | None, max_age: str | None) -> None:
    with psycopg.connect(url or admin_url(), row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM credits.prepared_transactions(%s::interval)", (max_age,)).fetchall()
    for r in rows:
        flag = "\tOVERDUE" if r["overdue"] else ""
        click.echo(f"{r['gid']}\t{r['owner']}\tprepared {r['prepared_at']}\tage {r['age']}{flag}")
    click.echo(f"{len(rows)} prepared transaction(s)")


@cli.command("reap", help="Roll back overdue prepared transactions and record it.")
@click.option("--url", default=None, help="Superuser URL (default: SHIELDX_ADMIN_URL or the local cluster).")
@click.option("--max-age", default=None, help="Overdue past this age (default: shieldx.prepared_max_age, 10 min).")
@click.option("--dry-run", is_flag=True, help="Only say what would be rolled back.")
def reap_cmd(url: str | None, max_age: str | None, dry_run: bool) -> None:
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        progress.add_task("reaping prepared transactions", total=None)
        done = reap(url or admin_url(), max_age, dry_run)
    for r in done:
        click.echo(f"{r['action']}\t{r['gid']}\t{r['owner']}\tage {r['age']}")
    click.echo(f"{len(done)} overdue prepared transaction(s)")
