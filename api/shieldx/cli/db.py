"""`shieldx db`: the local cluster and migrations."""

from __future__ import annotations

import click

from .. import schema
from .common import admin_url, cluster


@click.group(help="Local PostgreSQL cluster and schema migrations.")
def cli() -> None:
    pass


@cli.command(help="Start the project's local PostgreSQL 15 cluster (creates it on first use).")
def up() -> None:
    cluster("start")


@cli.command(help="Stop the local cluster.")
def down() -> None:
    cluster("stop")


@cli.command(help="Apply pending migrations, then the changed db/functions files (safe while the API serves).")
@click.option("--url", default=None, help="Superuser URL (default: SHIELDX_ADMIN_URL or the local cluster).")
@click.option(
    "--lock-timeout", default=schema.LOCK_TIMEOUT, show_default=True, help="Longest wait of a statement for a lock."
)
@click.option(
    "--attempts", default=schema.ATTEMPTS, show_default=True, help="Tries of a migration that hits lock timeouts."
)
@click.option("--all-functions", is_flag=True, help="Apply every function file, changed or not.")
def migrate(url: str | None, lock_timeout: str, attempts: int, all_functions: bool) -> None:
    applied = schema.migrate(
        url or admin_url(), lock_timeout=lock_timeout, attempts=attempts, force_functions=all_functions
    )
    click.echo(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}; functions reloaded")


@cli.command(help="Roll back the newest COUNT migrations.")
@click.argument("count", type=int, default=1)
@click.option("--url", default=None)
@click.option("--lock-timeout", default=schema.LOCK_TIMEOUT, show_default=True)
@click.option("--attempts", default=schema.ATTEMPTS, show_default=True)
def rollback(count: int, url: str | None, lock_timeout: str, attempts: int) -> None:
    for mid in schema.rollback(url or admin_url(), count, lock_timeout=lock_timeout, attempts=attempts):
        click.echo(f"rolled back {mid}")


@cli.command(help="Show applied and pending migrations.")
@click.option("--url", default=None)
def status(url: str | None) -> None:
    import psycopg

    with psycopg.connect(url or admin_url()) as conn:
        row = conn.execute("SELECT * FROM ops.health()").fetchone()
    assert row is not None
    applied = set(row[2])
    for mid in schema.migration_ids():
        click.echo(f"{'applied' if mid in applied else 'PENDING'}  {mid}")
    click.echo(f"primary: {row[0]}  server: {row[1]}")
