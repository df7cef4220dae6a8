"""HTTP API: one SQL call per route, named errors as problem+json."""

from __future__ import annotations

import pytest

from shieldx.errors import catalog

PROBLEM = "application/problem+json"


def key(k: str) -> dict[str, str]:
    return {"Idempotency-Key": k}


def test_tenant_put_is_idempotent(client):
    assert client.put("/v1/tenants/acme", json={"name": "Acme"}).status_code == 201
    again = client.put("/v1/tenants/acme", json={"name": "Acme"})
    assert (
        again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true" and again.json()["replayed"] is True
    )
    clash = client.put("/v1/tenants/acme", json={"name": "Other"})
    assert clash.status_code == 409 and clash.json()["type"] == "/docs/errors#already_exists"


def test_consume_and_read_balance(client, accounts):
    a, _ = accounts
    r = client.post(f"/v1/tenants/acme/accounts/{a}/consume", json={"amount": 30, "reason": "scan"}, headers=key("c1"))
    assert r.status_code == 201 and "Idempotent-Replayed" not in r.headers
    # The movement's Location is its journal entry.
    entry = client.get(r.headers["Location"])
    assert entry.status_code == 200 and entry.json()["entry_id"] == r.json()["entry_id"]
    assert entry.json()["amount"] == -30 and entry.json()["idem_key"] == "c1"
    body = r.json()
    assert (body["amount"], body["balance_after"], body["replayed"]) == (-30, 70, False)
    acc = client.get(f"/v1/tenants/acme/accounts/{a}").json()
    assert (acc["balance"], acc["held"], acc["available"]) == (70, 0, 70)


def test_replay_by_header_returns_original(client, accounts):
    a, _ = accounts
    first = client.post(f"/v1/tenants/acme/accounts/{a}/consume", json={"amount": 5}, headers=key("same"))
    again = client.post(f"/v1/tenants/acme/accounts/{a}/consume", json={"amount": 5}, headers=key("same"))
    assert again.json()["replayed"] is True and again.json()["entry_id"] == first.json()["entry_id"]
    assert client.get(f"/v1/tenants/acme/accounts/{a}").json()["balance"] == 95
    clash = client.post(f"/v1/tenants/acme/accounts/{a}/consume", json={"amount": 6}, headers=key("same"))
    assert clash.status_code == 409
    assert clash.json()["type"] == "/docs/errors#idempotency_conflict"


@pytest.mark.parametrize(
    "path,body,headers,status,name",
    [
        ("/v1/tenants/acme/accounts/{a}/consume", {"amount": 1000}, key("x1"), 409, "insufficient_funds"),
        ("/v1/tenants/acme/accounts/999999/consume", {"amount": 1}, key("x2"), 404, "unknown_account"),
        ("/v1/tenants/zeta/accounts/{a}/consume", {"amount": 1}, key("x3"), 404, "unknown_account"),
        ("/v1/tenants/acme/accounts/{a}/consume", {"amount": 0}, key("x4"), 422, "invalid_amount"),
        ("/v1/tenants/acme/accounts/{a}/consume", {"amount": -5}, key("x5"), 422, "invalid_amount"),
        ("/v1/tenants/acme/accounts/{a}/consume", {"amount": 1}, {}, 422, "invalid_idempotency_key"),
        ("/v1/tenants/acme/accounts/{a}/consume", {"amount": "one"}, key("x6"), 422, "invalid_request"),
        ("/v1/tenants/acme/accounts/{a}/consume", {"amount": 1, "extra": 1}, key("x7"), 422, "invalid_request"),
        ("/v1/tenants/acme/accounts/{a}/consume", {"amount": 2**70}, key("x8"), 422, None),
        (
            "/v1/tenants/acme/transfers",
            {"from_account": "{a}", "to_account": "{a}", "amount": 1},
            key("x9"),
            422,
            "same_account",
        ),
    ],
)
def test_errors_map_to_problem_json(client, accounts, path, body, headers, status, name):
    a, _ = accounts
    body = {k: (a if v == "{a}" else v) for k, v in body.items()}
    r = client.post(path.format(a=a), json=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    problem = r.json()
    assert problem["status"] == status
    if name:
        assert problem["type"] == f"/docs/errors#{name}"
    assert client.get(f"/v1/tenants/acme/accounts/{a}").json()["balance"] == 100


def test_malformed_json_is_a_client_error(client, accounts):
    a, _ = accounts
    r = client.post(
        f"/v1/tenants/acme/accounts/{a}/consume",
        content=b"{not json",
        headers={**key("m1"), "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["type"] == "/docs/errors#invalid_json"
    assert r.headers["content-type"].startswith(PROBLEM)


def test_transfer_and_entries_pagination(client, accounts):
    a, b = accounts
    for i in range(5):
        r = client.post(
            "/v1/tenants/acme/transfers", json={"from_account": a, "to_account": b, "amount": 1}, headers=key(f"t{i}")
        )
        assert r.status_code == 201, r.text
        assert client.get(r.headers["Location"]).json()["entry_id"] == r.json()["debit_entry_id"]
    page = client.get(f"/v1/tenants/acme/accounts/{a}/entries", params={"limit": 4}).json()
    assert [e["seq"] for e in page["items"]] == [6, 5, 4, 3] and page["next_cursor"] == 3
    rest = client.get(f"/v1/tenants/acme/accounts/{a}/entries", params={"limit": 4, "cursor": 3}).json()
    assert [e["seq"] for e in rest["items"]] == [2, 1] and rest["next_cursor"] is None
    assert client.get(f"/v1/tenants/acme/accounts/{a}/entries", params={"limit": 0}).status_code == 422


def test_accounts_listing_and_status(client, accounts):
    a, b = accounts
    listing = client.get("/v1/tenants/acme/accounts").json()
    assert [x["account_id"] for x in listing["items"]] == [a, b]
    r = client.post(f"/v1/tenants/acme/accounts/{a}/status", json={"status": "frozen"})
    assert r.status_code == 200 and r.json()["changed"] is True
    refused = client.post(f"/v1/tenants/acme/accounts/{a}/consume", json={"amount": 1}, headers=key("fz"))
    assert refused.status_code == 409 and refused.json()["type"] == "/docs/errors#account_not_open"


def test_every_catalog_error_has_a_status(client, accounts):
    assert catalog.by_sqlstate, "catalog loaded from ops.error_codes()"
    for name, status, title in catalog.by_sqlstate.values():
        assert 400 <= status < 600 and name and title


def test_health(client):
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True and ready.json()["is_primary"] is True


def test_readiness_reports_pending_migrations(client, dsn):
    """Checked at start-up, then again once the last check is SCHEMA_CHECK_S old (a schema rolled back under it)."""
    import time

    import psycopg

    from shieldx.routes.health import SCHEMA_CHECK_S

    assert client.get("/health/ready").status_code == 200
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM public._yoyo_migration WHERE migration_id = '0004_credits'")
    time.sleep(SCHEMA_CHECK_S + 0.2)
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["migrations_pending"] == ["0004_credits"]
    assert r.json()["reason"] == "migrations pending"


def test_openapi_and_docs_are_served(client):
    spec = client.get("/docs/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert "/v1/tenants/{tenant_id}/accounts/{account_id}/consume" in paths
    assert client.get("/docs").status_code == 200


def test_oversized_body_is_refused(client, accounts):
    a, _ = accounts
    r = client.post(
        f"/v1/tenants/acme/accounts/{a}/consume",
        content=b'{"amount": 1, "reason": "' + b"x" * 2_000_000 + b'"}',
        headers={**key("big"), "content-type": "application/json"},
    )
    assert r.status_code == 413
