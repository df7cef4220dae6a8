"""Access control over HTTP: keys, roles, tenant isolation, rate limits, 413, default deny."""

from __future__ import annotations

import logging
import re
import time

import psycopg
import pytest
from litestar.testing import TestClient

from shieldx.app import create_app
from shieldx.config import Settings

PROBLEM = "application/problem+json"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_key(client, tenant: str, roles: list[str], idem: str, **extra) -> str:
    r = client.post(
        f"/v1/tenants/{tenant}/keys", json={"name": idem, "roles": roles, **extra}, headers={"Idempotency-Key": idem}
    )
    assert r.status_code == 201, r.text
    return r.json()["api_key"]


@pytest.fixture
def two_tenants(client, accounts) -> dict[str, object]:
    """acme (from `accounts`) and zeta, each with one funded account."""
    assert client.put("/v1/tenants/zeta", json={"name": "Zeta"}).status_code == 201
    z = client.post("/v1/tenants/zeta/accounts", json={"name": "z0"}, headers={"Idempotency-Key": "z0"}).json()
    client.post(
        f"/v1/tenants/zeta/accounts/{z['account_id']}/grants", json={"amount": 100}, headers={"Idempotency-Key": "zg0"}
    )
    return {"acme": accounts, "zeta": [z["account_id"]]}


def _is_401(r) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["type"] == "/docs/errors#unauthenticated" and body["sqlstate"] == "SX301"
    # It says how to get a key: a `help` member naming the docs' section, repeated in the detail.
    assert body["help"] == "docs/access-control.md#getting-a-key"
    assert body["help"] in body["detail"] and "Authorization: Bearer" in body["detail"]


def test_requests_without_a_valid_key_are_refused_alike_and_counted(client, accounts, db, caplog):
    a = accounts[0]
    good = make_key(client, "acme", ["consumer"], "k-good")
    key_id = good.split("_")[1]
    wrong_secret = f"sx_{key_id}_{'0' * 64}"
    url = f"/v1/tenants/acme/accounts/{a}"
    caplog.set_level(logging.WARNING, logger="shieldx.auth")
    answers = []
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        bearer("sx_nope"),
        bearer(f"sx_000000000000_{'a' * 64}"),
        bearer(wrong_secret),
    ):
        r = client.get(url, headers=headers)
        _is_401(r)
        answers.append(dict(r.json().items()))
    assert all(x == answers[0] for x in answers), "every failure must look the same to the caller"
    # Counted in memory: no database write per failure ...
    assert db.execute("SELECT count(*) AS n FROM auth.failures").fetchone()["n"] == 0
    # ... then recorded in one write (real key ids only), and logged without any secret.
    assert client.blocking_portal.call(client.app.state.auth.flush) == 5  # 3 malformed, unknown_key, bad_secret
    assert client.blocking_portal.call(client.app.state.auth.flush) == 0  # nothing new
    counts = {(r["reason"], r["key_id"]): r["failures"] for r in db.execute("SELECT * FROM auth.failure_counts()")}
    assert counts[("bad_secret", key_id)] == 1
    assert counts[("unknown_key", None)] == 1
    assert "0" * 64 not in caplog.text and "a" * 64 not in caplog.text
    assert "reason=bad_secret" in caplog.text and f"key_id={key_id}" in caplog.text
    assert client.get(url, headers=bearer(good)).status_code == 200


def test_missing_header_is_401(app_dsn, operator_key):
    with TestClient(create_app(Settings(database_url=app_dsn, pool_min=1, pool_max=2))) as anon:
        _is_401(anon.get("/v1/tenants/acme/accounts"))
        # X-API-Key works as well as Authorization: Bearer.
        assert anon.get("/v1/tenants/acme/accounts", headers={"X-API-Key": operator_key}).status_code == 404
        _is_401(anon.get("/v1/tenants/acme/accounts", headers={"X-API-Key": operator_key[:-1] + "x"}))
        assert anon.get("/health/live").status_code == 200  # public
        assert anon.get("/metrics").status_code == 200
        assert anon.get("/docs/openapi.json").status_code == 200


