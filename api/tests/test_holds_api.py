"""HTTP API of holds, distributed transactions and the external 2PC participant."""

from __future__ import annotations

import time

import psycopg

PROBLEM = "application/problem+json"


def key(k: str) -> dict[str, str]:
    return {"Idempotency-Key": k}


def account(client, a: int) -> tuple[int, int, int]:
    body = client.get(f"/v1/tenants/acme/accounts/{a}").json()
    return body["balance"], body["held"], body["available"]


def problem(r, status: int, name: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["type"] == f"/docs/errors#{name}"


def test_reserve_commit_abort_roundtrip(client, accounts):
    a, _ = accounts
    r = client.post(
        f"/v1/tenants/acme/accounts/{a}/holds",
        json={"amount": 40, "ttl_seconds": 60, "reason": "scan"},
        headers=key("h1"),
    )
    assert r.status_code == 201, r.text
    hold = r.json()
    assert (hold["status"], hold["amount"], hold["replayed"]) == ("active", 40, False)
    again = client.post(
        f"/v1/tenants/acme/accounts/{a}/holds",
        json={"amount": 40, "ttl_seconds": 60, "reason": "scan"},
        headers=key("h1"),
    )
    assert (
        again.status_code == 201
        and again.headers["Idempotent-Replayed"] == "true"
        and again.json()["hold_id"] == hold["hold_id"]
        and again.json()["replayed"]
    )
    assert account(client, a) == (100, 40, 60)
    c = client.post(f"/v1/tenants/acme/holds/{hold['hold_id']}/commit", json={"amount": 25})
    assert c.status_code == 200, c.text
    assert (c.json()["captured"], c.json()["released"], c.json()["balance_after"]) == (25, 15, 75)
    assert client.post(f"/v1/tenants/acme/holds/{hold['hold_id']}/commit", json={"amount": 25}).json()["replayed"]
    assert account(client, a) == (75, 0, 75)
    view = client.get(f"/v1/tenants/acme/holds/{hold['hold_id']}").json()
    assert (view["status"], view["captured"]) == ("captured", 25)
    entries = client.get(f"/v1/tenants/acme/accounts/{a}/entries").json()["items"]
    assert (entries[0]["kind"], entries[0]["amount"], entries[0]["idem_key"]) == ("capture", -25, "h1")

    h2 = client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 10}, headers=key("h2")).json()
    full = client.post(f"/v1/tenants/acme/holds/{h2['hold_id']}/commit")  # no body: the whole hold
    assert full.status_code == 200 and full.json()["captured"] == 10

    h3 = client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 10}, headers=key("h3")).json()
    v = client.post(f"/v1/tenants/acme/holds/{h3['hold_id']}/abort")
    assert v.status_code == 200 and v.json()["status"] == "voided"
    assert client.post(f"/v1/tenants/acme/holds/{h3['hold_id']}/abort").json()["replayed"] is True
    page = client.get(f"/v1/tenants/acme/accounts/{a}/holds?limit=2").json()
    assert [h["status"] for h in page["items"]] == ["voided", "captured"] and page["next_cursor"] == h2["hold_id"]
    assert [h["hold_id"] for h in client.get(f"/v1/tenants/acme/accounts/{a}/holds?status=voided").json()["items"]] == [
        h3["hold_id"]
    ]


def test_hold_errors_map_to_problem_json(client, accounts):
    a, _ = accounts
    h = client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 10}, headers=key("e1")).json()["hold_id"]
    v = client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 10}, headers=key("e2")).json()["hold_id"]
    client.post(f"/v1/tenants/acme/holds/{h}/commit")
    client.post(f"/v1/tenants/acme/holds/{v}/abort")
    problem(client.post(f"/v1/tenants/acme/holds/{h}/abort"), 409, "hold_committed")
    problem(client.post(f"/v1/tenants/acme/holds/{v}/commit"), 409, "hold_aborted")
    problem(client.post(f"/v1/tenants/acme/holds/{h}/commit", json={"amount": 3}), 409, "idempotency_conflict")
    problem(client.post("/v1/tenants/acme/holds/999999/commit"), 404, "unknown_hold")
    problem(client.get("/v1/tenants/acme/holds/999999"), 404, "unknown_hold")
    problem(
        client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 1000}, headers=key("e3")),
        409,
        "insufficient_funds",
    )
    problem(
        client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 1, "ttl_seconds": 0}, headers=key("e4")),
        422,
        "invalid_ttl",
    )
    problem(
        client.post(
            f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 1, "ttl_seconds": 1e300}, headers=key("e5")
        ),
        422,
        "invalid_ttl",
    )
    problem(client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 1}), 422, "invalid_idempotency_key")
    problem(
        client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 1, "x": 1}, headers=key("e6")),
        422,
        "invalid_request",
    )
    big = client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 50}, headers=key("e7")).json()
    problem(
        client.post(f"/v1/tenants/acme/holds/{big['hold_id']}/commit", json={"amount": 51}), 422, "capture_exceeds_hold"
    )
    short = client.post(
        f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 1, "ttl_seconds": 0.05}, headers=key("e8")
    ).json()
    time.sleep(0.1)
    assert client.get(f"/v1/tenants/acme/holds/{short['hold_id']}").json()["status"] == "expired"
    problem(client.post(f"/v1/tenants/acme/holds/{short['hold_id']}/commit"), 410, "hold_expired")


