"""The canary state machine, driven by the job: steps advance only on passing
guardrails, too little data is inconclusive (never a pass), a breach rolls back
at once, the decision rule promotes or rolls back, and people can pause,
resume, promote and roll back. Every transition is in the audit trail."""

from __future__ import annotations

import psycopg
import pytest

from helpers import raises
from shadow_helpers import events, experiment, run_job, send, setup_experiment

# Small plans for tests: 100 challenger observations and no waiting per step.
SMALL = {"p_min_obs_per_step": 100, "p_guardrail_min_obs": 50}


def _kinds(db, exp):
    return [e["kind"] for e in events(db, exp)]


def test_no_data_or_too_little_is_inconclusive_never_a_pass(db):
    exp = setup_experiment(db, **SMALL)
    for _ in range(2):
        run_job(db)
    st = experiment(db, exp)
    assert (st["state"], st["step_no"], st["weight"], st["guardrail_status"]) == ("running", 1, 1, "inconclusive")
    send(db, exp, "champion", 500, successes=50)
    send(db, exp, "challenger", 49, successes=5, errors=49, latency_ms=9999.0)  # awful, but below the minimum
    run_job(db)
    st = experiment(db, exp)
    assert (st["state"], st["step_no"], st["guardrail_status"]) == ("running", 1, "inconclusive")
    assert {c["check"]: c["status"] for c in st["guardrails"]["checks"]}["challenger_data"] == "inconclusive"
    assert _kinds(db, exp) == ["created"]


def test_steps_advance_on_passing_guardrails_and_the_plan_ends_inconclusive(db):
    exp = setup_experiment(db, **SMALL)
    weights = []
    for _ in range(5):
        send(db, exp, "champion", 100, successes=10)
        send(db, exp, "challenger", 100, successes=10)
        run_job(db)
        weights.append(experiment(db, exp)["weight"])
    assert weights == [5, 25, 50, 100, 0]
    st = experiment(db, exp)
    assert (st["state"], st["decision"]) == ("inconclusive", "continue")
    ev = events(db, exp)
    assert [e["kind"] for e in ev] == ["created"] + ["step_advanced"] * 4 + ["inconclusive"]
    assert [e["to_weight"] for e in ev] == [1, 5, 25, 50, 100, 0]
    assert all(e["actor"] == "shieldx-shadow-job" for e in ev[1:])
    # The evidence at that moment: counts of the step that passed, and its guardrails.
    assert ev[1]["evidence"]["step_counts"]["challenger_n"] == 100
    assert ev[1]["evidence"]["guardrails"]["status"] == "pass"
    run_job(db)  # a terminal experiment is left alone
    assert len(events(db, exp)) == 6


def test_a_step_waits_for_its_minimum_time(db):
    exp = setup_experiment(db, **SMALL | {"p_min_step_duration": "1 hour"})
    send(db, exp, "champion", 100, successes=10)
    send(db, exp, "challenger", 100, successes=10)
    run_job(db)
    assert experiment(db, exp)["step_no"] == 1
    db.execute("UPDATE shadow.experiments SET step_started_at = now() - interval '61 minutes'")  # time passes
    run_job(db)
    assert experiment(db, exp)["step_no"] == 2


GUARDRAILS = {
    # check: (config, champion observations (errors, latencies), challenger observations (errors, latencies))
    "error_rate": (
        {"p_max_error_rate": 0.05, "p_max_error_rate_increase": None, "p_max_p95_ratio": None},
        (10, [10.0] * 100),
        (10, [10.0] * 100),
    ),
    "error_rate_vs_champion": (
        {"p_max_error_rate": None, "p_max_error_rate_increase": 0.01, "p_max_p95_ratio": None},
        (1, [10.0] * 100),
        (3, [10.0] * 100),
    ),
    "p95_latency_ms": (
        {"p_max_error_rate": None, "p_max_error_rate_increase": None, "p_max_p95_ratio": None, "p_max_p95_ms": 100.0},
        (0, [10.0] * 100),
        (0, [10.0] * 90 + [500.0] * 10),
    ),
    "p95_latency_vs_champion": (
        {"p_max_error_rate": None, "p_max_error_rate_increase": None, "p_max_p95_ratio": 1.25},
        (0, [10.0] * 100),
        (0, [20.0] * 100),
    ),
}


@pytest.mark.parametrize("check", sorted(GUARDRAILS))
def test_each_guardrail_breach_rolls_back_at_once(db, check):
    config, (champ_err, champ_lat), (chal_err, chal_lat) = GUARDRAILS[check]
    exp = setup_experiment(db, **SMALL | config)
    send(db, exp, "champion", 100, successes=10, errors=champ_err, latency_ms=champ_lat)
    send(db, exp, "challenger", 100, successes=10, errors=chal_err, latency_ms=chal_lat)
    out = run_job(db)
    assert out["transitions"] == {str(exp): "rolled_back"}
    st = experiment(db, exp)
    assert (st["state"], st["weight"], st["guardrail_status"]) == ("rolled_back", 0, "breach")
    ev = events(db, exp)[-1]
    assert ev["kind"] == "rolled_back" and check in ev["reason"]
    assert ev["evidence"]["guardrails"]["breached"] == [check]
    # Weight 0: every unit goes to the champion.
    arms = db.execute(
        "SELECT DISTINCT (shadow.assign(%s, 'u' || g)).arm FROM generate_series(1, 500) g", (exp,)
    ).fetchall()
    assert arms == [{"arm": "champion"}]


