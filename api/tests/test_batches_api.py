"""POST /v1/tenants/{tenant}/batches: many ledger operations in one request."""

from __future__ import annotations

import asyncio

import psycopg
from litestar.testing import TestClient

from shieldx.app import create_app
from shieldx.auth import LEASE_S, KeyAuth, Principal, _Entry
from shieldx.config import Settings
from shieldx.db import Database, make_pool

PROBLEM = "application/problem+json"
URL = "/v1/tenants/acme/batches"


def consume(acc: int, amount: int, key: str) -> dict:
    return {"op": "consume", "account_id": acc, "amount": amount, "idempotency_key": key}


def make_key(client, roles: list[str], idem: str) -> dict[str, str]:
    r = client.post("/v1/tenants/acme/keys", json={"name": idem, "roles": roles}, headers={"Idempotency-Key": idem})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


def balances(client, ids: list[int]) -> list[int]:
    return [client.get(f"/v1/tenants/acme/accounts/{a}").json()["balance"] for a in ids]


def problem(r, status: int, name: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["type"] == f"/docs/errors#{name}", body
    return body


def test_a_non_atomic_batch_answers_each_item(client, accounts):
    a, b = accounts
    items = [
        consume(a, 30, "c1"),
        consume(a, 500, "c2"),
        {"op": "transfer", "from_account": a, "to_account": b, "amount": 20, "idempotency_key": "t1"},
        {"op": "reserve", "account_id": b, "amount": 10, "idempotency_key": "r1", "ttl_seconds": 60},
        {"op": "grant", "account_id": b, "amount": 5, "idempotency_key": "bonus-1", "reason": "bonus"},
    ]
    r = client.post(URL, json={"items": items, "atomic": False})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(i["item"], i["status"], i["sqlstate"]) for i in body["items"]] == [
        (0, "applied", None),
        (1, "refused", "SX004"),
        (2, "applied", None),
        (3, "applied", None),
        (4, "applied", None),
    ]
    assert (body["applied"], body["replayed"], body["refused"]) == (4, 0, 1)
    assert body["items"][1]["result"]["error"] == "insufficient_funds"
    assert body["items"][2]["result"]["from_balance_after"] == 50
    hold = body["items"][3]["result"]["hold_id"]
    # The same batch again: every applied item is a replay, nothing changes.
    again = client.post(URL, json={"items": items, "atomic": False}).json()
    assert [i["status"] for i in again["items"]] == ["replayed", "refused", "replayed", "replayed", "replayed"]
    assert balances(client, [a, b]) == [50, 125]
    # Holds resolve in a batch too; the single route replays what the batch did.
    done = client.post(URL, json={"items": [{"op": "commit", "hold_id": hold, "amount": 4}]}).json()
    assert done["items"][0]["result"]["captured"] == 4
    single = client.post(f"/v1/tenants/acme/holds/{hold}/commit", json={"amount": 4})
    assert single.status_code == 200 and single.json()["replayed"], single.text


def test_a_batch_reserves_and_commits_a_hold_by_its_key(client, accounts):
    a, _ = accounts
    items = [
        {"op": "reserve", "account_id": a, "amount": 30, "idempotency_key": "trip-1", "ttl_seconds": 60},
        {"op": "commit", "hold_key": "trip-1", "amount": 20},
    ]
    r = client.post(URL, json={"items": items})
    assert r.status_code == 200, r.text
    reserved, committed = r.json()["items"]
    assert committed["result"]["hold_id"] == reserved["result"]["hold_id"]
    assert committed["result"]["captured"] == 20 and balances(client, [a]) == [80]
    both = {"op": "abort", "hold_id": reserved["result"]["hold_id"], "hold_key": "trip-1"}
    body = problem(client.post(URL, json={"items": [both]}), 422, "invalid_batch")
    assert "one of the two" in body["detail"]


