"""Metrics, request ids and masking, in process (the real app on a real test database).

Counters here are process-wide (every app made in this test process adds to them),
so tests compare values before and after their own requests.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shieldx.observability.context import request_id_from
from shieldx.observability.logging import (
    JsonFormatter,
    JsonStreamHandler,
    access_fields,
    access_line,
    luhn_ok,
    mask_ip,
    only_json_handler,
    scrub,
    ua_family,
)
from shieldx.observability.middleware import Recorder

CONSUME = "/v1/tenants/{tenant_id}/accounts/{account_id}/consume"


def scrape(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_every_answer_carries_a_request_id(client, tenant):
    given = "client-chosen.id:42"
    r = client.get(f"/v1/tenants/{tenant}/accounts", headers={"X-Request-ID": given})
    assert r.status_code == 200 and r.headers["x-request-id"] == given
    # Errors too: an unknown route (404), a refusal from SQL (404), a bad key (401), a malformed body (422).
    for method, path, kwargs in [
        ("GET", "/no/such/route", {}),
        ("GET", "/v1/tenants/nobody/accounts/1", {}),
        ("GET", f"/v1/tenants/{tenant}/accounts", {"headers": {"Authorization": "Bearer nope"}}),
        ("POST", f"/v1/tenants/{tenant}/accounts", {"content": b"{not json"}),
    ]:
        r = client.request(method, path, **kwargs)
        assert r.status_code >= 400
        assert len(r.headers["x-request-id"]) == 32 and int(r.headers["x-request-id"], 16) >= 0
    # An unacceptable id (could end an SQL comment, too long) is replaced, never echoed.
    for bad in ("x */ DROP TABLE t; /*", "a" * 129, "with space", "100%"):
        r = client.get(f"/v1/tenants/{tenant}/accounts", headers={"X-Request-ID": bad})
        assert r.headers["x-request-id"] != bad and len(r.headers["x-request-id"]) == 32


def test_request_id_validation():
    assert request_id_from(b"0af7651916cd43dd8448eb211c80319c") == "0af7651916cd43dd8448eb211c80319c"
    assert request_id_from(b"a" * 128) == "a" * 128
    for bad in (None, b"", b"a" * 129, b"caf\xc3\xa9", b"a*/b", b"a b", b"a\nb", b"50%"):
        fresh = request_id_from(bad)
        assert len(fresh) == 32 and fresh != bad


def test_request_metrics_by_route_template(client, accounts):
    before = scrape(client)
    path = f"/v1/tenants/acme/accounts/{accounts[0]}/consume"
    for i in range(3):
        r = client.post(path, json={"amount": 1}, headers={"Idempotency-Key": f"m{i}"})
        assert r.status_code == 201, r.text
    client.request("BREW", "/no/such/route")
    after = scrape(client)
    assert value(after, "shieldx_http_requests_total", route=CONSUME, method="POST", status="201") - value(
        before, "shieldx_http_requests_total", route=CONSUME, method="POST", status="201"
    ) == pytest.approx(3)
    count = "shieldx_http_request_duration_seconds_count"
    assert value(after, count, route=CONSUME, method="POST") - value(before, count, route=CONSUME, method="POST") == 3
    # The 0.05 s bucket exists (the consume latency objective) and buckets end at 5 s.
    buckets = {dict(k[1])["le"] for k in after if k[0] == "shieldx_http_request_duration_seconds_bucket"}
    assert {"0.001", "0.05", "5.0", "+Inf"} <= buckets
    # No route matched: one fixed label, and an unknown method is "other" (bounded cardinality).
    assert value(after, "shieldx_http_requests_total", route="unmatched", method="other", status="404") >= 1
    assert not any("/no/such/route" in str(k) for k in after)
    assert value(after, "shieldx_http_requests_in_flight") >= 1  # the scrape itself
    assert value(after, "shieldx_db_pool_max") >= 1


def test_replays_refusals_and_auth_counters(client, accounts, dsn):
    path = f"/v1/tenants/acme/accounts/{accounts[0]}/consume"
    before = scrape(client)
    assert client.post(path, json={"amount": 1}, headers={"Idempotency-Key": "r1"}).json()["replayed"] is False
    again = client.post(path, json={"amount": 1}, headers={"Idempotency-Key": "r1"})
    assert again.status_code == 201 and again.json()["replayed"] is True
    short = client.post(path, json={"amount": 10**6}, headers={"Idempotency-Key": "r2"})
    assert short.status_code == 409, short.text
    missing = client.get("/v1/tenants/acme/accounts", headers={"Authorization": "Bearer sx_0123456789ab_" + "0" * 64})
    assert missing.status_code == 401
    after = scrape(client)

    def delta(metric, **labels):
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert delta("shieldx_idempotent_replays_total", route=CONSUME) == 1
    state = short.json()["sqlstate"]
    assert delta("shieldx_refusals_total", sqlstate=state, name=short.json()["type"].rsplit("#", 1)[1]) == 1
    assert delta("shieldx_refusals_total", sqlstate="SX301", name="unauthenticated") == 1
    assert delta("shieldx_auth_failures_total", reason="unknown_key") == 1
    assert delta("shieldx_auth_verifications_total") + delta("shieldx_auth_cache_hits_total") >= 3


def test_rate_limit_refusals_are_counted(client, tenant):
    r = client.post(
        f"/v1/tenants/{tenant}/keys",
        json={"name": "slow", "roles": ["consumer"], "rate_per_s": 0.01, "burst": 1},
        headers={"Idempotency-Key": "slow"},
    )
    assert r.status_code == 201, r.text
    key = r.json()["api_key"]
    before = scrape(client)
    statuses = [
        client.get(f"/v1/tenants/{tenant}/accounts", headers={"Authorization": f"Bearer {key}"}).status_code
        for _ in range(3)
    ]
    assert 429 in statuses
    after = scrape(client)
    refused = value(after, "shieldx_rate_limited_total") - value(before, "shieldx_rate_limited_total")
    assert refused == statuses.count(429)


def test_metrics_off_keeps_request_ids(app_dsn, operator_key, monkeypatch):
    from litestar.testing import TestClient

    from shieldx.app import create_app
    from shieldx.config import Settings

    monkeypatch.setenv("SHIELDX_METRICS", "false")
    monkeypatch.setenv("DATABASE_URL", app_dsn)
    settings = Settings.from_env()
    assert settings.metrics is False
    with TestClient(create_app(settings)) as c:
        before = scrape(c)
        assert c.get("/health/live", headers={"X-Request-ID": "off-1"}).headers["x-request-id"] == "off-1"
        after = scrape(c)
    series = ("shieldx_http_requests_total", (("method", "GET"), ("route", "/health/live"), ("status", "200")))
    assert after.get(series, 0.0) == before.get(series, 0.0)


def test_access_log_line(client, tenant, caplog):
    with caplog.at_level(logging.INFO, logger="shieldx.access"):
        r = client.get(
            f"/v1/tenants/{tenant}/accounts",
            headers={"X-Request-ID": "log-line-1", "User-Agent": "curl/8.5.0", "X-Forwarded-For": "198.51.100.23"},
        )
    assert r.status_code == 200
    records = [rec for rec in caplog.records if rec.name == "shieldx.access"]
    line = json.loads(JsonFormatter().format(records[-1]))
    assert {k: line[k] for k in ("level", "request_id", "tenant", "route", "method", "status", "user_agent")} == {
        "level": "INFO",
        "request_id": "log-line-1",
        "tenant": tenant,
        "route": "/v1/tenants/{tenant_id}/accounts",
        "method": "GET",
        "status": 200,
        "user_agent": "curl",
    }
    assert line["duration_ms"] >= 0 and "time" in line and "client" in line
    # The tenant is logged as the caller wrote it in the path, but never a card number. (Without a
    # key: refused before any SQL, whose error message would name the tenant in the server's log.)
    with caplog.at_level(logging.INFO, logger="shieldx.access"):
        r = client.get(
            "/v1/tenants/4111111111111111/accounts", headers={"X-Request-ID": "log-line-2", "Authorization": ""}
        )
    assert r.status_code == 401
    line = json.loads(JsonFormatter().format([r for r in caplog.records if r.name == "shieldx.access"][-1]))
    assert line["request_id"] == "log-line-2" and line["tenant"] == "[card]"


def test_masking_rules():
    assert mask_ip("203.0.113.77") == "203.0.113.0/24"
    assert mask_ip("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert mask_ip("::ffff:198.51.100.9") == "198.51.100.0/24"
    assert mask_ip("testclient") is None
    assert ua_family("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0") == "Mozilla"
    assert ua_family("python-httpx/0.28.1") == "python-httpx"
    assert ua_family("curl/8.5.0") == "curl"
    assert ua_family("MyBot 1.0 (contact: me@example.org)") == "other"
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    secret = "sx_0123456789ab_" + "f" * 64
    text = scrub(f"key {secret} card 4111 1111 1111 1111 from 203.0.113.77 and 2001:db8:1:2::3 on 127.0.0.1")
    assert secret not in text and "sx_0123456789ab_[secret]" in text
    assert "4111" not in text and "[card]" in text
    assert "203.0.113.0/24" in text and "203.0.113.77" not in text
    assert "2001:db8:1::/48" in text and "2001:db8:1:2::3" not in text
    assert "127.0.0.1" in text  # the server's own loopback address names no client
    assert scrub("order 4111111111111112 at 23:41:02") == "order 4111111111111112 at 23:41:02"  # not Luhn-valid


def test_access_line_without_a_record_is_the_formatters_line():
    """The server writes access lines without a LogRecord: the same JSON the formatter makes of the record."""
    fields = access_fields(
        "rid-1", "4111111111111111", CONSUME, "POST", 201, 0.0031234, "203.0.113.77", b"curl/8.5.0", True
    )
    assert (fields["tenant"], fields["client"], fields["user_agent"]) == ("[card]", "203.0.113.0/24", "curl")
    assert fields["duration_ms"] == 3.123 and fields["replayed"] is True
    record = logging.LogRecord("shieldx.access", logging.INFO, "", 0, "%s %s %d", ("POST", CONSUME, 201), None)
    record.fields = fields
    record.created, record.process = 1764633600.123, 4242
    assert access_line(record.created, 4242, fields).decode() == JsonFormatter().format(record)


def test_access_lines_bypass_logging_only_when_its_json_handler_is_the_only_destination():
    root = logging.Logger("root-of-a-test")
    access = logging.Logger("shieldx.access")
    access.parent = root
    assert not only_json_handler(access)  # no handler: nothing would be written
    root.addHandler(JsonStreamHandler())
    assert only_json_handler(access)
    access.addHandler(logging.NullHandler())  # someone else's handler: records, as any other
    assert not only_json_handler(access)


def test_recorder_writes_access_lines_in_batches(capsys):
    recorder = Recorder(metrics=False, request_log=True)
    recorder.log_lines = True  # as in a server, where the JSON handler is the only destination

    async def answer_two() -> tuple[str, str]:
        for rid in ("batch-1", "batch-2"):
            recorder.answered((CONSUME, "POST", 201, 0.002, False, rid, "acme", "203.0.113.77", b"wrk", 1.0e9))
        pending = capsys.readouterr().err
        await asyncio.sleep(Recorder.FLUSH_S * 4)
        return pending, capsys.readouterr().err

    pending, written = asyncio.run(answer_two())
    assert pending == ""  # not one write per request
    lines = [json.loads(line) for line in written.splitlines()]
    assert [(x["request_id"], x["client"], x["logger"]) for x in lines] == [
        ("batch-1", "203.0.113.0/24", "shieldx.access"),
        ("batch-2", "203.0.113.0/24", "shieldx.access"),
    ]
