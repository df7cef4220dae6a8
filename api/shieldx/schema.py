"""Migrations (yoyo) and the function files applied after every migrate.

Both run while the API serves traffic (a rolling release), so both are bounded:

* every statement waits at most `lock_timeout` for a lock (set on each of the
  runner's connections; a migration's own `SET LOCAL` wins inside it). A DDL
  statement queued behind a long transaction would otherwise block every write
  queued behind it;
* a migration or a function reload that fails on a lock timeout (SQLSTATE
  55P03) is rolled back and tried again after a pause, `attempts` times in all;
* a function file whose text is unchanged since the last migrate is not
  re-applied (ops.function_files keeps each file's SHA-256, and a digest of the
  functions and triggers, so a hand-made change or a migration that dropped a
  function makes every file apply again). Re-creating a trigger locks its table
  against writes until the reload commits.

Function changes are additive within a release: old API processes keep calling
the old functions while the reload runs and after it. A function whose
signature or result changes is a new function (a new name or a new overload);
the old one is dropped by a later release's migration (the contract step), never
by a function file. Private functions (names starting with `_`) are called only
by the files' own functions and may change freely, since one reload replaces a
file's functions in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from .paths import FUNCTIONS_DIR, MIGRATIONS_DIR

log = logging.getLogger("shieldx.schema")

PRIVILEGES = "privileges.sql"  # default ownership and grants, once every function exists
GRANTS = "grants.sql"  # a schema's own exceptions to the defaults, applied after them
CATALOG_ROW = "(catalog)"  # the ops.function_files row holding the catalog digest

LOCK_TIMEOUT = "2s"  # the longest a migrate statement waits for a lock
ATTEMPTS = 8  # tries of one migration (or of the function reload) that hit lock timeouts
LOCK_NOT_AVAILABLE = "55P03"

T = TypeVar("T")


class LockTimeout(RuntimeError):
    """A migration or the function reload kept failing on lock timeouts."""


def function_files(root: Path = FUNCTIONS_DIR, extra: Sequence[Path] = ()) -> list[Path]:
    """Every function file in a stable order; privileges.sql, then each grants.sql, last.

    `extra` folders hold more function files (laid out like db/functions), applied with the others."""
    roots = [root, *extra]
    files = sorted(
        (p for r in roots for p in r.rglob("*.sql") if p.name not in (PRIVILEGES, GRANTS)),
        key=lambda p: _relative(p, roots),
    )
    defaults = [root / PRIVILEGES] if (root / PRIVILEGES).exists() else []
    return files + defaults + sorted((p for r in roots for p in r.rglob(GRANTS)), key=lambda p: _relative(p, roots))


def _relative(path: Path, roots: Sequence[Path]) -> str:
    for root in roots:
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return str(path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Functions, triggers and event triggers of the product's schemas (those
# shieldx_owner owns), as one digest: what the function files define.
CATALOG_DIGEST = """
SELECT md5(coalesce(string_agg(item, ',' ORDER BY item COLLATE "C"), '')) FROM (
  SELECT 'f:' || p.oid::regprocedure::text || ':' || md5(p.prosrc) || ':' || p.prosecdef::text || ':'
         || p.provolatile::text || ':' || coalesce(p.proconfig::text, '')
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE n.nspowner = to_regrole('shieldx_owner')
  UNION ALL
  SELECT 't:' || pg_get_triggerdef(t.oid) || ':' || t.tgenabled::text
    FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE NOT t.tgisinternal AND n.nspowner = to_regrole('shieldx_owner')
  UNION ALL
  SELECT 'e:' || e.evtname || ':' || e.evtenabled::text || ':' || e.evtfoid::regprocedure::text
    FROM pg_event_trigger e
) AS catalog(item)
"""


def _catalog_digest(cur: Any) -> str:
    cur.execute(CATALOG_DIGEST)
    return hashlib.sha256(cur.fetchone()[0].encode()).hexdigest()


def apply_functions(conn: Any, extra: Sequence[Path] = (), force: bool = False) -> list[str]:
    """Run the CREATE OR REPLACE files on a DB-API connection (inside its transaction).

    Returns the files applied (paths relative to their folder). Without `force`,
    a file whose SHA-256 matches ops.function_files is skipped, as long as the
    functions and triggers still match the digest recorded after the last reload;
    privileges.sql and every grants.sql always run (they take no table lock).

    Files are tried in order; one that refers to an object a later file makes
    (a trigger on another domain's function, say) is rolled back to its
    savepoint and retried after the others, until no file makes progress.
    """
    roots = [FUNCTIONS_DIR, *extra]
    cur = conn.cursor()
    # Bodies refer to each other; let each file be created before its callees.
    cur.execute("SET LOCAL check_function_bodies = off")
    files = function_files(FUNCTIONS_DIR, extra)
    recorded: dict[str, str] = {}
    cur.execute("SELECT to_regclass('ops.function_files') IS NOT NULL")
    tracked = bool(cur.fetchone()[0])
    if tracked and not force:
        cur.execute("SELECT path, sha256 FROM ops.function_files")
        recorded = dict(cur.fetchall())
        if recorded.pop(CATALOG_ROW, None) != _catalog_digest(cur):
            recorded = {}  # changed behind the files' back: apply them all
    hashes = {_relative(p, roots): _sha256(p) for p in files}
    # Ownership and grants go last, after every retried file too (else a
    # retried file's functions stay owned by the migrating superuser).
    last = [p for p in files if p.name in (PRIVILEGES, GRANTS)]
    pending = [p for p in files if p not in last and recorded.get(_relative(p, roots)) != hashes[_relative(p, roots)]]
    applied = [_relative(p, roots) for p in pending]
    while pending:
        failed: list[tuple[Path, Exception]] = []
        for path in pending:
            cur.execute("SAVEPOINT function_file")
            try:
                cur.execute(path.read_text())
            except Exception as exc:
                cur.execute("ROLLBACK TO SAVEPOINT function_file")
                if getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                    raise  # the whole reload is retried; retrying the file here would hold its other locks
                failed.append((path, exc))
            else:
                cur.execute("RELEASE SAVEPOINT function_file")
        if len(failed) == len(pending):  # no progress: report the first real error, naming the file
            first_path, first_exc = failed[0]
            raise RuntimeError(f"{_relative(first_path, roots)}: {first_exc}") from first_exc
        pending = [path for path, _ in failed]
    for path in last:
        try:
            cur.execute(path.read_text())
        except Exception as exc:  # name the file: the driver's message does not
            if getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                raise
            raise RuntimeError(f"{_relative(path, roots)}: {exc}") from exc
    # The DDL watch (audit/ddl_watch.sql) switches on once everything is in
    # place, so installing a fresh database is not logged as DDL on audited objects.
    cur.execute("SELECT audit._ddl_watch_start()")
    # pg_cron follows the job registry (a no-op where pg_cron is absent).
    cur.execute("SELECT * FROM ops._sync_cron()")
    if tracked:
        digest = _catalog_digest(cur)
        cur.execute("DELETE FROM ops.function_files WHERE path <> ALL(%s)", ([*hashes, CATALOG_ROW],))
        for name, sha in [*hashes.items(), (CATALOG_ROW, digest)]:
            cur.execute(
                "INSERT INTO ops.function_files (path, sha256) VALUES (%s, %s) "
                "ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256, applied_at = now() "
                "WHERE ops.function_files.sha256 <> excluded.sha256",
                (name, sha),
            )
    return applied


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


def _is_lock_timeout(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == LOCK_NOT_AVAILABLE or (
        exc.__cause__ is not None and _is_lock_timeout(exc.__cause__)
    )


def _retrying(what: str, attempt: Callable[[], T], attempts: int, pause_s: float = 0.5) -> T:
    """Run attempt(); after a lock timeout, pause (doubling, jittered) and run it again."""
    for n in range(1, attempts + 1):
        try:
            return attempt()
        except Exception as exc:
            if not _is_lock_timeout(exc):
                raise
            if n == attempts:
                raise LockTimeout(
                    f"{what}: a lock was still taken after {attempts} attempts ({exc}); a long transaction holds "
                    "a lock this step needs: find it in pg_stat_activity / pg_locks, then run migrate again"
                ) from exc
            wait = min(pause_s * 2 ** (n - 1), 8.0) * (0.5 + random.random())
            log.warning("%s: lock timeout (attempt %d of %d); trying again in %.1fs", what, n, attempts, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _backend(conninfo: str, lock_timeout: str) -> Any:
    """yoyo's PostgreSQL backend, every connection of which waits at most `lock_timeout` for a lock."""
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
    from yoyo.connections import parse_uri

    class Backend(PostgresqlPsycopgBackend):
        def init_connection(self, connection: Any) -> None:
            super().init_connection(connection)
            connection.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))

    backend = Backend(parse_uri(yoyo_url(conninfo)), "_yoyo_migration")
    backend.init_database()
    return backend


