"""Every migration rolls back, and the schema comes back the same."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import psycopg
import pytest

from shieldx import schema


def _shape(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("""
            SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN ('credits', 'ops', 'audit', 'shadow') ORDER BY 1, 2""").fetchall()


def test_rollback_everything_then_migrate_again(dsn):
    before = _shape(dsn)
    assert before, "the template should be migrated"
    rolled = schema.rollback(dsn, count=len(schema.migration_ids()))
    assert sorted(rolled) == schema.migration_ids()
    assert _shape(dsn) == []
    assert sorted(schema.migrate(dsn)) == schema.migration_ids()
    assert _shape(dsn) == before


def test_migrate_is_idempotent_and_reloads_functions(dsn):
    assert schema.migrate(dsn) == []
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP FUNCTION credits.get_account(text, bigint)")
        conn.commit()
    schema.migrate(dsn)  # nothing pending: the function files are applied anyway
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regprocedure('credits.get_account(text, bigint)') IS NOT NULL").fetchone()[0]


RETIRED = "0205_drop_retired_functions"
SCHEMAS = ("credits", "ops", "audit", "shadow", "vault", "privacy", "auth")


def _catalog(dsn: str) -> tuple[list[tuple], list[tuple]]:
    """Every function of the project's schemas, and every trigger with its function and firing mode."""
    with psycopg.connect(dsn) as conn:
        functions = conn.execute(
            """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = ANY(%s) ORDER BY 1""",
            [list(SCHEMAS)],
        ).fetchall()
        triggers = conn.execute(
            """SELECT t.tgrelid::regclass::text, t.tgname, t.tgfoid::regprocedure::text, t.tgenabled
                 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE NOT t.tgisinternal AND n.nspname = ANY(%s) ORDER BY 1, 2""",
            [list(SCHEMAS)],
        ).fetchall()
    return functions, triggers


def test_an_older_database_migrates_to_the_same_functions_and_triggers_as_a_fresh_one(dsn):
    from yoyo import get_backend, read_migrations

    fresh = _catalog(dsn)
    # What a database migrated by older function files still has: the retired
    # functions, and an append-only trigger on a retired trigger function.
    with psycopg.connect(dsn) as conn:
        for s in ("credits", "audit", "shadow"):
            conn.execute(
                f"CREATE FUNCTION {s}._refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$"
            )
        conn.execute("CREATE FUNCTION credits._audit_chain(bigint) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$")
        conn.execute("CREATE FUNCTION shadow._stats_load() RETURNS void LANGUAGE sql AS $$ SELECT $$")
        conn.execute("CREATE FUNCTION vault._py() RETURNS void LANGUAGE sql AS $$ SELECT $$")
        conn.execute("""CREATE OR REPLACE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON credits.entries
                        FOR EACH STATEMENT EXECUTE FUNCTION credits._refuse_change()""")
        conn.commit()
    backend = get_backend(schema.yoyo_url(dsn))
    with backend.lock():
        backend.rollback_migrations(read_migrations(str(schema.MIGRATIONS_DIR)).filter(lambda m: m.id == RETIRED))
    assert _catalog(dsn) != fresh
    assert schema.migrate(dsn) == [RETIRED]
    assert _catalog(dsn) == fresh


# --- migrating while the service runs (shieldx/schema.py) ---------------------------------------


def _probe_migration(folder: Path) -> Path:
    """A migration that needs an ACCESS EXCLUSIVE lock on credits.accounts (in a test's folder)."""
    folder.mkdir(exist_ok=True)
    (folder / "9100_lock_probe.sql").write_text(
        "-- depends: 0511_drop_verify_streams_v1\nALTER TABLE credits.accounts ADD COLUMN lock_probe text;\n"
    )
    (folder / "9100_lock_probe.rollback.sql").write_text("ALTER TABLE credits.accounts DROP COLUMN lock_probe;\n")
    return folder


def _has_probe_column(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM pg_attribute"
                " WHERE attrelid = 'credits.accounts'::regclass AND attname = 'lock_probe'"
            ).fetchone()[0]
            == 1
        )


def test_a_migration_blocked_by_a_long_transaction_waits_lock_timeout_then_retries(dsn, tmp_path, caplog):
    folder = _probe_migration(tmp_path / "migrations")
    reader = psycopg.connect(dsn)
    reader.execute("SELECT count(*) FROM credits.accounts")  # holds ACCESS SHARE until it ends
    release = threading.Timer(1.5, reader.rollback)
    release.start()
    try:
        with caplog.at_level(logging.WARNING, logger="shieldx.schema"):
            assert schema.migrate(dsn, extra_migrations=[folder], lock_timeout="200ms", attempts=10) == [
                "9100_lock_probe"
            ]
    finally:
        release.join()
        reader.close()
    assert _has_probe_column(dsn)
    assert "migration 9100_lock_probe: lock timeout (attempt 1 of 10)" in caplog.text
    assert schema.rollback(dsn, extra_migrations=[folder]) == ["9100_lock_probe"]
    assert not _has_probe_column(dsn)


def test_a_migration_gives_up_after_its_attempts_with_a_clear_message(dsn, tmp_path):
    folder = _probe_migration(tmp_path / "migrations")
    with psycopg.connect(dsn) as reader:
        reader.execute("SELECT count(*) FROM credits.accounts")
        # Meanwhile writers are not queued behind the waiting ALTER for longer than its lock_timeout.
        with pytest.raises(schema.LockTimeout, match=r"migration 9100_lock_probe: a lock was still taken after 2"):
            schema.migrate(dsn, extra_migrations=[folder], lock_timeout="100ms", attempts=2)
        reader.rollback()
    assert not _has_probe_column(dsn)
    assert "9100_lock_probe" not in _applied(dsn)
    assert schema.migrate(dsn, extra_migrations=[folder]) == ["9100_lock_probe"]  # once the reader is gone