ROLE_CASES = [
    # (roles, method, path, body, expected status)
    (["consumer"], "post", "/accounts/{a}/consume", {"amount": 1}, 201),
    (["consumer"], "get", "/accounts/{a}", None, 200),
    (["consumer"], "get", "/accounts/{a}/entries", None, 200),
    (["consumer"], "post", "/accounts/{a}/grants", {"amount": 1}, 403),
    (["consumer"], "post", "/accounts", {"name": "x"}, 403),
    (["consumer"], "get", "/keys", None, 403),
    (["billing"], "post", "/accounts/{a}/grants", {"amount": 1}, 201),
    (["billing"], "post", "/transfers", {"from_account": "{a}", "to_account": "{b}", "amount": 1}, 201),
    (["billing"], "post", "/accounts/{a}/consume", {"amount": 1}, 403),
    (["admin"], "post", "/accounts", {"name": "x"}, 201),
    (["admin"], "post", "/accounts/{a}/status", {"status": "frozen"}, 200),
    (["admin"], "get", "/keys", None, 200),
    (["admin"], "post", "/accounts/{a}/consume", {"amount": 1}, 403),
    (["auditor"], "get", "/accounts", None, 200),
    (["auditor"], "post", "/accounts/{a}/consume", {"amount": 1}, 403),
    (["consumer", "billing"], "post", "/accounts/{a}/grants", {"amount": 1}, 201),
    (["admin", "billing", "consumer", "auditor"], "put", "", {"name": "Acme"}, 403),  # operator only
]


@pytest.mark.parametrize("roles,method,path,body,status", ROLE_CASES)
def test_every_route_checks_the_role(client, accounts, roles, method, path, body, status):
    a, b = accounts
    key = make_key(client, "acme", roles, "k-" + "-".join(roles))
    fill = lambda v: {"{a}": a, "{b}": b}.get(v, v) if isinstance(v, str) else v  # noqa: E731
    kwargs = {"headers": {**bearer(key), "Idempotency-Key": "call-1"}}
    if body is not None:
        kwargs["json"] = {k: fill(v) for k, v in body.items()}
    r = getattr(client, method)(f"/v1/tenants/acme{path.format(a=a)}", **kwargs)
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["type"] == "/docs/errors#forbidden"


def test_a_tenant_never_reaches_another_tenants_data(client, two_tenants):
    a, _ = two_tenants["acme"]
    z = two_tenants["zeta"][0]
    acme = bearer(make_key(client, "acme", ["consumer", "billing", "admin", "auditor"], "k-all"))
    before = client.get(f"/v1/tenants/zeta/accounts/{z}").json()
    # Naming the other tenant: 404, exactly as for a tenant that does not exist.
    for tenant in ("zeta", "nobody"):
        for method, path, body in [
            ("get", f"/accounts/{z}", None),
            ("get", "/accounts", None),
            ("post", f"/accounts/{z}/consume", {"amount": 1}),
            ("post", f"/accounts/{z}/grants", {"amount": 1}),
            ("get", "/keys", None),
        ]:
            r = getattr(client, method)(
                f"/v1/tenants/{tenant}{path}",
                headers={**acme, "Idempotency-Key": "x"},
                **({"json": body} if body else {}),
            )
            assert r.status_code == 404, r.text
            assert r.json()["type"] == "/docs/errors#unknown_tenant"
            assert "zeta" not in r.json()["detail"] or tenant == "zeta"
    # Guessing the other tenant's ids under its own tenant: unknown (the SQL functions check the tenant).
    for guess in (z, z + 1, a + 100):
        r = client.get(f"/v1/tenants/acme/accounts/{guess}", headers=acme)
        assert r.status_code == 404 and r.json()["type"] == "/docs/errors#unknown_account"
        r = client.post(
            f"/v1/tenants/acme/accounts/{guess}/consume",
            json={"amount": 1},
            headers={**acme, "Idempotency-Key": f"g{guess}"},
        )
        assert r.status_code == 404
        r = client.post(
            "/v1/tenants/acme/transfers",
            json={"from_account": a, "to_account": guess, "amount": 1},
            headers={**acme, "Idempotency-Key": f"t{guess}"},
        )
        assert r.status_code == 404
    assert client.get(f"/v1/tenants/zeta/accounts/{z}").json() == before
    # Another tenant's key id: unknown to this tenant's key admin too.
    zeta_key = make_key(client, "zeta", ["consumer"], "kz").split("_")[1]
    r = client.post(f"/v1/tenants/acme/keys/{zeta_key}/revoke", headers=acme)
    assert r.status_code == 404 and r.json()["type"] == "/docs/errors#unknown_key"


