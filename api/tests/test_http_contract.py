"""The HTTP contract under hostile input: every refusal is problem+json 4xx and changes nothing."""

from __future__ import annotations

import psycopg
import pytest

PROBLEM = "application/problem+json"


def ledger(dsn: str) -> tuple:
    with psycopg.connect(dsn) as conn:
        return tuple(
            conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("credits.accounts", "credits.entries", "credits.holds", "auth.keys")
        )


def post_raw(client, path: str, body: bytes, content_type: str = "application/json", key: str = "k"):
    return client.post(path, content=body, headers={"Content-Type": content_type, "Idempotency-Key": key})


JSON_ROUTES = [
    "/v1/tenants/acme/accounts/{a}/consume",
    "/v1/tenants/acme/accounts/{a}/grants",
    "/v1/tenants/acme/accounts/{a}/holds",
    "/v1/tenants/acme/transfers",
    "/v1/tenants/acme/keys",
    "/v1/tenants/acme/accounts/{a}/card-top-ups",
]


@pytest.mark.parametrize("levels", [33, 1000, 100_000])
@pytest.mark.parametrize("route", JSON_ROUTES)
def test_deeply_nested_json_is_a_400_problem(client, accounts, dsn, route, levels):
    before = ledger(dsn)
    body = b'{"amount":' + b"[" * levels + b"]" * levels + b"}"
    r = post_raw(client, route.format(a=accounts[0]), body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["sqlstate"] == "SX309" and "nests deeper than 32" in r.json()["detail"]
    assert ledger(dsn) == before


def test_nesting_within_the_limit_reaches_validation(client, accounts):
    body = b'{"amount":' + b"[" * 31 + b"]" * 31 + b"}"
    r = post_raw(client, f"/v1/tenants/acme/accounts/{accounts[0]}/consume", body)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text


@pytest.mark.parametrize("amount", ['"5"', '"1e3"', "1e3", "5.0", "true"])
@pytest.mark.parametrize("route", JSON_ROUTES[:3])
def test_numbers_are_strictly_typed(client, accounts, dsn, route, amount):
    before = ledger(dsn)
    r = post_raw(client, route.format(a=accounts[0]), b'{"amount": %s}' % amount.encode())
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert r.json()["type"].endswith("#invalid_request") and "amount" in r.json()["detail"]
    assert ledger(dsn) == before


def test_duplicate_members_are_refused(client, accounts, dsn):
    before = ledger(dsn)
    r = post_raw(client, f"/v1/tenants/acme/accounts/{accounts[0]}/consume", b'{"amount": 1, "amount": 2}')
    assert r.status_code == 400 and r.json()["sqlstate"] == "SX309" and "'amount' appears twice" in r.json()["detail"]
    assert ledger(dsn) == before


@pytest.mark.parametrize("body", [b'{"amount": 1', b'{"amount": NaN}', b"\xff\xfe", b'{"amount": Infinity}'])
def test_malformed_json_is_a_400_problem(client, accounts, body):
    r = post_raw(client, f"/v1/tenants/acme/accounts/{accounts[0]}/consume", body)
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM and r.json()["sqlstate"] == "SX309"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""])
def test_a_body_that_is_not_json_is_a_415(client, accounts, dsn, content_type):
    before = ledger(dsn)
    r = post_raw(client, f"/v1/tenants/acme/accounts/{accounts[0]}/consume", b'{"amount": 1}', content_type)
    assert r.status_code == 415 and r.headers["content-type"] == PROBLEM, r.text
    assert r.json()["sqlstate"] == "SX310"
    assert ledger(dsn) == before
    ok = post_raw(
        client, f"/v1/tenants/acme/accounts/{accounts[0]}/consume", b'{"amount": 1}', "application/json; charset=utf-8"
    )
    assert ok.status_code == 201, ok.text


