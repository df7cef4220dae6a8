"""Audit, card top-up and erasure over HTTP: masked everywhere, verifiable."""

from __future__ import annotations

import logging

import psycopg
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from litestar.testing import TestClient

from shieldx.app import create_app
from shieldx.cli import main
from shieldx.cli.audit import default_key_path
from shieldx.config import Settings

PAN = "4111111111111111"


def pubkey_hex() -> str:
    return (default_key_path().parent / (default_key_path().name + ".pub")).read_text().strip()


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


def sign(dsn, tmp_path):
    """The audit signer, outside the database (root reads its key)."""
    r = CliRunner().invoke(main, ["audit", "sign", "--url", dsn, "--state", str(tmp_path / "signer.state")])
    assert r.exit_code == 0, r.output


def test_checkpoint_export_and_verify_against_it(client, accounts, dsn, tmp_path):
    c = client.post("/v1/audit/checkpoints")
    assert c.status_code == 201 and c.json()["streams"] > 0
    unsigned = client.get("/v1/audit/checkpoints/latest/export")
    assert unsigned.status_code == 422 and unsigned.json()["sqlstate"] == "SX206"  # the signer has not run yet
    sign(dsn, tmp_path)
    doc = client.get("/v1/audit/checkpoints/latest/export").json()
    assert doc["checkpoint_id"] == c.json()["checkpoint_id"] and doc["heads"]
    ok = client.post("/v1/audit/checkpoints/verify", json=doc)
    assert ok.status_code == 200 and ok.json()["ok"], ok.text
    forged = {**doc, "root": "00" * 32}
    r = client.post("/v1/audit/checkpoints/verify", json=forged)
    assert not r.json()["ok"] and r.json()["problem"].startswith(
        "exported checkpoint signature (Ed25519) does not verify"
    )
    zero = {**doc, "signature": {**doc["signature"], "sig": "00" * 64}}
    r = client.post("/v1/audit/checkpoints/verify", json=zero)
    assert not r.json()["ok"] and r.json()["stream"] == f"checkpoint/{doc['checkpoint_id']}"
    # Truncate a chain behind the database's back: the export notices.
    stream = f"ledger/{accounts[0]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only, DISABLE TRIGGER removal")
        conn.execute("DELETE FROM audit.log WHERE stream = %s AND seq = 1", (stream,))
        conn.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only, ENABLE ALWAYS TRIGGER removal")
    r = client.post("/v1/audit/checkpoints/verify", json=doc)
    assert not r.json()["ok"] and r.json()["stream"] == stream
    v = client.get("/v1/audit/verify").json()
    assert not v["ok"] and v["stream"] == stream and v["seq"] == 1


def test_the_pinned_key_refuses_an_export_signed_by_another_key(app_dsn, operator_key, accounts, dsn, tmp_path):
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT audit.checkpoint()")
    sign(dsn, tmp_path)
    settings = Settings(database_url=app_dsn, pool_min=1, pool_max=2, audit_pubkey=other.hex())
    with TestClient(app=create_app(settings)) as pinned:
        pinned.headers["Authorization"] = f"Bearer {operator_key}"
        doc = pinned.get("/v1/audit/checkpoints/latest/export").json()
        r = pinned.post("/v1/audit/checkpoints/verify", json=doc)
        assert r.status_code == 200 and not r.json()["ok"]
        assert r.json()["problem"].startswith(f"exported checkpoint is signed by key {doc['signature']['key_id']}, not")
    good = Settings(database_url=app_dsn, pool_min=1, pool_max=2, audit_pubkey=pubkey_hex())
    with TestClient(app=create_app(good)) as pinned:
        pinned.headers["Authorization"] = f"Bearer {operator_key}"
        assert pinned.post("/v1/audit/checkpoints/verify", json=doc).json()["ok"]


def test_verify_compares_the_journal_content_by_default(client, accounts, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE credits.entries DISABLE TRIGGER entries_append_only")
        conn.execute("UPDATE credits.entries SET amount = 7 WHERE account_id = %s AND seq = 1", (accounts[0],))
        conn.execute("ALTER TABLE credits.entries ENABLE ALWAYS TRIGGER entries_append_only")
    v = client.get("/v1/audit/verify").json()
    assert (v["ok"], v["stream"], v["seq"]) == (False, f"ledger/{accounts[0]}", 1)
    assert v["problem"].startswith("journal entry differs from its audit entry")
    assert client.get("/v1/audit/verify", params={"journal": "false"}).json()["ok"]