def _applied(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT migration_id FROM public._yoyo_migration")}


def test_unchanged_function_files_are_not_reapplied(dsn, tmp_path):
    extra = tmp_path / "functions"
    (extra / "credits").mkdir(parents=True)
    demo = extra / "credits" / "upgrade_demo.sql"
    demo.write_text("CREATE OR REPLACE FUNCTION credits.upgrade_demo() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n")
    assert schema.reload_functions(dsn) == []  # the template's migrate recorded every file
    assert schema.reload_functions(dsn, extra=[extra]) == ["credits/upgrade_demo.sql"]
    assert schema.reload_functions(dsn, extra=[extra]) == []
    demo.write_text(demo.read_text().replace("SELECT 1", "SELECT 2"))
    assert schema.reload_functions(dsn, extra=[extra]) == ["credits/upgrade_demo.sql"]
    with psycopg.connect(dsn.replace("postgres@", "shieldx_app@", 1)) as conn:
        # privileges.sql ran too: owned by shieldx_owner, executable by the application.
        assert conn.execute("SELECT credits.upgrade_demo()").fetchone()[0] == 2
    # A function changed behind the files' back (here: dropped) makes every file apply again.
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP FUNCTION credits.upgrade_demo()")
    assert len(schema.reload_functions(dsn, extra=[extra])) == len(schema.function_files(extra=[extra])) - sum(
        p.name in (schema.PRIVILEGES, schema.GRANTS) for p in schema.function_files(extra=[extra])
    )


def test_the_reload_takes_no_write_blocking_lock_when_nothing_changed(dsn):
    """privileges.sql and grants.sql run on every migrate: no ACCESS EXCLUSIVE or trigger lock on a table."""
    with psycopg.connect(dsn) as conn:
        assert schema.apply_functions(conn) == []
        locks = conn.execute(
            """SELECT c.oid::regclass::text, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE l.pid = pg_backend_pid() AND c.relkind IN ('r', 'p')
                  AND l.mode IN ('ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
                  AND c.relnamespace::regnamespace::text <> 'cron'"""
        ).fetchall()
        conn.rollback()
    assert locks == []


def test_function_files_never_drop_a_public_function():
    """Old API processes call the public functions during a release: only a migration (the contract step) drops one."""
    drop = re.compile(r"DROP\s+(?:FUNCTION|ROUTINE|PROCEDURE)\s+(?:IF\s+EXISTS\s+)?(\w+)\.(\w+)", re.I)
    public = [
        f"{path.relative_to(schema.FUNCTIONS_DIR)}: {m.group(1)}.{m.group(2)}"
        for path in schema.function_files()
        for m in drop.finditer(path.read_text())
        if not m.group(2).startswith("_")
    ]
    assert public == []


def test_a_function_reload_blocked_by_a_writer_waits_lock_timeout_then_retries(dsn, caplog):
    """Re-creating a trigger needs a lock that conflicts with writes: the reload waits at most lock_timeout
    (so writers are never queued behind it for longer) and is tried again, whole, once the writer is done."""
    writer = psycopg.connect(dsn)
    writer.execute("LOCK TABLE credits.holds IN ROW EXCLUSIVE MODE")  # what an open write transaction holds
    release = threading.Timer(1.5, writer.rollback)
    release.start()
    try:
        with caplog.at_level(logging.WARNING, logger="shieldx.schema"):
            applied = schema.reload_functions(dsn, force=True, lock_timeout="200ms", attempts=10)
    finally:
        release.join()
        writer.close()
    assert "credits/holds.sql" in applied
    assert "reloading the function files: lock timeout (attempt 1 of 10)" in caplog.text


# The hot tables' CHECKs as first written (0004, 0100), and values on both
# sides of each: 0730/0731 replaced them by forms PostgreSQL reads faster.
OLD_CHECKS = {
    ("credits.accounts", "accounts_status_check"): (
        "status IN ('open', 'frozen', 'closed')",
        "status",
        ["open", "frozen", "closed", "Open", "", "opened", " open", None],
    ),
    ("credits.accounts", "accounts_name_check"): (
        "length(name) BETWEEN 1 AND 200",
        "name",
        ["", "a", "é", "x" * 199, "x" * 200, "é" * 200, "x" * 201, "é" * 201, None],
    ),
    ("credits.entries", "entries_kind_check"): (
        "kind IN ('grant', 'consume', 'transfer_out', 'transfer_in', 'capture', 'dist_credit')",
        "kind",
        ["grant", "consume", "transfer_out", "transfer_in", "capture", "dist_credit", "transfer", "Grant", "", None],
    ),
}


@pytest.mark.parametrize("table,name", OLD_CHECKS)
def test_the_compact_checks_admit_exactly_what_the_old_ones_did(dsn, table, name):
    old, column, values = OLD_CHECKS[(table, name)]
    with psycopg.connect(dsn) as conn:
        new, valid = conn.execute(
            "SELECT pg_get_constraintdef(oid), convalidated FROM pg_constraint WHERE conrelid = %s::regclass"
            " AND conname = %s",
            (table, name),
        ).fetchone()
        assert valid and new.startswith("CHECK ") and " IN (" not in new and "BETWEEN" not in new
        both = f"SELECT ({old}) IS NOT FALSE, ({new.removeprefix('CHECK ')}) IS NOT FALSE"
        for v in values:
            got = conn.execute(f"{both} FROM (SELECT %s::text AS {column}) AS t", (v,)).fetchone()
            assert got[0] == got[1], (v, got)
        # one CHECK of that name is left: the old form is gone, not kept beside the new one
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND conname LIKE %s",
                (table, name + "%"),
            ).fetchone()[0]
            == 1
        )
