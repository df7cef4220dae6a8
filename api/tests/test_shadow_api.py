"""Shadow evaluation over HTTP: the same functions, the same named errors."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import psycopg
import pytest

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def experiment(client) -> int:
    assert client.put("/v1/shadow/rules/waf", json={"name": "WAF"}).status_code == 201
    for v in (1, 2):
        r = client.post(
            "/v1/shadow/rules/waf/versions", json={"definition": {"threshold": v}}, headers={"Idempotency-Key": f"v{v}"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["version"] == v
    body = {
        "name": "waf-v2",
        "rule_id": "waf",
        "champion_version": 1,
        "challenger_version": 2,
        "actor": "alice",
        "min_obs_per_step": 100,
        "min_step_seconds": 0,
        "guardrail_min_obs": 50,
    }
    r = client.post("/v1/shadow/experiments", json=body, headers={"Idempotency-Key": "exp-1"})
    assert r.status_code == 201, r.text
    again = client.post("/v1/shadow/experiments", json=body, headers={"Idempotency-Key": "exp-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true" and again.json()["replayed"]
    assert r.json()["weight"] == 1.0
    return r.json()["experiment_id"]


def _batch(arm, n, successes, rng, latency=10.0):
    return [
        {"arm": arm, "success": i < successes, "latency_ms": latency + rng.random(), "unit_id": f"u{i}"}
        for i in range(n)
    ]


def _job(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:  # what pg_cron runs, as its superuser
        import time

        for _ in range(600):
            conn.execute("SELECT shadow._fold()")
            raw, folded = conn.execute(
                "SELECT (SELECT count(*) FROM shadow.observations), (SELECT coalesce(sum(n), 0) FROM shadow.arm_stats)"
            ).fetchone()
            if raw == folded:
                break
            time.sleep(0.05)
        return conn.execute("SELECT shadow._job_evaluate()").fetchone()[0]


def test_observe_evaluate_status_picture_and_history(client, experiment, dsn):
    rng = random.Random(1)
    url = f"/v1/shadow/experiments/{experiment}"
    for i, (arm, succ) in enumerate([("champion", 10), ("challenger", 10)]):
        r = client.post(
            url + "/observations",
            json={"observations": _batch(arm, 100, succ, rng)},
            headers={"Idempotency-Key": f"b{i}"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["accepted"] == 100
    assert _job(dsn)["transitions"] == {str(experiment): "step_advanced"}
    st = client.get(url).json()
    assert (st["state"], st["step_no"], st["weight"], st["guardrail_status"]) == ("running", 2, 5.0, "pass")
    assert st["champion"] == {
        "n": 100,
        "successes": 10,
        "alpha": 11,
        "beta": 91,
        "ci_low": pytest.approx(0.055637, abs=1e-6),
        "ci_high": pytest.approx(0.174553, abs=1e-6),
    }
    assert 0.3 < st["p_challenger_better"] < 0.7
    assert st["decision"] == "continue" and st["expected_loss_challenger"] > 0
    svg = client.get(url + "/posterior.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.text)
    assert len(root.findall(f"{SVG}polyline")) == 2  # both densities
    assert len(root.findall(f"{SVG}polygon")) == 2  # both 95% intervals
    assert "P(challenger &gt; champion)" in svg.text or "P(challenger > champion)" in "".join(root.itertext())
    events = client.get(url + "/events").json()["items"]
    assert [e["kind"] for e in events] == ["created", "step_advanced"]
    a = client.get(url + "/assignments/client-42").json()
    assert a["arm"] in ("champion", "challenger") and a == client.get(url + "/assignments/client-42").json()


def test_manual_actions(client, experiment):
    url = f"/v1/shadow/experiments/{experiment}"
    body = {"actor": "bob", "reason": "incident 7"}
    r = client.post(url + "/pause", json=body, headers={"Idempotency-Key": "p1"})
    assert r.status_code == 201 and r.json()["state"] == "paused"
    again = client.post(url + "/pause", json=body, headers={"Idempotency-Key": "p1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert client.post(url + "/resume", json=body, headers={"Idempotency-Key": "r1"}).json()["state"] == "running"
    r = client.post(url + "/rollback", json=body, headers={"Idempotency-Key": "rb1"})
    assert (r.json()["state"], r.json()["weight"]) == ("rolled_back", 0.0)
    r = client.post(url + "/promote", json=body, headers={"Idempotency-Key": "pr1"})
    assert r.status_code == 409 and r.json()["type"] == "/docs/errors#invalid_transition"
    assert r.json()["facts"]["state"] == "rolled_back"


def test_bad_input_gets_named_errors_and_stores_nothing(client, experiment, dsn):
    url = f"/v1/shadow/experiments/{experiment}/observations"
    ok = {"arm": "challenger", "success": True, "latency_ms": 3}
    r = client.post(url, json={"observations": [ok, ok | {"latency_ms": -1}]}, headers={"Idempotency-Key": "x1"})
    assert r.status_code == 422 and r.json()["sqlstate"] == "SX403"
    assert r.json()["facts"] == {"index": 1, "problem": "latency_ms must not be negative"}
    r = client.post(
        "/v1/shadow/experiments/999/observations", json={"observations": [ok]}, headers={"Idempotency-Key": "x2"}
    )
    assert r.status_code == 404 and r.json()["type"] == "/docs/errors#unknown_experiment"
    r = client.post(url, json={"observations": [ok | {"arm": "B"}]}, headers={"Idempotency-Key": "x3"})
    assert r.status_code == 422 and r.json()["sqlstate"] == "SX403"
    r = client.post(url, json={"observations": "nope"}, headers={"Idempotency-Key": "x4"})
    assert r.status_code in (400, 422) and r.json()["type"] == "/docs/errors#invalid_request"
    r = client.post(url, json={"observations": []}, headers={"Idempotency-Key": "x5"})
    assert r.status_code == 422 and r.json()["sqlstate"] == "SX403"
    r = client.post(url, json={"observations": [ok]})
    assert r.status_code == 422 and r.json()["sqlstate"] == "SX006"
    r = client.get("/v1/shadow/experiments/999")
    assert r.status_code == 404 and r.json()["sqlstate"] == "SX401"
    assert client.get("/v1/shadow/experiments/999/posterior.svg").status_code == 404
    r = client.post(
        "/v1/shadow/experiments",
        json={
            "name": "bad",
            "rule_id": "waf",
            "champion_version": 1,
            "challenger_version": 2,
            "actor": "a",
            "steps": [5, 1],
        },
        headers={"Idempotency-Key": "bad-1"},
    )
    assert r.status_code == 422 and r.json()["type"] == "/docs/errors#invalid_experiment"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM shadow.observations").fetchone()[0] == 0
