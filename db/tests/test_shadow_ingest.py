"""Observation batches: all or nothing, named errors for bad input, idempotent keys."""

from __future__ import annotations

import json

import pytest

from helpers import raises
from shadow_helpers import send, setup_experiment


def _stored(db):
    return db.execute("""SELECT (SELECT count(*) FROM shadow.observations) AS obs,
                                (SELECT count(*) FROM shadow.batches) AS batches""").fetchone()


def _json(db, exp, batch, key="k1"):
    return db.execute(
        "SELECT * FROM shadow.record_observations(%s, %s::jsonb, %s)",
        (exp, batch if isinstance(batch, str) else json.dumps(batch), key),
    ).fetchone()


GOOD = {"arm": "challenger", "success": True, "latency_ms": 12.5}


def test_a_json_batch_is_stored_and_replayed_by_its_key(db):
    exp = setup_experiment(db)
    batch = [GOOD, {"arm": "champion", "success": False, "error": True, "latency_ms": 0, "unit_id": "req-9"}]
    r = _json(db, exp, batch)
    assert (r["accepted"], r["step_no"], r["replayed"]) == (2, 1, False)
    again = _json(db, exp, batch)
    assert again["replayed"] and again["batch_id"] == r["batch_id"]
    assert _stored(db) == {"obs": 2, "batches": 1}
    with raises("SX005"):
        _json(db, exp, [GOOD])
    rows = db.execute(
        "SELECT arm, success, error, latency_ms, unit_id FROM shadow.observations ORDER BY obs_id"
    ).fetchall()
    assert rows == [
        {"arm": "challenger", "success": True, "error": False, "latency_ms": 12.5, "unit_id": None},
        {"arm": "champion", "success": False, "error": True, "latency_ms": 0.0, "unit_id": "req-9"},
    ]


BAD_BATCHES = {
    "not an array": ('{"arm": "champion"}', "SX403", None),
    "empty": ("[]", "SX403", None),
    "item not an object": ([GOOD, 3], "SX403", 1),
    "unknown field": ([GOOD, GOOD | {"colour": "red"}], "SX403", 1),
    "bad arm": ([GOOD | {"arm": "B"}], "SX403", 0),
    "arm not a string": ([GOOD | {"arm": ["champion"]}], "SX403", 0),
    "success missing": ([{"arm": "champion", "latency_ms": 1}], "SX403", 0),
    "success a string": ([GOOD | {"success": "true"}], "SX403", 0),
    "error a number": ([GOOD | {"error": 1}], "SX403", 0),
    "negative latency": ([GOOD, GOOD, GOOD | {"latency_ms": -0.5}], "SX403", 2),
    "latency a string": ([GOOD | {"latency_ms": "12"}], "SX403", 0),
    "latency missing": ([{"arm": "champion", "success": True}], "SX403", 0),
    "latency absurd": ([GOOD | {"latency_ms": 1e300}], "SX403", 0),
    "unit_id a number": ([GOOD | {"unit_id": 7}], "SX403", 0),
    "too many": ([GOOD] * 10001, "SX404", None),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_a_malformed_json_batch_is_refused_whole(db, case):
    exp = setup_experiment(db)
    batch, state, index = BAD_BATCHES[case]
    with raises(state) as info:
        _json(db, exp, batch)
    if index is not None:
        assert json.loads(info.value.diag.message_detail)["index"] == index
        assert f"observation {index}" in info.value.diag.message_primary
    assert _stored(db) == {"obs": 0, "batches": 0}


def test_unknown_experiment_and_missing_key(db):
    setup_experiment(db)
    with raises("SX401"):
        _json(db, 999, [GOOD])
    with raises("SX401"):
        db.execute("SELECT * FROM shadow.record_observation_arrays(999, '{champion}', '{t}', '{f}', '{1}', 'k')")
    with raises("SX006"):
        _json(db, 1, [GOOD], key="")
    assert _stored(db) == {"obs": 0, "batches": 0}


BAD_ARRAYS = {
    "negative latency": ("{champion,challenger}", "{t,f}", "{f,f}", "{1,-3}", 1),
    "NaN latency": ("{champion}", "{t}", "{f}", "{NaN}", 0),
    "infinite latency": ("{champion}", "{t}", "{f}", "{Infinity}", 0),
    "null success": ("{champion,champion}", "{t,NULL}", "{f,f}", "{1,1}", 1),
    "bad arm": ("{champion,other}", "{t,t}", "{f,f}", "{1,1}", 1),
    "lengths differ": ("{champion,champion}", "{t}", "{f,f}", "{1,1}", None),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_bad_arrays_are_refused_whole(db, case):
    exp = setup_experiment(db)
    arms, success, error, latency, index = BAD_ARRAYS[case]
    with raises("SX403") as info:
        db.execute(
            "SELECT * FROM shadow.record_observation_arrays(%s, %s::text[], %s::boolean[], %s::boolean[], "
            "%s::float8[], 'k')",
            (exp, arms, success, error, latency),
        )
    if index is not None:
        assert json.loads(info.value.diag.message_detail)["index"] == index
    assert _stored(db) == {"obs": 0, "batches": 0}


def test_arrays_are_the_bulk_path_and_share_keys_with_json(db):
    exp = setup_experiment(db)
    r = send(db, exp, "champion", 5000, successes=500, key="bulk-1")
    assert (r["accepted"], r["replayed"]) == (5000, False)
    assert send(db, exp, "champion", 5000, successes=500, key="bulk-1")["replayed"]
    with raises("SX005"):
        send(db, exp, "champion", 5000, successes=501, key="bulk-1")
    # A DBA's \copy target feeding the same function.
    db.execute("CREATE TEMP TABLE inbox (arm text, success boolean, error boolean, latency_ms float8)")
    db.execute("INSERT INTO inbox SELECT 'challenger', g % 10 = 0, false, g FROM generate_series(1, 300) g")
    r = db.execute(
        """SELECT * FROM shadow.record_observation_arrays(%s,
                        (SELECT array_agg(arm) FROM inbox), (SELECT array_agg(success) FROM inbox),
                        (SELECT array_agg(error) FROM inbox), (SELECT array_agg(latency_ms) FROM inbox), 'inbox-1')""",
        (exp,),
    ).fetchone()
    assert r["accepted"] == 300
    assert _stored(db) == {"obs": 5300, "batches": 2}


def test_the_application_role_writes_only_through_functions(db, connect):
    exp = setup_experiment(db)
    app = connect("shieldx_app")
    r = app.execute(
        "SELECT * FROM shadow.record_observations(%s, %s::jsonb, 'app-1')", (exp, json.dumps([GOOD]))
    ).fetchone()
    assert r["accepted"] == 1
    with raises("42501"):
        app.execute(
            "INSERT INTO shadow.observations (experiment_id, batch_id, arm, step_no, success, error, "
            "latency_ms) VALUES (%s, 1, 'challenger', 1, true, false, 1)",
            (exp,),
        )
    with raises("42501"):
        app.execute("SELECT shadow._job_evaluate()")
