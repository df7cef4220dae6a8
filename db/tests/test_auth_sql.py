"""The auth.* SQL API as a DBA calls it: keys as hashes, tenant scoping, token buckets, failure counts."""

from __future__ import annotations

import hashlib
import threading

import pytest
from psycopg.types.json import Jsonb

from helpers import call, raises, rows, setup_accounts


def _split(api_key: str) -> tuple[str, bytes]:
    _, key_id, secret = api_key.split("_")
    return key_id, hashlib.sha256(secret.encode()).digest()


def test_keys_are_stored_only_as_hashes_and_verify(db):
    setup_accounts(db)
    k = call(db, "auth.create_key", "acme", "ci", ["consumer", "billing", "consumer"], "k1")
    assert k["roles"] == ["billing", "consumer"] and k["replayed"] is False
    key_id, digest = _split(k["api_key"])
    stored = db.execute("SELECT * FROM auth.keys WHERE key_id = %s", (key_id,)).fetchone()
    assert bytes(stored["secret_hash"]) == digest
    assert k["api_key"].split("_")[2] not in repr(stored)
    ok = call(db, "auth.authenticate", key_id, digest)
    assert (ok["ok"], ok["tenant_id"], ok["roles"]) == (True, "acme", ["billing", "consumer"])
    assert call(db, "auth.verify", k["api_key"])["ok"] is True
    wrong = k["api_key"][:-1] + ("1" if k["api_key"].endswith("0") else "0")  # always a different secret
    assert call(db, "auth.verify", wrong)["reason"] == "bad_secret"
    replay = call(db, "auth.create_key", "acme", "ci", ["billing", "consumer"], "k1")
    assert replay["replayed"] is True and replay["api_key"] is None and replay["key_id"] == key_id
    with raises("SX005"):
        call(db, "auth.create_key", "acme", "ci", ["admin"], "k1")


@pytest.mark.parametrize(
    "args,state",
    [
        (("nobody", "ci", ["consumer"], "k"), "SX001"),
        (("acme", "ci", [], "k"), "SX305"),
        (("acme", "ci", ["operator"], "k"), "SX305"),
        (("acme", "ci", [None], "k"), "SX305"),
        (("acme", "ci", None, "k"), "SX305"),
        (("acme", "ci", ["consumer"], ""), "SX006"),
        (("acme", "", ["consumer"], "k"), "SX007"),
        (("acme", "ci", ["consumer"], "k", 0), "SX306"),
        (("acme", "ci", ["consumer"], "k", float("nan")), "SX306"),
        (("acme", "ci", ["consumer"], "k", 1, 0.5), "SX306"),
        (("acme", "ci", ["consumer"], "k", float("inf")), "SX306"),
    ],
)
def test_bad_key_arguments_are_named_errors(db, args, state):
    setup_accounts(db)
    with raises(state):
        call(db, "auth.create_key", *args)
    assert db.execute("SELECT count(*) AS n FROM auth.keys").fetchone()["n"] == 0


def test_another_tenants_key_is_unknown(db):
    setup_accounts(db, "acme")
    setup_accounts(db, "zeta")
    z = call(db, "auth.create_key", "zeta", "z", ["admin"], "kz")
    assert rows(db, "auth.list_keys", "acme") == []
    with raises("SX304"):
        call(db, "auth.revoke_key", "acme", z["key_id"])
    with raises("SX304"):
        call(db, "auth.rotate_key", "acme", z["key_id"], "rot")
    assert call(db, "auth.verify", z["api_key"])["ok"] is True


def test_rotate_and_revoke(db):
    setup_accounts(db)
    old = call(db, "auth.create_key", "acme", "ci", ["consumer"], "k1")
    new = call(db, "auth.rotate_key", "acme", old["key_id"], "rot-1", 0)
    assert new["replaced_key_id"] == old["key_id"] and new["api_key"]
    assert call(db, "auth.verify", old["api_key"])["reason"] == "expired"  # no grace: stops now
    assert call(db, "auth.verify", new["api_key"])["ok"] is True
    assert call(db, "auth.rotate_key", "acme", old["key_id"], "rot-1", 0)["replayed"] is True
    with raises("SX307"):
        call(db, "auth.rotate_key", "acme", old["key_id"], "rot-2", 0)
    assert call(db, "auth.revoke_key", "acme", new["key_id"])["changed"] is True
    assert call(db, "auth.revoke_key", "acme", new["key_id"])["changed"] is False
    assert call(db, "auth.verify", new["api_key"])["reason"] == "revoked"
    assert call(db, "auth.take", new["key_id"], 1)["active"] is False
    status = {r["key_id"]: r["status"] for r in rows(db, "auth.list_keys", "acme")}
    assert status == {old["key_id"]: "expired", new["key_id"]: "revoked"}
    assert all(r["masked"].endswith("_********") for r in rows(db, "auth.list_keys", "acme"))