def test_distributed_transaction_over_http(client, accounts):
    a, b = accounts
    legs = [{"tenant_id": "acme", "account_id": a, "amount": -30}, {"tenant_id": "acme", "account_id": b, "amount": 30}]
    r = client.post("/v1/dist-transactions", json={"xid": "order-1", "legs": legs, "timeout_seconds": 30})
    assert r.status_code == 201 and r.headers["Location"] == "/v1/dist-transactions/order-1", r.text
    again = client.post("/v1/dist-transactions", json={"xid": "order-1", "legs": legs, "timeout_seconds": 30})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    p = client.post("/v1/dist-transactions/order-1/prepare")
    assert p.status_code == 200 and p.json()["state"] == "prepared", p.text
    assert account(client, a) == (100, 30, 70)
    c = client.post("/v1/dist-transactions/order-1/commit")
    assert c.json() == {"xid": "order-1", "state": "committed", "decision": "commit", "replayed": False}
    problem(client.post("/v1/dist-transactions/order-1/abort"), 409, "dist_transaction_committed")
    assert account(client, a) == (70, 0, 70) and account(client, b) == (130, 0, 130)
    tx = client.get("/v1/dist-transactions/order-1").json()
    assert tx["events"][-1]["event"] == "committed" and len(tx["participants"]) == 2
    problem(client.get("/v1/dist-transactions/nope"), 404, "unknown_dist_transaction")
    problem(client.post("/v1/dist-transactions", json={"xid": "bad", "legs": []}), 422, "invalid_legs")
    # Stepwise: decide, then complete.
    client.post("/v1/dist-transactions", json={"xid": "order-2", "legs": legs})
    problem(client.post("/v1/dist-transactions/order-2/commit"), 409, "dist_transaction_not_ready")
    client.post("/v1/dist-transactions/order-2/prepare")
    assert client.post("/v1/dist-transactions/order-2/decide", json={"decision": "abort"}).json()["state"] == "aborting"
    assert client.post("/v1/dist-transactions/order-2/complete").json()["state"] == "aborted"
    problem(client.post("/v1/dist-transactions/order-2/commit"), 409, "dist_transaction_aborted")


def test_external_participant_over_http(client, accounts):
    a, _b = accounts
    legs = [{"tenant_id": "acme", "account_id": a, "amount": -10}]
    v = client.post("/v1/external-transactions/ext-9/prepare", json={"legs": legs, "timeout_seconds": 30})
    assert v.status_code == 200 and v.json()["vote"] == "yes", v.text
    assert client.post("/v1/external-transactions/ext-9/commit").json()["state"] == "committed"
    assert client.post("/v1/external-transactions/ext-9/commit").json()["replayed"] is True
    no = client.post(
        "/v1/external-transactions/ext-10/prepare",
        json={"legs": [{"tenant_id": "acme", "account_id": a, "amount": -1000}]},
    ).json()
    assert (no["vote"], no["state"]) == ("no", "aborted")
    assert client.post("/v1/external-transactions/ext-11/abort").json() == {
        "xid": "ext-11",
        "state": "aborted",
        "replayed": False,
    }
    problem(client.post("/v1/external-transactions/ext-12/commit"), 404, "unknown_dist_transaction")


def test_tenant_consumer_key_reserves_its_own_holds_only(client, accounts, dsn):
    a, _ = accounts
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT credits.create_tenant('beta', 'Beta')")
        acme = conn.execute(
            "SELECT api_key FROM auth.create_key('acme', 'c', ARRAY['consumer'], 'kc', 100, 100)"
        ).fetchone()[0]
        beta = conn.execute(
            "SELECT api_key FROM auth.create_key('beta', 'c', ARRAY['consumer'], 'kb', 100, 100)"
        ).fetchone()[0]
    as_acme = {"Authorization": f"Bearer {acme}"}
    as_beta = {"Authorization": f"Bearer {beta}"}
    r = client.post(f"/v1/tenants/acme/accounts/{a}/holds", json={"amount": 5}, headers={**as_acme, **key("t1")})
    assert r.status_code == 201, r.text
    hold = r.json()["hold_id"]
    assert client.get(f"/v1/tenants/acme/holds/{hold}", headers=as_acme).status_code == 200
    # Another tenant's key: the tenant in the path is unknown to it.
    assert client.post(f"/v1/tenants/acme/holds/{hold}/commit", headers=as_beta).status_code == 404
    problem(client.post(f"/v1/tenants/beta/holds/{hold}/commit", headers=as_beta), 404, "unknown_hold")
    assert client.post(f"/v1/tenants/acme/holds/{hold}/commit", headers=as_acme).json()["captured"] == 5
    # Distributed and external transactions span tenants: operator keys only.
    legs = [{"tenant_id": "acme", "account_id": a, "amount": -1}]
    assert client.post("/v1/dist-transactions", json={"xid": "t-x", "legs": legs}, headers=as_acme).status_code == 403
    assert client.post("/v1/external-transactions/t-e/prepare", json={"legs": legs}, headers=as_acme).status_code == 403