def test_same_data_within_thresholds_passes(db):
    exp = setup_experiment(db, **SMALL | {"p_max_p95_ms": 100.0})
    send(db, exp, "champion", 100, successes=10, errors=1, latency_ms=10.0)
    send(db, exp, "challenger", 100, successes=10, errors=1, latency_ms=[10.0] * 95 + [500.0] * 5)
    run_job(db)
    st = experiment(db, exp)
    assert (st["state"], st["step_no"], st["guardrail_status"]) == ("running", 2, "pass")


def _breach_sequence(db, mode):
    exp = setup_experiment(
        db,
        p_min_obs_per_step=10**6,
        p_guardrail_min_obs=50,
        p_breach_limit=3,
        p_breach_mode=mode,
        p_max_error_rate_increase=None,
        p_max_p95_ratio=None,
    )
    send(db, exp, "champion", 100, successes=10)
    seen = []

    def job():
        run_job(db)
        st = experiment(db, exp)
        seen.append((st["guardrail_status"], st["breaches"], st["state"]))

    send(db, exp, "challenger", 100, errors=10)  # 10% errors: breach
    job()
    job()  # still 10%: breach
    send(db, exp, "challenger", 200)  # 10 / 300: pass
    job()
    send(db, exp, "challenger", 40, errors=40)  # 50 / 340: breach
    job()
    job()
    return exp, seen


def test_consecutive_breaches_reset_on_a_pass(db):
    exp, seen = _breach_sequence(db, "consecutive")
    assert seen == [
        ("breach", 1, "running"),
        ("breach", 2, "running"),
        ("pass", 0, "running"),
        ("breach", 1, "running"),
        ("breach", 2, "running"),
    ]
    run_job(db)
    assert experiment(db, exp)["state"] == "rolled_back"
    assert "3 of 3 consecutive" in events(db, exp)[-1]["reason"]


def test_cumulative_breaches_add_up(db):
    exp, seen = _breach_sequence(db, "cumulative")
    assert seen == [
        ("breach", 1, "running"),
        ("breach", 2, "running"),
        ("pass", 2, "running"),
        ("breach", 3, "rolled_back"),
        ("breach", 3, "rolled_back"),
    ]
    assert _kinds(db, exp) == ["created", "rolled_back"]


def test_the_decision_rule_promotes_a_better_challenger(db):
    exp = setup_experiment(db, p_min_obs_per_step=10**6, p_guardrail_min_obs=50)
    send(db, exp, "champion", 2000, successes=200)
    send(db, exp, "challenger", 2000, successes=300)
    out = run_job(db)
    assert out["transitions"] == {str(exp): "promoted"}
    st = experiment(db, exp)
    assert (st["state"], st["weight"], st["decision"]) == ("promoted", 100, "challenger_better")
    assert st["p_challenger_better"] > 0.9999
    ev = events(db, exp)[-1]
    assert ev["kind"] == "promoted" and ev["evidence"]["posterior"]["decision"] == "challenger_better"
    assert db.execute("SELECT (shadow.assign(%s, 'anyone')).arm", (exp,)).fetchone()["arm"] == "challenger"


def test_the_decision_rule_rolls_back_a_worse_challenger(db):
    exp = setup_experiment(db, p_min_obs_per_step=10**6, p_guardrail_min_obs=50)
    send(db, exp, "champion", 2000, successes=300)
    send(db, exp, "challenger", 2000, successes=200)
    run_job(db)
    st = experiment(db, exp)
    assert (st["state"], st["weight"], st["decision"]) == ("rolled_back", 0, "challenger_worse")
    assert "challenger worse" in events(db, exp)[-1]["reason"]


def test_a_better_challenger_is_not_promoted_while_guardrails_lack_data(db):
    exp = setup_experiment(db, p_min_obs_per_step=10**6, p_guardrail_min_obs=5000)
    send(db, exp, "champion", 2000, successes=200)
    send(db, exp, "challenger", 2000, successes=300)
    run_job(db)
    st = experiment(db, exp)
    assert (st["state"], st["decision"], st["guardrail_status"]) == ("running", "challenger_better", "inconclusive")


