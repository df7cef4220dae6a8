"""Pruning the chain heads of old checkpoints: the table stays bounded, the last
checkpoint keeps every head, verification (full, incremental, against an
export) still finds truncation and rewrites, and a pruned checkpoint cannot be
exported."""

from __future__ import annotations

import json

import psycopg

from helpers import call, raises, rows
from test_audit_tamper import checkpoint, history, rechain, tamper, verify


def heads_per_checkpoint(db):
    return {
        r["checkpoint_id"]: r["n"]
        for r in db.execute("SELECT checkpoint_id, count(*) AS n FROM audit.checkpoint_heads GROUP BY 1 ORDER BY 1")
    }


def prune(db, keep="0", max_checkpoints=100):
    return call(db, "audit.prune_checkpoint_heads", keep, max_checkpoints)


def test_growth_is_bounded_by_the_keep_window(db):
    a, _b = history(db)
    for i in range(5):
        call(db, "credits.consume", "acme", a, 1, f"round-{i}")
        last = checkpoint(db)
        prune(db)
        # Every checkpoint but the last is outside a keep window of 0: only its heads remain.
        assert heads_per_checkpoint(db) == {last["checkpoint_id"]: last["streams"]}
    assert db.execute("SELECT count(*) AS n FROM audit.checkpoints").fetchone()["n"] == 6  # the checkpoints stay
    # Inside the keep window nothing goes.
    checkpoint(db)
    assert prune(db, keep="1 day")["checkpoints_pruned"] == 0
    assert len(heads_per_checkpoint(db)) == 2


def test_pruning_is_batched_idempotent_and_recorded(db):
    history(db)
    ids = [checkpoint(db)["checkpoint_id"] for _ in range(4)]  # 5 checkpoints in all
    first = prune(db, max_checkpoints=2)
    assert (first["through_checkpoint"], first["checkpoints_pruned"]) == (ids[0], 2)
    second = prune(db, max_checkpoints=2)
    assert (second["through_checkpoint"], second["checkpoints_pruned"]) == (ids[2], 2)
    again = prune(db, max_checkpoints=2)  # only the last is left: nothing to do, twice
    assert (again["through_checkpoint"], again["checkpoints_pruned"], again["heads_removed"]) == (ids[2], 0, 0)
    assert list(heads_per_checkpoint(db)) == [ids[3]]
    recorded = db.execute(
        "SELECT through_checkpoint, checkpoints, heads_removed FROM audit.checkpoint_prunes ORDER BY 1"
    ).fetchall()
    assert [(r["through_checkpoint"], r["checkpoints"]) for r in recorded] == [(ids[0], 2), (ids[2], 2)]
    assert sum(r["heads_removed"] for r in recorded) == first["heads_removed"] + second["heads_removed"] > 0


def test_a_run_that_dies_midway_leaves_nothing_half_done(db, dsn):
    history(db)
    checkpoint(db)
    before = heads_per_checkpoint(db)
    with psycopg.connect(dsn) as conn:  # pg_cron runs the job in one transaction like this
        conn.execute("SELECT * FROM audit.prune_checkpoint_heads('0')")
        conn.rollback()  # killed before commit
    assert heads_per_checkpoint(db) == before
    assert db.execute("SELECT count(*) AS n FROM audit.checkpoint_prunes").fetchone()["n"] == 0
    assert prune(db)["checkpoints_pruned"] == 1


def test_the_job_is_registered_and_runs(db):
    history(db)
    checkpoint(db)
    job = db.execute("SELECT command FROM ops.jobs WHERE job_name = 'shieldx-audit-prune-heads'").fetchone()
    db.execute("SET shieldx.audit_checkpoint_keep = '0'")  # ALTER DATABASE ... SET in production
    db.execute(job["command"])
    assert len(heads_per_checkpoint(db)) == 1


def test_a_pruned_checkpoint_cannot_be_exported_and_older_exports_still_verify(db):
    a, _ = history(db)
    old = db.execute("SELECT audit.export_checkpoint() AS d").fetchone()["d"]
    call(db, "credits.consume", "acme", a, 1, "later")
    checkpoint(db)
    prune(db)
    with raises("SX207") as info:
        db.execute("SELECT audit.export_checkpoint(%s)", (old["checkpoint_id"],))
    assert json.loads(info.value.diag.message_detail) == {"checkpoint_id": old["checkpoint_id"]}
    latest = db.execute("SELECT audit.export_checkpoint() AS d").fetchone()["d"]  # the last is never pruned
    for doc in (old, latest):
        assert call(db, "audit.verify_export", json.dumps(doc))["ok"]
    assert {r["sqlstate"]: r["name"] for r in rows(db, "ops.error_codes")}["SX207"] == "checkpoint_pruned"


def test_verification_after_pruning_still_finds_truncation_and_rewrites(db):
    a, _ = history(db)
    call(db, "credits.consume", "acme", a, 1, "more")
    checkpoint(db)
    prune(db)
    assert verify(db)["ok"] and verify(db, incremental=True)["ok"]
    doc = db.execute("SELECT audit.export_checkpoint() AS d").fetchone()["d"]
    last = db.execute("SELECT max(seq) AS m FROM audit.log WHERE stream = %s", (f"ledger/{a}",)).fetchone()["m"]
    # A truncated tail: the last checkpoint's heads still have it.
    tamper(db, "DELETE FROM audit.log WHERE stream = %s AND seq = %s", f"ledger/{a}", last)
    for incremental in (False, True):
        r = call(db, "audit.verify", incremental, False)
        assert (r["ok"], r["stream"]) == (False, f"ledger/{a}") and "truncated" in r["problem"]
    assert "truncated" in call(db, "audit.verify_export", json.dumps(doc))["problem"]


def test_verification_after_pruning_still_finds_a_rewritten_chain(db):
    a, _ = history(db)
    checkpoint(db)
    prune(db)
    tamper(
        db,
        "UPDATE audit.log SET payload = replace(payload, '\"amount\":-1', '\"amount\":-2') "
        "WHERE stream = %s AND seq = 2",
        f"ledger/{a}",
    )
    rechain(db, f"ledger/{a}", 2)
    for incremental in (False, True):
        r = call(db, "audit.verify", incremental, False)
        assert (r["ok"], r["stream"]) == (False, f"ledger/{a}") and "rewritten" in r["problem"]


def test_only_the_operator_prunes(db, connect):
    history(db)
    app = connect("shieldx_app")
    for statement in (
        "SELECT * FROM audit.prune_checkpoint_heads('0')",
        "DELETE FROM audit.checkpoint_heads",
        "DELETE FROM audit.checkpoint_prunes",
    ):
        with raises("42501"):
            app.execute(statement)
    # The superuser too is refused outside the marked transaction.
    for statement in ("DELETE FROM audit.checkpoint_heads", "UPDATE audit.checkpoint_prunes SET checkpoints = 0"):
        with raises("42501"):
            db.execute(statement)
    with raises("SX007"):
        prune(db, keep="-1 hour")