def test_failures_are_recorded_in_one_write_without_secrets(db):
    setup_accounts(db)
    k = call(db, "auth.create_key", "acme", "ci", ["consumer"], "k1")
    key_id, _ = _split(k["api_key"])
    for _ in range(3):
        assert call(db, "auth.authenticate", key_id, b"\x00" * 32)["reason"] == "bad_secret"
    call(db, "auth.authenticate", "ffffffffffff", b"\x00" * 32)
    call(db, "auth.authenticate", "'; drop", b"x")
    assert rows(db, "auth.failure_counts", 60) == []  # authenticate writes nothing
    counts = [
        {"reason": "bad_secret", "key_id": key_id, "count": 3},
        {"reason": "unknown_key", "key_id": "", "count": 1},
        {"reason": "malformed", "key_id": "", "count": 1},
        {"reason": "no such reason", "key_id": "", "count": 7},  # not a reason auth.failures knows: ignored
    ]
    assert call(db, "auth.record_failures", Jsonb(counts))["record_failures"] == 5
    counts_now = {(r["reason"], r["key_id"]): r["failures"] for r in rows(db, "auth.failure_counts", 60)}
    assert counts_now == {("bad_secret", key_id): 3, ("unknown_key", None): 1, ("malformed", None): 1}
    # A DBA's auth.verify records its own failure.
    assert call(db, "auth.verify", f"sx_{key_id}_{'0' * 64}")["reason"] == "bad_secret"
    assert {(r["reason"], r["key_id"]): r["failures"] for r in rows(db, "auth.failure_counts", 60)}[
        ("bad_secret", key_id)
    ] == 4


def test_token_bucket_grants_at_most_burst_plus_refill_under_concurrency(db, connect):
    setup_accounts(db)
    k = call(db, "auth.create_key", "acme", "ci", ["consumer"], "k1", 1.0, 50)
    granted: list[int] = []

    def worker() -> None:
        conn = connect("shieldx_app")
        for _ in range(20):
            granted.append(call(conn, "auth.take", k["key_id"], 3)["granted"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = db.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = (db.execute("SELECT clock_timestamp() AS t").fetchone()["t"] - start).total_seconds()
    assert sum(granted) <= 50 + 1.0 * elapsed + 1
    assert sum(granted) >= 50  # the burst is really available
    refused = call(db, "auth.take", k["key_id"], 1)
    assert refused["granted"] == 0 and 0 < refused["retry_after_s"] <= 1.0


def test_take_with_a_minimum_takes_all_it_needs_or_nothing(db):
    setup_accounts(db)
    k = call(db, "auth.create_key", "acme", "ci", ["consumer"], "k1", 0.01, 10)
    assert call(db, "auth.take", k["key_id"], 6, 4)["granted"] == 6  # as many as wanted while there are
    assert call(db, "auth.take", k["key_id"], 7, 3)["granted"] == 4  # fewer than wanted, at least the minimum
    refused = call(db, "auth.take", k["key_id"], 1, 1)
    assert refused["granted"] == 0 and refused["retry_after_s"] > 1
    db.execute("UPDATE auth.buckets SET tokens = 5 WHERE key_id = %s", (k["key_id"],))
    refused = call(db, "auth.take", k["key_id"], 6, 6)
    assert refused["granted"] == 0 and int(refused["tokens"]) == 5  # nothing taken
    assert 0 < refused["retry_after_s"] <= (6 - 5) / 0.01
    never = call(db, "auth.take", k["key_id"], 11, 11)
    assert never["granted"] == 0 and never["retry_after_s"] is None and int(never["tokens"]) == 5  # beyond the burst
    assert call(db, "auth.take", k["key_id"], 5, 5)["granted"] == 5


def test_take_refuses_bad_arguments(db):
    with raises("SX007"):
        call(db, "auth.take", "abc", 0)
    with raises("SX007"):
        call(db, "auth.take", "abc", 2, 3)
    assert call(db, "auth.take", "'; select", 1)["active"] is False


def test_application_role_cannot_mint_operator_keys_or_read_hashes(db, connect):
    setup_accounts(db)
    app = connect("shieldx_app")
    with raises("42501"):
        call(app, "auth.create_operator_key", "evil", "evil")
    with raises("42501"):
        app.execute("SELECT * FROM auth.keys")
    with raises("42501"):
        app.execute("UPDATE auth.keys SET revoked_at = NULL")
    op = call(db, "auth.create_operator_key", "ops", "ops-1")
    assert call(app, "auth.verify", op["api_key"])["roles"] == ["operator"]
    db.execute("DROP ROLE IF EXISTS dba_reader_auth")
    db.execute("CREATE ROLE dba_reader_auth LOGIN IN ROLE shieldx_readonly")
    try:
        ro = connect("dba_reader_auth")
        assert ro.execute("SELECT count(*) AS n FROM auth.keys").fetchone()["n"] == 1
        with raises("42501"):
            ro.execute("SELECT secret_hash FROM auth.keys")
        ro.close()
    finally:
        db.execute("DROP OWNED BY dba_reader_auth")
        db.execute("DROP ROLE dba_reader_auth")


def test_prune_job_is_registered_and_idempotent(db):
    assert db.execute("SELECT 1 FROM ops.jobs WHERE job_name = 'shieldx-auth-prune'").fetchone()
    assert call(db, "auth.prune") == call(db, "auth.prune")


@pytest.mark.parametrize(
    "expires_at",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "infinity", "-infinity", "2000-01-01T00:00:00Z"],
)
def test_a_refused_key_is_not_stored(db, expires_at):
    """The expiry is checked before anything is written: a refused key leaves no row behind."""
    call(db, "credits.create_tenant", "acme", "Acme")
    before = db.execute("SELECT count(*) AS n FROM auth.keys").fetchone()["n"]
    with raises("SX007"):
        db.execute(
            "SELECT * FROM auth.create_key('acme', 'k', ARRAY['consumer'], 'idem-1', 50, 100, %s::timestamptz)",
            (expires_at,),
        )
    assert db.execute("SELECT count(*) AS n FROM auth.keys").fetchone()["n"] == before
    assert rows(db, "auth.list_keys", "acme") == []