def test_an_atomic_batch_applies_all_or_nothing(client, accounts):
    a, b = accounts
    r = client.post(URL, json={"items": [consume(a, 10, "x1"), consume(b, 1000, "x2")]})
    body = problem(r, 409, "batch_item_refused")
    assert body["sqlstate"] == "SX121"
    assert (body["facts"]["item"], body["facts"]["sqlstate"], body["facts"]["name"]) == (
        1,
        "SX004",
        "insufficient_funds",
    )
    assert balances(client, [a, b]) == [100, 100]
    ok = client.post(URL, json={"items": [consume(a, 10, "x1"), consume(b, 10, "x2")]})
    assert ok.status_code == 200 and ok.json()["applied"] == 2


def test_each_item_needs_the_role_of_its_single_route(client, accounts):
    a, b = accounts
    consumer = make_key(client, ["consumer"], "k-consumer")
    grant = {"op": "grant", "account_id": a, "amount": 5, "idempotency_key": "g"}
    r = client.post(URL, json={"items": [consume(a, 1, "c"), grant]}, headers=consumer)
    body = problem(r, 403, "forbidden")
    assert "item 1 (grant)" in body["detail"] and "billing" in body["detail"]
    assert balances(client, [a, b]) == [100, 100]
    assert client.post(URL, json={"items": [consume(a, 1, "c")]}, headers=consumer).status_code == 200
    auditor = make_key(client, ["auditor"], "k-auditor")
    problem(client.post(URL, json={"items": [consume(a, 1, "d")]}, headers=auditor), 403, "forbidden")


def test_bad_batches_apply_nothing(client, accounts):
    a, _ = accounts
    good = consume(a, 1, "good")
    problem(client.post(URL, json={"items": [good, {"op": "refund", "account_id": a}]}), 422, "invalid_request")
    problem(client.post(URL, json={"items": [good, {**good, "amunt": 1}]}), 422, "invalid_request")
    body = problem(client.post(URL, json={"items": [good, {**good, "amount": 2}]}), 422, "invalid_batch")
    assert body["facts"] == {"item": 1, "first_item": 0}
    many = [consume(a, 1, f"k{i}") for i in range(1001)]
    problem(client.post(URL, json={"items": many}), 422, "invalid_batch")
    problem(client.post(URL, json={"items": []}), 422, "invalid_batch")
    assert balances(client, [a]) == [100]


def test_a_body_beyond_the_size_limit_is_413(app_dsn, operator_key, accounts):
    a, _ = accounts
    app = create_app(Settings(database_url=app_dsn, pool_min=1, pool_max=2, max_body_bytes=4096))
    with TestClient(app) as small:
        small.headers["Authorization"] = f"Bearer {operator_key}"
        items = [consume(a, 1, f"key-{i:04d}") for i in range(100)]
        problem(small.post(URL, json={"items": items}), 413, "too_large")
        assert balances(small, [a]) == [100]


def test_openapi_documents_every_answer_of_the_batch_route(client):
    op = client.get("/docs/openapi.json").json()["paths"]["/v1/tenants/{tenant_id}/batches"]["post"]
    assert {"200", "403", "409", "413", "422", "429"} <= set(op["responses"])
    assert "one token per item" in op["responses"]["429"]["description"]
    assert {"Retry-After", "RateLimit-Remaining"} <= set(op["responses"]["429"]["headers"])
    for code in ("SX004", "SX005", "SX101", "SX104"):
        assert code in op["description"]
    for name in ("batch_item_refused", "batch_key_contended"):
        assert name in op["responses"]["409"]["description"]
    assert "invalid_batch" in op["responses"]["422"]["description"]


