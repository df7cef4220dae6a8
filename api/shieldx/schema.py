"""Migrations (yoyo) and the function files re-applied after every migrate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .paths import FUNCTIONS_DIR, MIGRATIONS_DIR

PRIVILEGES = "privileges.sql"  # default ownership and grants, once every function exists
GRANTS = "grants.sql"  # a schema's own exceptions to the defaults, applied after them


def function_files(root: Path = FUNCTIONS_DIR) -> list[Path]:
    """Every function file in a stable order; privileges.sql, then each grants.sql, last."""
    files = sorted(p for p in root.rglob("*.sql") if p.name not in (PRIVILEGES, GRANTS))
    defaults = [root / PRIVILEGES] if (root / PRIVILEGES).exists() else []
    return files + defaults + sorted(root.rglob(GRANTS))


def apply_functions(conn: Any) -> None:
    """Run every CREATE OR REPLACE file on a DB-API connection (inside its transaction).

    Files are tried in order; one that refers to an object a later file makes
    (a trigger on another domain's function, say) is rolled back to its
    savepoint and retried after the others, until no file makes progress.
    """
    cur = conn.cursor()
    # Bodies refer to each other; let each file be created before its callees.
    cur.execute("SET LOCAL check_function_bodies = off")
    files = function_files()
    # Ownership and grants go last, after every retried file too (else a
    # retried file's functions stay owned by the migrating superuser).
    last = [p for p in files if p.name in (PRIVILEGES, GRANTS)]
    pending = [p for p in files if p not in last]
    while pending:
        failed: list[tuple[Path, Exception]] = []
        for path in pending:
            cur.execute("SAVEPOINT function_file")
            try:
                cur.execute(path.read_text())
            except Exception as exc:  # noqa: BLE001 - reported to the caller as a failed step
                cur.execute("ROLLBACK TO SAVEPOINT function_file")
                failed.append((path, exc))
            else:
                cur.execute("RELEASE SAVEPOINT function_file")
        if len(failed) == len(pending):  # no progress: report the first real error, naming the file
            first_path, first_exc = failed[0]
            raise RuntimeError(f"{first_path.relative_to(FUNCTIONS_DIR)}: {first_exc}") from first_exc
        pending = [path for path, _ in failed]
    for path in last:
        try:
            cur.execute(path.read_text())
        except Exception as exc:  # name the file: the driver's message does not
            raise RuntimeError(f"{path.relative_to(FUNCTIONS_DIR)}: {exc}") from exc
    # The DDL watch (audit/ddl_watch.sql) switches on once everything is in
    # place, so installing a fresh database is not logged as DDL on audited objects.
    cur.execute("SELECT audit._ddl_watch_start()")
    # pg_cron follows the job registry (a no-op where pg_cron is absent).
    cur.execute("SELECT * FROM ops._sync_cron()")


def migration_ids() -> list[str]:
    """Migration ids on disk (what a current database must have applied)."""
    return sorted(
        p.stem
        for p in MIGRATIONS_DIR.glob("*.*")
        if p.suffix in (".sql", ".py") and not p.name.startswith("post-apply") and not p.stem.endswith(".rollback")
    )


def yoyo_url(conninfo: str) -> str:
    """yoyo wants a URL with an explicit driver."""
    if conninfo.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + conninfo.split("://", 1)[1]
    return conninfo


def migrate(conninfo: str) -> list[str]:
    """Apply pending migrations, then always re-apply the function files.

    Returns the ids of the migrations applied now.
    """
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(conninfo))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations_only(pending)
        backend.run_post_apply(migrations)  # yoyo skips it when nothing is pending
    return [m.id for m in pending]


def rollback(conninfo: str, count: int = 1) -> list[str]:
    """Roll back the newest `count` applied migrations."""
    from yoyo import get_backend, read_migrations

    backend = get_backend(yoyo_url(conninfo))
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with backend.lock():
        applied = backend.to_rollback(migrations)
        chosen = applied[:count]
        backend.rollback_migrations(chosen)
    return [m.id for m in chosen]