def test_key_lifecycle_create_list_rotate_revoke(client, accounts, db):
    a = accounts[0]
    url = f"/v1/tenants/acme/accounts/{a}"
    body = {"name": "scanner", "roles": ["consumer"], "rate_per_s": 100, "burst": 200}
    first = client.post("/v1/tenants/acme/keys", json=body, headers={"Idempotency-Key": "mk"})
    assert first.status_code == 201
    key = first.json()["api_key"]
    key_id = first.json()["key_id"]
    assert key.startswith(f"sx_{key_id}_") and len(key) == 3 + 12 + 1 + 64
    # Stored only as a hash.
    stored = db.execute("SELECT * FROM auth.keys WHERE key_id = %s", (key_id,)).fetchone()
    assert key.split("_")[2].encode() not in bytes(stored["secret_hash"]) and len(stored["secret_hash"]) == 32
    assert key not in str(stored)
    # Replay: the same key, its secret not shown again; other arguments conflict.
    again = client.post("/v1/tenants/acme/keys", json=body, headers={"Idempotency-Key": "mk"})
    assert (
        again.status_code == 201
        and again.headers["Idempotent-Replayed"] == "true"
        and again.json()["replayed"] is True
        and again.json()["api_key"] is None
    )
    clash = client.post("/v1/tenants/acme/keys", json={**body, "roles": ["admin"]}, headers={"Idempotency-Key": "mk"})
    assert clash.status_code == 409 and clash.json()["type"] == "/docs/errors#idempotency_conflict"
    # Listed masked.
    listed = client.get("/v1/tenants/acme/keys").json()["items"]
    assert [k["key_id"] for k in listed] == [key_id]
    assert listed[0]["masked"] == f"sx_{key_id}_********" and key.split("_")[2] not in str(listed)
    assert client.get(url, headers=bearer(key)).status_code == 200
    # Rotate with a grace period: both work; then the old one expires.
    rot = client.post(
        f"/v1/tenants/acme/keys/{key_id}/rotate", json={"grace_s": 60}, headers={"Idempotency-Key": "rot-1"}
    )
    assert rot.status_code == 201, rot.text
    new = rot.json()["api_key"]
    assert rot.json()["replaced_key_id"] == key_id and rot.json()["roles"] == ["consumer"]
    assert client.get(url, headers=bearer(new)).status_code == 200
    assert client.get(url, headers=bearer(key)).status_code == 200
    replay = client.post(
        f"/v1/tenants/acme/keys/{key_id}/rotate", json={"grace_s": 60}, headers={"Idempotency-Key": "rot-1"}
    )
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["key_id"] == rot.json()["key_id"]
    twice = client.post(f"/v1/tenants/acme/keys/{key_id}/rotate", json={}, headers={"Idempotency-Key": "rot-2"})
    assert twice.status_code == 409 and twice.json()["type"] == "/docs/errors#key_not_active"
    # Revoke: refused at once; revoking again changes nothing.
    new_id = rot.json()["key_id"]
    r = client.post(f"/v1/tenants/acme/keys/{new_id}/revoke")
    assert r.status_code == 200 and r.json()["changed"] is True
    assert client.post(f"/v1/tenants/acme/keys/{new_id}/revoke").json()["changed"] is False
    _is_401(client.get(url, headers=bearer(new)))
    states = {k["key_id"]: k["status"] for k in client.get("/v1/tenants/acme/keys").json()["items"]}
    assert states == {key_id: "active", new_id: "revoked"}


