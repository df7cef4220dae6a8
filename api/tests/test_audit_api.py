"""Audit, card top-up and erasure over HTTP: masked everywhere, verifiable."""

from __future__ import annotations

import logging

import psycopg

PAN = "4111111111111111"


def test_card_top_up_is_masked_and_audited(client, accounts, dsn, caplog):
    caplog.set_level(logging.DEBUG)
    a = accounts[0]
    body = {
        "amount": 25,
        "card_number": "4111 1111 1111 1111",
        "expiry": "12/29",
        "holder": "Jane Doe",
        "subject": "jane",
    }
    r = client.post(
        f"/v1/tenants/acme/accounts/{a}/card-top-ups",
        json=body,
        headers={"Idempotency-Key": "p1", "User-Agent": "tests/1.0"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["card"] == "**** **** **** 1111" and r.json()["balance_after"] == 125
    again = client.post(f"/v1/tenants/acme/accounts/{a}/card-top-ups", json=body, headers={"Idempotency-Key": "p1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true" and again.json()["replayed"]
    bad = client.post(
        f"/v1/tenants/acme/accounts/{a}/card-top-ups",
        json={**body, "card_number": "4111111111111112"},
        headers={"Idempotency-Key": "p2"},
    )
    assert bad.status_code == 422 and bad.json()["sqlstate"] == "SX201"
    p = client.get(f"/v1/tenants/acme/payments/{r.json()['entry_id']}")
    assert p.status_code == 200 and p.json()["card"] == "**** **** **** 1111" and p.json()["holder"] == "Jane Doe"
    responses = r.text + again.text + bad.text + p.text
    assert PAN not in responses and "4111111111111112" not in responses
    assert PAN not in caplog.text and "4111111111111112" not in caplog.text
    with psycopg.connect(dsn) as conn:
        payloads = " ".join(x[0] for x in conn.execute("SELECT payload FROM audit.log").fetchall())
    assert PAN not in payloads and "Jane Doe" not in payloads and "1111" in payloads

    e = client.post("/v1/privacy/subjects/jane/erasure", headers={"Idempotency-Key": "erase-1"})
    assert e.status_code == 201 and e.json()["payments_affected"] == 1
    again = client.post("/v1/privacy/subjects/jane/erasure", headers={"Idempotency-Key": "erase-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert client.get(f"/v1/tenants/acme/payments/{r.json()['entry_id']}").json()["holder"] == "[erased]"
    v = client.get("/v1/audit/verify")
    assert v.status_code == 200 and v.json()["ok"], v.text


def test_checkpoint_export_and_verify_against_it(client, accounts, dsn):
    c = client.post("/v1/audit/checkpoints")
    assert c.status_code == 201 and c.json()["streams"] > 0
    doc = client.get("/v1/audit/checkpoints/latest/export").json()
    assert doc["checkpoint_id"] == c.json()["checkpoint_id"] and doc["heads"]
    ok = client.post("/v1/audit/checkpoints/verify", json=doc)
    assert ok.status_code == 200 and ok.json()["ok"], ok.text
    forged = {**doc, "root": "00" * 32}
    r = client.post("/v1/audit/checkpoints/verify", json=forged)
    assert not r.json()["ok"] and r.json()["problem"] == "exported checkpoint signature is not valid"
    # Truncate a chain behind the database's back: the export notices.
    stream = f"ledger/{accounts[0]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only")
        conn.execute("DELETE FROM audit.log WHERE stream = %s AND seq = 1", (stream,))
        conn.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only")
    r = client.post("/v1/audit/checkpoints/verify", json=doc)
    assert not r.json()["ok"] and r.json()["stream"] == stream
    v = client.get("/v1/audit/verify").json()
    assert not v["ok"] and v["stream"] == stream and v["seq"] == 1
