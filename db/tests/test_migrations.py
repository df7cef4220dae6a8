"""Every migration rolls back, and the schema comes back the same."""

from __future__ import annotations

import psycopg

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