def test_a_batch_costs_one_rate_limit_token_per_item_taken_all_or_none(client, accounts, db, monkeypatch):
    # Leases outlive the test, so a token this process holds is counted where it is (the bucket or the lease).
    monkeypatch.setattr("shieldx.auth.LEASE_S", 600.0)
    a, b = accounts
    key = client.post(
        "/v1/tenants/acme/keys",
        json={"name": "k-batch", "roles": ["consumer"], "rate_per_s": 0.01, "burst": 10},
        headers={"Idempotency-Key": "k-batch"},
    ).json()
    headers = {"Authorization": f"Bearer {key['api_key']}"}

    def bucket() -> float:
        return db.execute("SELECT tokens FROM auth.buckets WHERE key_id = %s", (key["key_id"],)).fetchone()["tokens"]

    r = client.post(URL, json={"items": [consume(a, 1, f"a{i}") for i in range(4)]}, headers=headers)
    assert r.status_code == 200 and r.json()["applied"] == 4, r.text
    assert int(bucket()) == 6 and r.headers["RateLimit-Remaining"] == "6"  # 10 - 4, as 4 single calls

    r = client.post(URL, json={"items": [consume(b, 1, f"b{i}") for i in range(7)]}, headers=headers)
    body = problem(r, 429, "rate_limited")
    assert "costs 7 tokens" in body["detail"]
    assert r.headers["RateLimit-Remaining"] == "6" and int(r.headers["Retry-After"]) >= 1
    assert balances(client, [a, b]) == [96, 100]  # nothing applied
    assert int(bucket()) == 5  # the request's own token waits in this process's lease: nothing taken

    r = client.post(URL, json={"items": [consume(b, 1, f"c{i}") for i in range(6)]}, headers=headers)
    assert r.status_code == 200 and r.json()["applied"] == 6, r.text
    assert int(bucket()) == 0 and r.headers["RateLimit-Remaining"] == "0"
    problem(client.get(f"/v1/tenants/acme/accounts/{a}", headers=headers), 429, "rate_limited")  # budget spent
    assert balances(client, [a, b]) == [96, 94]


def test_a_batch_beyond_the_keys_burst_is_429_without_retry_after(client, accounts, db):
    a, _ = accounts
    key = client.post(
        "/v1/tenants/acme/keys",
        json={"name": "k-small", "roles": ["consumer"], "rate_per_s": 1, "burst": 3},
        headers={"Idempotency-Key": "k-small"},
    ).json()
    headers = {"Authorization": f"Bearer {key['api_key']}"}
    r = client.post(URL, json={"items": [consume(a, 1, f"s{i}") for i in range(4)]}, headers=headers)
    body = problem(r, 429, "rate_limited")
    assert "burst of 3" in body["detail"] and "split" in body["detail"]
    assert "Retry-After" not in r.headers
    assert balances(client, [a]) == [100]
    r = client.post(URL, json={"items": [consume(a, 1, f"s{i}") for i in range(3)]}, headers=headers)
    assert r.status_code == 200 and r.json()["applied"] == 3, r.text


def test_the_catalog_has_the_batch_errors(dsn):
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT sqlstate, name, http_status FROM ops.error_catalog WHERE sqlstate LIKE 'SX12%'")
        assert {r[0]: (r[1], r[2]) for r in rows} == {
            "SX120": ("invalid_batch", 422),
            "SX121": ("batch_item_refused", 409),
            "SX122": ("batch_key_contended", 409),
        }


def test_a_lease_spends_what_is_left_of_it_first_and_nothing_after_it_ends(app_dsn, dsn):
    """KeyAuth.spend on the real limiter: a cost beyond the lease's tokens takes only the rest from the bucket;
    the tokens of an ended lease are never spent."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT credits.create_tenant('acme', 'Acme')")
        key_id = conn.execute(
            "SELECT key_id FROM auth.create_key('acme', 'k', ARRAY['consumer'], 'k-lease', 100, 50)"
        ).fetchone()[0]
    now = [0.0]

    async def go() -> list[int]:
        pool = make_pool(Settings(database_url=app_dsn, pool_min=1, pool_max=1))
        await pool.open()
        try:
            auth = KeyAuth(Database(pool), clock=lambda: now[0])
            entry = _Entry(Principal(key_id, "acme", frozenset({"consumer"})), b"", 1e9, 100.0, 50.0)
            assert entry.lease_size == 5
            seen = []
            await auth.spend(entry, "/")  # leases 5, spends 1
            seen.append(entry.tokens)
            await auth.spend(entry, "/", 7)  # the 4 left, and 3 more (plus a lease of 4)
            seen.append(entry.tokens)
            now[0] += 2 * LEASE_S  # the lease ends: its 4 tokens with it
            await auth.spend(entry, "/", 2)  # leases 2 - 1 + 5 = 6, spends 2
            seen.append(entry.tokens)
            return seen
        finally:
            await pool.close()

    assert asyncio.run(go()) == [4, 4, 4]
