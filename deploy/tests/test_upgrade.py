"""A release and its rollback under a steady workload through the API (shieldx_local.upgrade).

The new release's API process starts first and is not ready while its
migrations are pending. Expand migrations (a column; an index built
concurrently, non-transactional) and a new function overload are applied while
the old API serves; the new API then serves next to the old one, the old one is stopped; then the API and the schema
are rolled back, still under load. No request may fail beyond retryable 503s
(retried with the same Idempotency-Key), every acknowledged operation is in the
ledger once, the ledger reconciles and the audit chain verifies. The figures
(latency before and during) are measured by `make bench` (suite `upgrade`), not
asserted here. The fixture migrations live in deploy/tests/upgrade_migrations,
never in db/migrations.
"""

from __future__ import annotations

import psycopg

from shieldx import schema
from shieldx_local.upgrade import MIGRATIONS, rehearse


def test_release_and_rollback_under_load_fail_no_request(dsn, tmp_path):
    result = rehearse(dsn, tmp_path / "logs", before_s=2.0, side_by_side_s=2.0)
    print({k: v for k, v in result.items() if k != "problems"})
    assert result["applied"] == ["9001_upgrade_expand", "9002_upgrade_index"]
    assert result["rolled_back"] == ["9002_upgrade_index", "9001_upgrade_expand"]
    # The new release's process was live but not ready before its migrations ran (no traffic for it).
    status, body = result["new_readiness_before_migrate"]
    assert status == 503 and body["reason"] == "migrations pending"
    assert body["migrations_pending"] == ["9001_upgrade_expand", "9002_upgrade_index"]
    assert result["problems"] == []
    assert result["unexpected"] == [] and result["failed_requests"] == 0
    # Once retries are counted, every operation got a definite answer.
    assert set(result["counts"]) <= {"acked", "refused"}, result["counts"]
    assert all(result["acked_by_kind"].values()), result["acked_by_kind"]  # grant, consume, transfer, hold
    assert result["acked_during"] > 0
    assert result["audit_ok"] is True
    # The new release's function answered next to the old one's.
    assert result["new_function"]["upgrade_note"] is None and result["new_function"]["balance"] > 0
    with psycopg.connect(dsn) as conn:
        gone = conn.execute(
            """SELECT to_regclass('credits.accounts_upgrade_note'),
                      to_regprocedure('credits.get_account(text, bigint, boolean)'),
                      (SELECT count(*) FROM pg_attribute
                        WHERE attrelid = 'credits.accounts'::regclass AND attname = 'upgrade_note')"""
        ).fetchone()
    assert gone == (None, None, 0)
    # The old release's migrate, run again after the rollback, finds nothing to do and converges.
    assert schema.migrate(dsn) == []
    assert schema.reload_functions(dsn) == []


def test_the_index_migration_is_non_transactional():
    """yoyo reads `-- transactional: false`: CREATE INDEX CONCURRENTLY cannot run in a transaction."""
    from yoyo import read_migrations

    by_id = {m.id: m for m in read_migrations(str(MIGRATIONS))}
    for m in by_id.values():
        m.load()
    assert by_id["9002_upgrade_index"].use_transactions is False
    assert by_id["9001_upgrade_expand"].use_transactions is True
