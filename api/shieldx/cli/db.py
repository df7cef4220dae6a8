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


@cli.command(help="Apply pending migrations, then re-apply every db/functions file.")
@click.option("--url", default=None, help="Superuser URL (default: SHIELDX_ADMIN_URL or the local cluster).")
def migrate(url: str | None) -> None:
    applied = schema.migrate(url or admin_url())
    click.echo(f"applied {len(applied)} migration(s){': ' + ', '.join(applied) if applied else ''}; functions reloaded")


@cli.command(help="Roll back the newest COUNT migrations.")
@click.argument("count", type=int, default=1)
@click.option("--url", default=None)
def rollback(count: int, url: str | None) -> None:
    for mid in schema.rollback(url or admin_url(), count):
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