@pytest.mark.parametrize("expires_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_refused_key_is_not_stored(client, tenant, dsn, expires_at):
    before = ledger(dsn)
    r = client.post(
        "/v1/tenants/acme/keys",
        json={"name": "k", "roles": ["consumer"], "expires_at": expires_at},
        headers={"Idempotency-Key": "key-1"},
    )
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    assert ledger(dsn) == before
    assert client.get("/v1/tenants/acme/keys").status_code == 200


def test_a_key_reused_by_another_operation_is_409(client, accounts, dsn):
    a1, a2 = accounts
    assert (
        client.post(
            f"/v1/tenants/acme/accounts/{a1}/consume", json={"amount": 1}, headers={"Idempotency-Key": "x"}
        ).status_code
        == 201
    )
    before = ledger(dsn)
    r = client.post(
        "/v1/tenants/acme/transfers",
        json={"from_account": a1, "to_account": a2, "amount": 1},
        headers={"Idempotency-Key": "x"},
    )
    assert r.status_code == 409 and r.json()["sqlstate"] == "SX005", r.text
    assert ledger(dsn) == before


def test_a_card_replay_with_another_card_sharing_the_last_four_is_409(client, accounts):
    path = f"/v1/tenants/acme/accounts/{accounts[0]}/card-top-ups"
    first = client.post(
        path, json={"amount": 5, "card_number": "4111111111111111", "expiry": "12/29"}, headers={"Idempotency-Key": "c"}
    )
    assert first.status_code == 201, first.text
    for other in (
        {"card_number": "4000000000061111", "expiry": "12/29"},
        {"card_number": "4111111111111111", "expiry": "11/29"},
    ):
        r = client.post(path, json={"amount": 5, **other}, headers={"Idempotency-Key": "c"})
        assert r.status_code == 409 and r.json()["sqlstate"] == "SX005", r.text


def test_rate_limit_headers_on_keyed_answers_and_429(client, tenant):
    made = client.post(
        "/v1/tenants/acme/keys",
        json={"name": "slow", "roles": ["consumer"], "rate_per_s": 0.5, "burst": 2},
        headers={"Idempotency-Key": "slow"},
    ).json()
    seen = []
    for _ in range(4):
        r = client.get("/v1/tenants/acme/accounts", headers={"Authorization": f"Bearer {made['api_key']}"})
        seen.append(r)
        if r.status_code == 429:
            break
    ok, limited = seen[0], seen[-1]
    assert ok.status_code == 200 and ok.headers["RateLimit-Limit"] == "2"
    assert int(ok.headers["RateLimit-Remaining"]) in (0, 1) and int(ok.headers["RateLimit-Reset"]) >= 0
    assert limited.status_code == 429 and limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["Retry-After"]) >= 1 and limited.headers["RateLimit-Limit"] == "2"
    assert "RateLimit-Limit" not in client.get("/health/live").headers


def test_openapi_describes_the_headers_sent(client):
    doc = client.get("/docs/openapi.json").json()
    consume = doc["paths"]["/v1/tenants/{tenant_id}/accounts/{account_id}/consume"]["post"]["responses"]
    assert {"Location", "Idempotent-Replayed", "RateLimit-Limit"} <= set(consume["201"]["headers"])
    assert {"Retry-After", "RateLimit-Reset"} <= set(consume["429"]["headers"])
    assert "415" in consume and "400" in consume


def test_problem_types_resolve_to_the_errors_page(client, accounts):
    r = client.post(
        f"/v1/tenants/acme/accounts/{accounts[0]}/consume", json={"amount": 10**6}, headers={"Idempotency-Key": "big"}
    )
    problem = r.json()
    assert problem["type"] == "/docs/errors#insufficient_funds"
    assert problem["instance"] == f"/v1/tenants/acme/accounts/{accounts[0]}/consume"
    page, name = problem["type"].split("#")
    html = client.get(page, headers={"Authorization": ""})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    for name in (
        "insufficient_funds",
        "invalid_json",
        "unsupported_media_type",
        "invalid_request",
        "database_unavailable",
        "internal_error",
    ):
        assert f'id="{name}"' in html.text


# Headers the API itself sets (Litestar's and uvicorn's own, like content-type, are the transport's).
API_HEADERS = {
    "location",
    "idempotent-replayed",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "x-request-id",
    "www-authenticate",
}


