"""Folding observations into the Beta posteriors' counts happens exactly once:
under repeated runs, a run that dies midway, concurrent runs, and transactions
that commit in another order than their observation ids were drawn."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from shadow_helpers import events, experiment, run_job, send, settle, setup_experiment


def _folded(db, exp):
    return {
        r["arm"]: (r["n"], r["successes"], r["errors"])
        for r in db.execute(
            """SELECT arm, sum(n)::int AS n, sum(successes)::int AS successes, sum(errors)::int AS errors
             FROM shadow.arm_stats WHERE experiment_id = %s GROUP BY arm""",
            (exp,),
        ).fetchall()
    }


def test_repeated_runs_fold_every_observation_once(db):
    exp = setup_experiment(db)
    send(db, exp, "champion", 300, successes=30, errors=3)
    send(db, exp, "challenger", 200, successes=40, errors=1)
    settle(db)
    for _ in range(3):
        db.execute("SELECT shadow._fold()")
        run_job(db)
    assert _folded(db, exp) == {"champion": (300, 30, 3), "challenger": (200, 40, 1)}
    send(db, exp, "challenger", 50, successes=5)
    run_job(db)
    run_job(db)
    assert _folded(db, exp) == {"champion": (300, 30, 3), "challenger": (250, 45, 1)}
    status = experiment(db, exp)
    assert (status["challenger_alpha"], status["challenger_beta"]) == (1 + 45, 1 + 205)
    hist = db.execute("SELECT sum(n)::int AS n FROM shadow.latency_hist WHERE experiment_id = %s", (exp,)).fetchone()
    assert hist["n"] == 550


def test_a_run_that_dies_midway_changes_nothing_and_the_next_folds_once(db):
    exp = setup_experiment(db)
    send(db, exp, "champion", 120, successes=12)
    send(db, exp, "challenger", 80, successes=20)
    # Die after the counts are written, before the watermark moves (its UPDATE comes last).
    db.execute("""CREATE FUNCTION public.crash() RETURNS trigger LANGUAGE plpgsql AS
                  $$ BEGIN RAISE EXCEPTION 'simulated crash mid-fold'; END $$""")
    db.execute("CREATE TRIGGER crash BEFORE UPDATE ON shadow.fold_state FOR EACH ROW EXECUTE FUNCTION public.crash()")
    before = db.execute("SELECT * FROM shadow.fold_state").fetchone()
    for _ in range(2):
        with pytest.raises(psycopg.errors.RaiseException, match="simulated crash"):
            db.execute("SELECT shadow._job_evaluate()")
    assert _folded(db, exp) == {}
    assert db.execute("SELECT * FROM shadow.fold_state").fetchone() == before
    db.execute("DROP TRIGGER crash ON shadow.fold_state")
    run_job(db)
    run_job(db)
    assert _folded(db, exp) == {"champion": (120, 12, 0), "challenger": (80, 20, 0)}


def test_an_evaluation_that_fails_keeps_the_fold_and_is_retried(db):
    exp = setup_experiment(db)
    send(db, exp, "champion", 100, successes=10)
    db.execute("""CREATE FUNCTION public.crash() RETURNS trigger LANGUAGE plpgsql AS
                  $$ BEGIN RAISE EXCEPTION 'simulated evaluation failure'; END $$""")
    db.execute("CREATE TRIGGER crash BEFORE INSERT ON shadow.evaluations FOR EACH ROW EXECUTE FUNCTION public.crash()")
    out = run_job(db)
    assert "simulated evaluation failure" in out["failed"][str(exp)]
    assert experiment(db, exp)["evaluated_at"] is None
    db.execute("DROP TRIGGER crash ON shadow.evaluations")
    out = run_job(db)
    assert out["failed"] == {}
    assert _folded(db, exp) == {"champion": (100, 10, 0)}
    assert experiment(db, exp)["champion_alpha"] == 11


def test_concurrent_runs_cannot_both_fold(db, connect):
    exp = setup_experiment(db)
    settle(db)
    send(db, exp, "champion", 200, successes=20)
    first = connect()
    second = connect()
    deadline = time.monotonic() + 60
    while True:  # until the first run's horizon covers the batch (other databases' transactions end)
        first.execute("BEGIN")
        if first.execute("SELECT shadow._fold() AS n").fetchone()["n"] == 200:
            break
        first.execute("ROLLBACK")
        assert time.monotonic() < deadline
        time.sleep(0.05)
    result = {}
    t = threading.Thread(target=lambda: result.update(second.execute("SELECT shadow._fold() AS n").fetchone()))
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the second run must wait for the first one's lock"
    first.execute("COMMIT")
    t.join(30)
    assert result["n"] == 0
    settle(db)
    assert _folded(db, exp) == {"champion": (200, 20, 0)}


def test_late_commit_of_a_lower_id_is_folded_not_skipped(db, connect):
    exp = setup_experiment(db)
    settle(db)
    slow = connect()
    slow.execute("BEGIN")
    early = send(slow, exp, "champion", 10, successes=10)  # draws the lower ids, commits last
    late = send(db, exp, "champion", 5, successes=0)  # higher ids, committed first
    ids = db.execute(
        "SELECT min(obs_id) FILTER (WHERE batch_id = %s) AS late_min FROM shadow.observations", (late["batch_id"],)
    ).fetchone()
    assert ids["late_min"] > 10  # the uncommitted batch holds ids 1..10
    for _ in range(3):
        db.execute("SELECT shadow._fold()")
    # Nothing at or above the open transaction may be folded yet: it could still commit below.
    assert _folded(db, exp) == {}
    slow.execute("COMMIT")
    settle(db)
    run_job(db)
    assert _folded(db, exp) == {"champion": (15, 10, 0)}
    assert early["accepted"] == 10


def test_a_rolled_back_batch_is_never_folded(db, connect):
    exp = setup_experiment(db)
    other = connect()
    other.execute("BEGIN")
    send(other, exp, "challenger", 7, successes=7)
    other.execute("ROLLBACK")
    send(db, exp, "challenger", 3, successes=1)
    settle(db)
    assert _folded(db, exp) == {"challenger": (3, 1, 0)}
    assert [e["kind"] for e in events(db, exp)] == ["created"]