@pytest.mark.parametrize(
    "body,name",
    [
        ({"name": "x", "roles": []}, "invalid_role"),
        ({"name": "x", "roles": ["operator"]}, "invalid_role"),
        ({"name": "x", "roles": ["root"]}, "invalid_role"),
        ({"name": "x", "roles": ["consumer"], "rate_per_s": 0}, "invalid_rate_limit"),
        ({"name": "x", "roles": ["consumer"], "burst": 1e12}, "invalid_rate_limit"),
        ({"name": "", "roles": ["consumer"]}, "invalid_argument"),
    ],
)
def test_bad_key_arguments_are_named_errors(client, tenant, body, name):
    r = client.post("/v1/tenants/acme/keys", json=body, headers={"Idempotency-Key": "bad"})
    assert r.status_code == 422, r.text
    assert r.json()["type"] == f"/docs/errors#{name}"


def test_revocation_reaches_another_replica_within_a_lease(client, accounts, app_dsn):
    a = accounts[0]
    key = make_key(client, "acme", ["consumer"], "k-rep", rate_per_s=1000, burst=1000)
    with TestClient(create_app(Settings(database_url=app_dsn, pool_min=1, pool_max=2))) as replica:
        assert replica.get(f"/v1/tenants/acme/accounts/{a}", headers=bearer(key)).status_code == 200
        assert client.post(f"/v1/tenants/acme/keys/{key.split('_')[1]}/revoke").status_code == 200
        time.sleep(1.1)  # one lease (LEASE_S) at most
        _is_401(replica.get(f"/v1/tenants/acme/accounts/{a}", headers=bearer(key)))


def test_rate_limit_is_shared_by_replicas_and_answers_429(client, accounts, app_dsn, db):
    a = accounts[0]
    key = make_key(client, "acme", ["consumer"], "k-slow", rate_per_s=0.5, burst=4)
    url = f"/v1/tenants/acme/accounts/{a}"
    with TestClient(create_app(Settings(database_url=app_dsn, pool_min=1, pool_max=2))) as replica:
        statuses = [c.get(url, headers=bearer(key)).status_code for c in (client, replica, client, replica)]
        assert statuses == [200] * 4
        for c in (client, replica):
            r = c.get(url, headers=bearer(key))
            assert r.status_code == 429, r.text
            assert r.headers["content-type"].startswith(PROBLEM)
            assert r.json()["type"] == "/docs/errors#rate_limited"
            assert 1 <= int(r.headers["retry-after"]) <= 2
        time.sleep(2.1)  # 0.5 token/s: one more request
        assert replica.get(url, headers=bearer(key)).status_code == 200
        assert client.get(url, headers=bearer(key)).status_code == 429
    # Limits are per key: the operator's requests go on.
    assert client.get(url).status_code == 200


def test_oversized_body_is_413_and_not_processed(app_dsn, operator_key, db):
    settings = Settings(database_url=app_dsn, pool_min=1, pool_max=2, max_body_bytes=4096)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {operator_key}"
        assert c.put("/v1/tenants/acme", json={"name": "Acme"}).status_code == 201
        r = c.post("/v1/tenants/acme/accounts", json={"name": "x" * 10_000}, headers={"Idempotency-Key": "big"})
        assert r.status_code == 413, r.text
        assert r.headers["content-type"].startswith(PROBLEM)
        r = c.post(
            "/v1/tenants/acme/keys",
            json={"name": "k", "roles": ["consumer"] * 5000},
            headers={"Idempotency-Key": "big2"},
        )
        assert r.status_code == 413
    assert db.execute("SELECT count(*) AS n FROM credits.accounts").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM auth.keys WHERE tenant_id IS NOT NULL").fetchone()["n"] == 0