def test_manual_pause_resume_promote_rollback(db):
    exp = setup_experiment(db, **SMALL)
    p = db.execute("SELECT * FROM shadow.pause(%s, 'bob', 'investigating a ticket', 'pause-1')", (exp,)).fetchone()
    assert (p["state"], p["kind"], p["actor"], p["replayed"]) == ("paused", "paused", "bob", False)
    again = db.execute("SELECT * FROM shadow.pause(%s, 'bob', 'investigating a ticket', 'pause-1')", (exp,)).fetchone()
    assert again["replayed"] and again["event_id"] == p["event_id"]
    with raises("SX005"):
        db.execute("SELECT * FROM shadow.pause(%s, 'bob', 'another reason', 'pause-1')", (exp,))
    with raises("SX406"):
        db.execute("SELECT * FROM shadow.pause(%s, 'bob', 'twice', 'pause-2')", (exp,))
    # Paused: enough good data, but no step moves.
    send(db, exp, "champion", 100, successes=10)
    send(db, exp, "challenger", 100, successes=10)
    run_job(db)
    assert (experiment(db, exp)["state"], experiment(db, exp)["step_no"]) == ("paused", 1)
    db.execute("SELECT * FROM shadow.resume(%s, 'bob', 'ticket closed', 'resume-1')", (exp,))
    run_job(db)
    assert (experiment(db, exp)["state"], experiment(db, exp)["step_no"]) == ("running", 2)
    r = db.execute(
        "SELECT * FROM shadow.promote(%s, 'carol', 'sign-off from security', 'promote-1')", (exp,)
    ).fetchone()
    assert (r["state"], r["weight"]) == ("promoted", 100)
    with raises("SX406"):
        db.execute("SELECT * FROM shadow.rollback(%s, 'carol', 'too late', 'rb-1')", (exp,))
    with raises("SX401"):
        db.execute("SELECT * FROM shadow.pause(424242, 'bob', 'x', 'p-x')")
    with raises("SX007"):
        db.execute("SELECT * FROM shadow.pause(%s, 'bob', '', 'p-y')", (exp,))
    ev = events(db, exp)
    assert [(e["kind"], e["actor"]) for e in ev] == [
        ("created", "alice"),
        ("paused", "bob"),
        ("resumed", "bob"),
        ("step_advanced", "shieldx-shadow-job"),
        ("promoted", "carol"),
    ]
    assert ev[1]["reason"] == "investigating a ticket"


def test_guardrails_still_protect_a_paused_experiment(db):
    exp = setup_experiment(db, **SMALL)
    db.execute("SELECT * FROM shadow.pause(%s, 'bob', 'hold here', 'pause-1')", (exp,))
    send(db, exp, "champion", 100, successes=10)
    send(db, exp, "challenger", 100, successes=10, errors=20)
    run_job(db)
    assert experiment(db, exp)["state"] == "rolled_back"
    with raises("SX406"):
        db.execute("SELECT * FROM shadow.rollback(%s, 'bob', 'again', 'rb-1')", (exp,))


def test_manual_rollback_records_actor_reason_and_evidence(db):
    exp = setup_experiment(db, **SMALL)
    send(db, exp, "challenger", 60, successes=6)
    run_job(db)
    r = db.execute("SELECT * FROM shadow.rollback(%s, 'dave', 'customer complaint #42', 'rb-1')", (exp,)).fetchone()
    assert (r["state"], r["weight"]) == ("rolled_back", 0)
    ev = events(db, exp)[-1]
    assert (ev["actor"], ev["reason"], ev["from_weight"], ev["to_weight"]) == ("dave", "customer complaint #42", 1, 0)
    assert ev["evidence"]["counts"]["challenger_n"] == 60


def test_the_audit_trail_is_append_only_even_for_replicas(db):
    exp = setup_experiment(db)
    db.execute("SET session_replication_role = replica")
    for sql in (
        "UPDATE shadow.deployment_events SET reason = 'forged'",
        "DELETE FROM shadow.deployment_events",
        "TRUNCATE shadow.deployment_events CASCADE",
        "UPDATE shadow.rule_versions SET definition = '{}'",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute(sql)
    db.execute("RESET session_replication_role")
    assert _kinds(db, exp) == ["created"]


def test_ingestion_does_not_wait_for_an_evaluation_in_progress(db, connect):
    exp = setup_experiment(db, **SMALL)
    job = connect()
    job.execute("BEGIN")
    job.execute("SELECT shadow._evaluate(%s)", (exp,))  # holds the experiment row until commit
    app = connect("shieldx_app")
    app.execute("SET lock_timeout = '2s'")
    r = app.execute(
        "SELECT * FROM shadow.record_observations(%s, %s::jsonb, 'during-job')",
        (exp, '[{"arm": "champion", "success": true, "latency_ms": 1}]'),
    ).fetchone()
    assert r["accepted"] == 1
    job.execute("COMMIT")


def test_the_job_is_registered_for_pg_cron(db):
    job = db.execute("SELECT * FROM ops.jobs WHERE job_name = 'shieldx-shadow-evaluate'").fetchone()
    assert (job["schedule"], job["command"]) == ("* * * * *", "SELECT shadow._job_evaluate()")
