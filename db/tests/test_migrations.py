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
