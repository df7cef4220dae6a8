"""Deterministic hash assignment of units to arms at the current weight."""

from __future__ import annotations

from helpers import raises
from shadow_helpers import setup_experiment

UNITS = 20000


def _arms(db, exp):
    return {
        r["unit_id"]: r["arm"]
        for r in db.execute(
            "SELECT * FROM shadow.assign_many(%s, ARRAY(SELECT 'client-' || g FROM generate_series(1, %s) g))",
            (exp, UNITS),
        ).fetchall()
    }


def test_a_unit_lands_in_the_same_arm_while_the_weight_is_unchanged(db):
    exp = setup_experiment(db)
    first = _arms(db, exp)
    assert _arms(db, exp) == first
    single = db.execute(
        "SELECT (shadow.assign(%s, 'client-' || g)).arm FROM generate_series(1, 2000) g", (exp,)
    ).fetchall()
    assert [r["arm"] for r in single] == [first[f"client-{g}"] for g in range(1, 2001)]
    share = sum(a == "challenger" for a in first.values()) / UNITS
    assert 0.006 < share < 0.014  # weight 1%


def test_the_share_follows_the_weight_and_challenger_units_stay_as_it_grows(db):
    exp = setup_experiment(db)
    before = _arms(db, exp)
    db.execute("UPDATE shadow.experiments SET step_no = 3, weight = 25")  # as the job would, two steps on
    after = _arms(db, exp)
    assert 0.24 < sum(a == "challenger" for a in after.values()) / UNITS < 0.26
    assert all(after[u] == "challenger" for u, a in before.items() if a == "challenger")


def test_experiments_hash_independently(db):
    a = setup_experiment(db, "a")
    b = db.execute(
        "SELECT experiment_id FROM shadow.create_experiment('b', 'waf', 1, 2, 'create-b', 'alice')"
    ).fetchone()["experiment_id"]
    same = db.execute(
        """SELECT count(*) FILTER (WHERE x.bucket = y.bucket) AS same FROM generate_series(1, 20000) g,
                           LATERAL shadow.assign(%s, 'u' || g) x, LATERAL shadow.assign(%s, 'u' || g) y""",
        (a, b),
    ).fetchone()["same"]
    assert same < 20  # ~2 expected if independent


def test_bad_assignment_input(db):
    exp = setup_experiment(db)
    with raises("SX401"):
        db.execute("SELECT * FROM shadow.assign(999, 'u1')")
    with raises("SX007"):
        db.execute("SELECT * FROM shadow.assign(%s, '')", (exp,))
    with raises("SX007"):
        db.execute("SELECT * FROM shadow.assign_many(%s, ARRAY['ok', NULL])", (exp,))