def _sources(extra: Sequence[Path]) -> list[str]:
    return [str(MIGRATIONS_DIR), *(str(p) for p in extra)]


def reload_functions(
    conninfo: str,
    extra: Sequence[Path] = (),
    force: bool = False,
    lock_timeout: str = LOCK_TIMEOUT,
    attempts: int = ATTEMPTS,
) -> list[str]:
    """Apply the changed function files in one transaction, retried after lock timeouts."""
    import psycopg

    def once() -> list[str]:
        with psycopg.connect(conninfo) as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (lock_timeout,))
            return apply_functions(conn, extra, force)

    return _retrying("reloading the function files", once, attempts)


def migrate(
    conninfo: str,
    extra_migrations: Sequence[Path] = (),
    extra_functions: Sequence[Path] = (),
    lock_timeout: str = LOCK_TIMEOUT,
    attempts: int = ATTEMPTS,
    force_functions: bool = False,
) -> list[str]:
    """Apply pending migrations one at a time, then the changed function files.

    Returns the ids of the migrations applied now. `extra_*` are more folders of
    migrations and function files (a test's fixtures).
    """
    from yoyo import read_migrations

    backend = _backend(conninfo, lock_timeout)
    migrations = read_migrations(*_sources(extra_migrations))
    applied: list[str] = []
    with backend, backend.lock():
        for m in backend.to_apply(migrations):
            # A failed transactional migration left nothing behind; a failed
            # non-transactional one was undone by its rollback steps (yoyo).
            _retrying(f"migration {m.id}", partial(backend.apply_one, m), attempts)
            applied.append(m.id)
        reload_functions(conninfo, extra_functions, force_functions, lock_timeout, attempts)
    return applied


def rollback(
    conninfo: str,
    count: int = 1,
    extra_migrations: Sequence[Path] = (),
    lock_timeout: str = LOCK_TIMEOUT,
    attempts: int = ATTEMPTS,
) -> list[str]:
    """Roll back the newest `count` applied migrations (each retried after lock timeouts)."""
    from yoyo import read_migrations

    backend = _backend(conninfo, lock_timeout)
    migrations = read_migrations(*_sources(extra_migrations))
    chosen: list[str] = []
    with backend, backend.lock():
        for m in list(backend.to_rollback(migrations))[:count]:
            _retrying(f"rolling back {m.id}", partial(backend.rollback_one, m), attempts)
            chosen.append(m.id)
    return chosen
