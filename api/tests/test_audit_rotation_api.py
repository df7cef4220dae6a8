"""POST /v1/audit/checkpoints/verify after a rotation of the signer's key, with the API pinned to the old key."""

from __future__ import annotations

import psycopg
from click.testing import CliRunner
from litestar.testing import TestClient
from psycopg.rows import dict_row

from shieldx import signer
from shieldx.app import create_app
from shieldx.cli import main
from shieldx.config import Settings


def pinned_client(app_dsn: str, operator_key: str, pub: bytes) -> TestClient:
    app = create_app(
        Settings(database_url=app_dsn, pool_min=1, pool_max=2, auth_failure_burst=1e6, audit_pubkey=pub.hex())
    )
    c = TestClient(app)
    c.headers["Authorization"] = f"Bearer {operator_key}"
    return c


def test_the_api_pinned_to_the_old_key_verifies_an_export_signed_after_a_rotation(
    client, accounts, dsn, app_dsn, operator_key, tmp_path
):
    key = tmp_path / "signer" / "audit_ed25519.key"
    old = signer.generate_key(key)
    state = tmp_path / "signer.state"
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SELECT audit.checkpoint()")
        signer.Signer(key, state_path=state).run(conn)
    r = CliRunner().invoke(main, ["audit", "signer", "rotate", "--key", str(key), "--url", dsn])
    assert r.exit_code == 0, r.output
    new = signer.load_public_key(str(key) + ".pub")
    assert (
        client.post(
            f"/v1/tenants/acme/accounts/{accounts[0]}/consume",
            json={"amount": 1},
            headers={"Idempotency-Key": "after-rotation"},
        ).status_code
        == 201
    )
    assert client.post("/v1/audit/checkpoints").status_code == 201
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        assert signer.Signer(key, state_path=state).run(conn).checkpoints
    doc = client.get("/v1/audit/checkpoints/latest/export").json()
    assert doc["signature"]["key_id"] == signer.key_id(new) and len(doc["transitions"]) == 1
    for pin in (old, new):
        with pinned_client(app_dsn, operator_key, pin) as c:
            v = c.post("/v1/audit/checkpoints/verify", json=doc)
            assert v.status_code == 200 and v.json()["ok"], (pin.hex(), v.text)
    # Pinned to a key the succession never handed over to: refused, named.
    stranger = signer.generate_key(tmp_path / "other" / "k.key")
    with pinned_client(app_dsn, operator_key, stranger) as c:
        v = c.post("/v1/audit/checkpoints/verify", json=doc)
        assert v.status_code == 200 and not v.json()["ok"], v.text
        assert f"not by the pinned key {signer.key_id(stranger)} nor by a key it handed over to" in v.json()["problem"]
