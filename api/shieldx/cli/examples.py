"""`shieldx examples`: run the DBA examples of db/examples in scratch databases.

    shieldx examples list
    shieldx examples run [NAME...] [--url postgresql://postgres@127.0.0.1:55432/postgres]

Each example is a psql script (NAME.sql) beside the output it prints (NAME.out).
`run` creates a database shieldx_examples_<random>, migrates it, and runs each
chosen example in its own copy of it (CREATE DATABASE ... TEMPLATE), as a
superuser at psql would; it compares what psql printed with the .out file,
prints a diff when they differ, and drops every database it created. The
examples change what they touch (20_audit tampers with the audit log), so they
never run in the `shieldx` database. Exit status: 0 every example printed its
.out file, 1 one or more differ, 2 usage errors.
"""

from __future__ import annotations

import difflib
import os
import secrets
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click

from .. import schema
from ..paths import DB_DIR
from .common import admin_url

EXAMPLES_DIR = DB_DIR / "examples"
PGBIN = Path(os.environ.get("SHIELDX_PGBIN", "/usr/lib/postgresql/15/bin"))
PREFIX = "shieldx_examples_"


def examples() -> dict[str, Path]:
    """Every example by name (its file name without .sql), in order."""
    return {p.stem: p for p in sorted(EXAMPLES_DIR.glob("*.sql"))}


def with_database(url: str, dbname: str) -> str:
    """The same server URL, naming another database."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise click.BadParameter(f"not a postgresql:// URL: {url}", param_hint="'--url'")
    return urlunsplit(parts._replace(path=f"/{dbname}"))


def run_script(url: str, script: Path) -> str:
    """What psql prints for the script, less the LOCATION lines (they name lines of PostgreSQL's C source)."""
    result = subprocess.run(
        [str(PGBIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=0", "-P", "pager=off", "-d", url, "-f", script.name],
        cwd=script.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
    )
    return "".join(line for line in result.stdout.splitlines(keepends=True) if not line.startswith("LOCATION:"))


def diff(expected: str, got: str, name: str) -> str:
    return "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True), f"{name}.out", "psql"))


class Scratch:
    """A migrated template database and its copies, all dropped on exit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.template = PREFIX + secrets.token_hex(4)
        self.created: list[str] = []

    def _admin(self, statement: str, *names: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(with_database(self.url, "postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL(statement).format(*(sql.Identifier(n) for n in names)))

    def _disconnect(self, name: str) -> None:
        import psycopg

        with psycopg.connect(with_database(self.url, "postgres"), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    def _create(self, name: str, template: str | None = None) -> str:
        assert name.startswith(PREFIX)  # never the shieldx database
        if template is None:
            self._admin("CREATE DATABASE {}", name)
        else:
            self._admin("CREATE DATABASE {} TEMPLATE {}", name, template)
        self.created.append(name)
        return with_database(self.url, name)

    def __enter__(self) -> Scratch:
        try:
            schema.migrate(self._create(self.template))
            self._disconnect(self.template)  # a template must have no session (the migration's may linger)
        except BaseException:
            self.__exit__()
            raise
        return self

    def copy(self, suffix: str) -> str:
        return self._create(f"{self.template}_{suffix}", self.template)

    def __exit__(self, *exc: object) -> None:
        for name in reversed(self.created):
            self._admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)
        self.created.clear()


@click.group(help="The DBA examples of db/examples, run in scratch databases (never in `shieldx`).")
def cli() -> None:
    pass


@cli.command("list", help="List the examples.")
def list_() -> None:
    for name in examples():
        click.echo(name)


@cli.command("run", help="Run examples (default: all) in scratch databases; show a diff where one differs.")
@click.argument("names", nargs=-1)
@click.option(
    "--url",
    default=None,
    help="Superuser URL of the server (default: SHIELDX_ADMIN_URL or the local cluster); its database is not used.",
)
def run(names: tuple[str, ...], url: str | None) -> None:
    known = examples()
    chosen = [n.removesuffix(".sql") for n in names] or list(known)
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise click.UsageError(f"no such example: {', '.join(unknown)} (see `shieldx examples list`)")
    failed = []
    with Scratch(url or admin_url()) as scratch:
        for i, name in enumerate(chosen):
            got = run_script(scratch.copy(f"{i:02d}"), known[name])
            expected = known[name].with_suffix(".out").read_text()
            if got == expected:
                click.echo(f"ok    {name}")
            else:
                failed.append(name)
                click.echo(f"DIFF  {name}")
                click.echo(diff(expected, got, name), nl=False)
    click.echo(f"{len(chosen) - len(failed)} of {len(chosen)} example(s) printed their .out file")
    if failed:
        raise SystemExit(1)