def test_every_header_and_status_sent_is_documented(client, accounts):
    doc = client.get("/docs/openapi.json").json()["paths"]
    a = accounts[0]
    consume = "/v1/tenants/{tenant_id}/accounts/{account_id}/consume"
    slow = client.post(
        "/v1/tenants/acme/keys",
        json={"name": "slow", "roles": ["consumer", "admin"], "rate_per_s": 0.001, "burst": 1},
        headers={"Idempotency-Key": "slow"},
    ).json()["api_key"]
    xid = "größe ü 1"  # any text: the Location header carries it percent-encoded
    calls = [
        ("post", consume, f"/v1/tenants/acme/accounts/{a}/consume", {"json": {"amount": 1}}, "c1", 201),
        ("post", consume, f"/v1/tenants/acme/accounts/{a}/consume", {"json": {"amount": 1}}, "c1", 201),
        ("post", consume, f"/v1/tenants/acme/accounts/{a}/consume", {"json": {"amount": 10**6}}, "c2", 409),
        ("post", consume, f"/v1/tenants/acme/accounts/{a}/consume", {"json": {"amount": 0}}, "c3", 422),
        ("post", consume, f"/v1/tenants/acme/accounts/{a}/consume", {"content": b"amount=1"}, "c4", 415),
        ("post", consume, f"/v1/tenants/acme/accounts/{a}/consume", {"content": b"{"}, "c5", 400),
        ("get", "/v1/tenants/{tenant_id}/accounts", "/v1/tenants/acme/accounts", {}, None, 200),
        ("get", "/v1/tenants/{tenant_id}/accounts/{account_id}", "/v1/tenants/acme/accounts/999999", {}, None, 404),
        ("put", "/v1/tenants/{tenant_id}", "/v1/tenants/acme", {"json": {"name": "Acme"}}, None, 201),
        ("get", "/health/live", "/health/live", {}, None, 200),
        ("post", "/v1/dist-transactions", "/v1/dist-transactions", {"json": {"xid": xid, "legs": [
            {"tenant_id": "acme", "account_id": a, "amount": -1}, {"tenant_id": "acme", "account_id": accounts[1],
                                                                    "amount": 1}]}}, None, 201),
    ]  # fmt: skip
    for method, template, url, kwargs, key, status in calls:
        headers = {"Idempotency-Key": key} if key else {}
        if "content" in kwargs:
            headers["Content-Type"] = "text/plain" if kwargs["content"] == b"amount=1" else "application/json"
        r = client.request(method, url, headers=headers, **kwargs)
        assert r.status_code == status, (url, r.text)
        _documented(doc, method, template, r)
    # A replay says so; a non-latin-1 xid is percent-encoded and leads back to its transaction.
    created = client.post(
        f"/v1/tenants/acme/accounts/{a}/consume", json={"amount": 1}, headers={"Idempotency-Key": "c1"}
    )
    assert created.headers["Idempotent-Replayed"] == "true"
    begun = client.post("/v1/dist-transactions", json=calls[-1][3]["json"])
    assert begun.status_code == 201 and "%C3%B6" in begun.headers["Location"], begun.headers
    assert client.get(begun.headers["Location"]).json()["xid"] == xid
    # Refusals of authentication and of the rate limit.
    for auth, status in ((f"Bearer {slow}", 200), (f"Bearer {slow}", 429), ("", 401), ("Bearer sx_nope", 401)):
        r = client.get("/v1/tenants/acme/accounts", headers={"Authorization": auth})
        assert r.status_code == status, r.text
        _documented(doc, "get", "/v1/tenants/{tenant_id}/accounts", r)


def _documented(doc: dict, method: str, template: str, r) -> None:
    responses = doc[template][method]["responses"]
    assert str(r.status_code) in responses, f"{method} {template}: {r.status_code} is not documented"
    documented = {h.lower() for h in responses[str(r.status_code)].get("headers") or {}}
    sent = {h.lower() for h in r.headers} & API_HEADERS
    assert sent <= documented, f"{method} {template} {r.status_code}: {sent - documented} sent, not documented"


def test_the_refusal_limits_429_is_documented_even_without_a_key(app_dsn):
    """Every authenticated operation documents 429 with Retry-After and RateLimit-*: the per-network
    limit of 401/403 answers gives it to a caller without a key too."""
    from litestar.testing import TestClient

    from shieldx.app import create_app
    from shieldx.config import Settings

    settings = Settings(database_url=app_dsn, pool_min=1, pool_max=2, auth_failure_rate=0.001, auth_failure_burst=2)
    with TestClient(create_app(settings)) as c:
        doc = c.get("/docs/openapi.json").json()["paths"]
        answers = [c.post("/v1/tenants/acme/transfers", json={}) for _ in range(3)]
        assert [r.status_code for r in answers] == [401, 401, 429]
        limited = answers[-1]
        assert {"retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(limited.headers)
        for r in answers:
            _documented(doc, "post", "/v1/tenants/{tenant_id}/transfers", r)
        for path, item in doc.items():
            for method, op in item.items():
                if op.get("security"):
                    assert {"Retry-After", "RateLimit-Limit"} <= set(op["responses"]["429"]["headers"]), (path, method)