def test_default_deny_every_route_needs_a_key(app_dsn):
    """Walks the app's own routes (every engineer's): none answers without a key unless public."""
    app = create_app(Settings(database_url=app_dsn, pool_min=1, pool_max=2, auth_failure_burst=1e6))
    public = {"/health/live", "/health/ready", "/metrics"}
    checked = 0
    with TestClient(app) as anon:
        for route in app.routes:
            path = route.path_format
            if path.startswith("/docs") or path in public:
                continue
            for handler in getattr(route, "route_handlers", []):
                for method in handler.http_methods:
                    if method in ("HEAD", "OPTIONS"):
                        continue
                    concrete = re.sub(r"\{[^}]+\}", "1", path)
                    r = anon.request(method, concrete, json={})
                    assert r.status_code == 401, f"{method} {path} answered {r.status_code} without a key"
                    checked += 1
    assert checked >= 10


def test_openapi_documents_the_key_and_problem_answers(client):
    spec = client.get("/docs/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    op = spec["paths"]["/v1/tenants/{tenant_id}/accounts/{account_id}/consume"]["post"]
    assert op["security"] == [{"ApiKey": []}]
    for code in ("400", "401", "403", "404", "413", "422", "429", "503"):
        assert "application/problem+json" in op["responses"][code]["content"], code
    assert "Retry-After" in op["responses"]["429"]["headers"]
    assert "security" not in spec["paths"]["/health/live"]["get"]


def test_metrics_count_authentication_and_limits(client, accounts):
    def malformed(text: str) -> float:
        prefix = 'shieldx_auth_failures_total{reason="malformed"} '
        return next((float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0)

    before = client.get("/metrics").text
    client.get("/v1/tenants/acme/accounts", headers=bearer("sx_bad"))
    text = client.get("/metrics").text
    assert "shieldx_breaker_open 0.0" in text
    assert malformed(text) - malformed(before) == 1  # counters are process-wide: compare
    assert "# TYPE shieldx_auth_failures_total counter" in text
    assert "shieldx_auth_cache_hits_total" in text and "shieldx_auth_leases_total" in text


def test_operator_keys_are_minted_by_dbas_only(connect):
    app = connect("shieldx_app")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT * FROM auth.create_operator_key('evil', 'evil')")


def test_refusal_titles_come_from_the_error_catalog(app_dsn, db, operator_key):
    """The guard's refusals and the 413 carry ops.error_catalog's name, status and title, whatever they are."""
    db.execute(
        "UPDATE ops.error_catalog SET title = 'catalog says: ' || title"
        " WHERE sqlstate LIKE 'SX30_' OR sqlstate = 'SX001'"
    )
    rows = db.execute("SELECT sqlstate, name, http_status, title FROM ops.error_catalog").fetchall()
    entries = {r["sqlstate"]: r for r in rows}
    settings = Settings(database_url=app_dsn, pool_min=1, pool_max=2, max_body_bytes=4096)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {operator_key}"
        assert c.put("/v1/tenants/acme", json={"name": "Acme"}).status_code == 201
        assert c.put("/v1/tenants/zeta", json={"name": "Zeta"}).status_code == 201
        consumer = make_key(c, "acme", ["consumer"], "k-titles", rate_per_s=0.001, burst=1)
        answers = {
            "SX301": c.get("/v1/tenants/acme/accounts", headers={"Authorization": ""}),
            "SX302": c.get("/v1/tenants/acme/keys", headers=bearer(consumer)),
            "SX001": c.get("/v1/tenants/zeta/accounts", headers=bearer(consumer)),
            "SX308": c.post("/v1/tenants/acme/accounts", json={"name": "x" * 10_000}, headers=bearer(operator_key)),
        }
        c.get("/v1/tenants/acme/accounts", headers=bearer(consumer))  # may spend the one token
        answers["SX303"] = c.get("/v1/tenants/acme/accounts", headers=bearer(consumer))
    for sqlstate, r in answers.items():
        entry = entries[sqlstate]
        body = r.json()
        assert r.status_code == entry["http_status"], (sqlstate, r.text)
        assert body["title"] == entry["title"] and body["title"].startswith("catalog says: "), body
        assert body["type"] == f"/docs/errors#{entry['name']}" and body["sqlstate"] == sqlstate


def test_refusals_are_limited_per_client_network_without_asking_the_database(app_dsn, operator_key, db):
    settings = Settings(database_url=app_dsn, pool_min=1, pool_max=2, auth_failure_rate=0.001, auth_failure_burst=3)
    with TestClient(create_app(settings)) as c:
        auth = c.app.state.auth
        bad = bearer(f"sx_000000000000_{'a' * 64}")
        assert [c.get("/v1/tenants/acme/accounts", headers=bad).status_code for _ in range(3)] == [401] * 3
        verified = auth.counters["verifications"]
        flood = [c.get("/v1/tenants/acme/accounts", headers=bad) for _ in range(50)]
        assert {r.status_code for r in flood} == {429}
        assert flood[0].json()["sqlstate"] == "SX303" and int(flood[0].headers["Retry-After"]) >= 1
        assert auth.counters["verifications"] == verified  # the flood never reached the database
        assert auth.counters["refusals_limited"] == 50 and auth.counters["rate_limited"] == 50
        # A key this process verified before is not held back with its network.
        good = bearer(operator_key)
        auth.limiter.buckets.clear()
        assert c.get("/v1/audit/verify", headers=good).status_code == 200
        for _ in range(3):
            c.get("/v1/tenants/acme/accounts", headers=bad)
        assert c.get("/v1/tenants/acme/accounts", headers=bad).status_code == 429
        assert c.get("/v1/audit/verify", headers=good).status_code == 200
        # The failures were counted, then recorded in one write.
        assert db.execute("SELECT count(*) AS n FROM auth.failures").fetchone()["n"] == 0
        assert c.blocking_portal.call(auth.flush) == 6


def test_the_limiter_groups_addresses_by_network():
    from shieldx.auth import FailureLimiter

    now = [0.0]
    lim = FailureLimiter(rate=1.0, burst=2, clock=lambda: now[0])
    net = lim.network("203.0.113.5")
    assert net == lim.network("203.0.113.77") == "203.0.113.0/24"
    assert lim.network("2001:db8:1:2::1") == lim.network("2001:db8:1:ffff::9") == "2001:db8:1::/48"
    lim.spend(net)
    lim.spend(net)
    assert lim.wait_s(net) > 0 and lim.wait_s(lim.network("198.51.100.1")) == 0
    now[0] += 1.0  # one token back
    assert lim.wait_s(net) == 0


def test_the_audit_routes_are_the_operators_even_for_auditor_keys(client, accounts):
    """docs/access-control.md and docs/audit.md: the audit log spans tenants; tenant auditors read their ledger."""
    auditor = bearer(make_key(client, "acme", ["auditor"], "k-auditor"))
    for method, path in (
        ("get", "/v1/audit/verify"),
        ("post", "/v1/audit/checkpoints"),
        ("get", "/v1/audit/checkpoints/latest/export"),
    ):
        r = client.request(method.upper(), path, headers=auditor)
        assert r.status_code == 403 and r.json()["sqlstate"] == "SX302", (path, r.text)
    assert client.get(f"/v1/tenants/acme/accounts/{accounts[0]}/entries", headers=auditor).status_code == 200
    assert client.get("/v1/audit/verify").status_code == 200  # the operator
