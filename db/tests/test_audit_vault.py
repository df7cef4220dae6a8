"""Card data (AES-256-GCM, key rotation, masking), crypto-shredding, and retention."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from helpers import call, raises, setup_accounts

PAN = "4111111111111111"
PAN2 = "5555555555554444"


def server_log(db) -> Path:
    """The local cluster's log file (cluster.sh starts it with pg_ctl -l <data>/server.log)."""
    log = Path(db.execute("SHOW data_directory").fetchone()["data_directory"]) / "server.log"
    assert log.exists(), f"no server log at {log}"
    return log


def top_up(conn, account, key, pan=PAN, subject="subject-1", tenant="acme"):
    return call(
        conn,
        "vault.top_up",
        tenant,
        account,
        50,
        key,
        pan,
        "12/29",
        "Jane Doe",
        subject,
        "203.0.113.77",
        "Mozilla/5.0 (X11)",
    )


def everything_as_text(db) -> str:
    """Every row of every product table, as text."""
    out = []
    for t in db.execute("""SELECT c.oid::regclass::text AS t
                              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname IN ('audit', 'vault', 'privacy', 'credits', 'ops')
                              AND c.relkind = 'r'""").fetchall():
        out += [json.dumps(r, default=str) for r in db.execute(f"SELECT * FROM {t['t']}").fetchall()]
    return "\n".join(out)


def test_top_up_encrypts_the_card_and_shows_only_the_last_four_digits(db, connect):
    a, _ = setup_accounts(db)
    app = connect("shieldx_app")
    log = server_log(db)
    log_start = log.stat().st_size
    r = top_up(app, a, "pay-1")
    assert r["card"] == "**** **** **** 1111" and r["amount"] == 50 and not r["replayed"]
    assert top_up(app, a, "pay-1")["replayed"]
    with raises("SX005"):
        top_up(app, a, "pay-1", pan=PAN2)
    with raises("SX201") as bad:
        top_up(app, a, "pay-2", pan="4111111111111112")  # fails the Luhn check
    assert "4111111111111112" not in str(bad.value) and "1112" in str(bad.value)
    p = call(app, "vault.get_payment", "acme", r["entry_id"])
    assert p["card"] == "**** **** **** 1111" and p["holder"] == "Jane Doe" and p["ip_masked"] == "203.0.113.0/24"
    # Only the owner can see the full number.
    assert call(db, "vault._reveal", r["entry_id"]) == {"pan": PAN, "expiry": "12/29"}
    # No full card number anywhere: tables (audit log included), and the server log.
    text = everything_as_text(db)
    assert PAN not in text and "4111111111111112" not in text and "Jane Doe" not in text
    assert "1111" in text  # the last four digits are kept
    with open(log, "rb") as f:
        f.seek(log_start)
        tail = f.read().decode(errors="replace")
    assert PAN not in tail and "4111111111111112" not in tail
    row = db.execute("SELECT * FROM vault.payments").fetchone()
    assert len(bytes(row["pan_ct"])) == 2 + len(row["key_id"]) + 12 + len(PAN) + 16  # header, 96-bit nonce, tag


def test_nonces_are_random_and_ciphertexts_are_bound_to_their_row(db):
    a, b = setup_accounts(db)
    e1 = top_up(db, a, "pay-a")["entry_id"]
    e2 = top_up(db, b, "pay-b")["entry_id"]
    c1, c2 = (bytes(r["pan_ct"]) for r in db.execute("SELECT pan_ct FROM vault.payments ORDER BY entry_id"))
    assert c1 != c2  # same card, different nonce
    db.execute(
        "UPDATE vault.payments SET pan_ct = (SELECT pan_ct FROM vault.payments WHERE entry_id = %s) "
        "WHERE entry_id = %s",
        (e1, e2),
    )
    with raises("SX203"):
        call(db, "vault._reveal", e2)
    # Expiry moved into the card-number field of the same row fails too.
    db.execute("UPDATE vault.payments SET pan_ct = expiry_ct WHERE entry_id = %s", (e1,))
    with raises("SX203"):
        call(db, "vault._reveal", e1)


@pytest.fixture
def own_keyring(db, dsn, tmp_path_factory):
    """This database gets a keyring of its own (rotation destroys keys)."""
    d = Path("/tmp") / f"shieldx-keys-{uuid.uuid4().hex[:8]}"
    for purpose in ("audit", "payment", "subject"):
        (d / purpose).mkdir(parents=True)
        kid = "k" + secrets.token_hex(6)
        (d / purpose / f"{kid}.key").write_text(secrets.token_hex(32))
        (d / purpose / "CURRENT").write_text(kid + "\n")
    subprocess.run(["chown", "-R", "postgres:postgres", str(d)], check=True)
    subprocess.run(["chmod", "-R", "go-rwx", str(d)], check=True)
    dbname = dsn.rsplit("/", 1)[1]
    db.execute(f"ALTER DATABASE \"{dbname}\" SET shieldx.key_dir = '{d}'")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn, d
    shutil.rmtree(d, ignore_errors=True)


def test_key_rotation_reencrypts_then_retires_the_old_key(own_keyring):
    db, keydir = own_keyring
    a, _ = setup_accounts(db)
    e1 = top_up(db, a, "pay-1")["entry_id"]
    old = db.execute("SELECT key_id FROM vault.payments").fetchone()["key_id"]
    rot = call(db, "vault.rotate_key", "payment")
    assert rot["previous_key_id"] == old and rot["key_id"] != old
    e2 = top_up(db, a, "pay-2")["entry_id"]
    assert {r["key_id"] for r in db.execute("SELECT key_id FROM vault.payments")} == {old, rot["key_id"]}
    assert db.execute("SELECT * FROM vault.retire_unused_keys()").fetchall() == []  # still used
    assert (keydir / "payment" / f"{old}.key").exists()
    assert call(db, "vault.reencrypt", 100) == {"reencrypt": 1}
    assert call(db, "vault.reencrypt", 100) == {"reencrypt": 0}  # safe to run twice
    assert [r["key_id"] for r in db.execute("SELECT * FROM vault.retire_unused_keys()")] == [old]
    assert not (keydir / "payment" / f"{old}.key").exists()
    assert call(db, "vault._reveal", e1)["pan"] == PAN and call(db, "vault._reveal", e2)["pan"] == PAN
    states = {
        r["key_id"]: r["state"] for r in db.execute("SELECT key_id, state FROM vault.keys WHERE purpose = 'payment'")
    }
    assert states == {old: "retired", rot["key_id"]: "current"}
    # Every key event is in the audit log, and the log verifies.
    events = db.execute(
        "SELECT op, payload FROM audit.log WHERE source = 'vault.keys' ORDER BY logged_at, seq"
    ).fetchall()
    assert any('"retired"' in e["payload"] for e in events)
    assert call(db, "audit.verify")["ok"]


def test_audit_key_rotation_keeps_old_checkpoints_verifiable(own_keyring):
    db, _ = own_keyring
    setup_accounts(db)
    first = call(db, "audit.checkpoint")["key_id"]
    assert call(db, "vault.rotate_key", "audit")["previous_key_id"] == first
    assert call(db, "audit.checkpoint")["key_id"] != first
    assert call(db, "audit.verify")["ok"]


def test_erasure_shreds_personal_data_and_the_chain_still_verifies(db, connect):
    a, _ = setup_accounts(db)
    e = top_up(db, a, "pay-1", subject="jane")["entry_id"]
    top_up(db, a, "pay-2", subject="john")
    call(db, "audit.checkpoint")
    app = connect("shieldx_app")
    r = call(app, "privacy.erase_subject", "jane", "erase-jane")
    assert r["payments_affected"] == 1 and not r["replayed"]
    assert call(app, "privacy.erase_subject", "jane", "erase-jane")["replayed"]
    with raises("SX005"):
        call(app, "privacy.erase_subject", "jane", "another-key")
    p = call(app, "vault.get_payment", "acme", e)
    assert p["holder"] == "[erased]" and p["card"] == "**** **** **** 1111"
    row = db.execute("SELECT * FROM vault.payments WHERE entry_id = %s", (e,)).fetchone()
    assert (
        db.execute("SELECT privacy._decrypt('jane', %s, '\\x'::bytea) AS v", (row["holder_ct"],)).fetchone()["v"]
        is None
    )
    assert db.execute("SELECT count(*) AS n FROM privacy.subject_keys WHERE subject_id = 'jane'").fetchone()["n"] == 0
    assert call(db, "vault.get_payment", "acme", e + 1)["holder"] == "Jane Doe"  # john's own key is untouched
    with raises("SX205"):
        top_up(app, a, "pay-3", subject="jane")
    assert call(db, "audit.verify")["ok"]
    # The audit log never held the subject's key, only that it was deleted.
    assert "wrapped" not in "".join(
        r["payload"] for r in db.execute("SELECT payload FROM audit.log WHERE source = 'privacy.subject_keys'")
    )


def test_retention_archives_behind_a_signed_checkpoint_and_what_remains_verifies(db):
    a, b = setup_accounts(db)
    for i in range(5):
        call(db, "credits.consume", "acme", a, 1, f"old-{i}")
    before = db.execute("SELECT count(*) AS n FROM credits.entries").fetchone()["n"]
    r = call(db, "audit.cleanup_old_transactions", 0)
    assert r["journal_entries_archived"] == before and r["audit_entries_removed"] > before
    assert db.execute("SELECT count(*) AS n FROM credits.entries").fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM credits.entries_archive").fetchone()["n"] == before
    assert db.execute("SELECT * FROM credits.reconcile()").fetchall() == []
    assert call(db, "audit.verify")["ok"]
    # New entries chain on from the anchors; a second run is harmless.
    call(db, "credits.consume", "acme", a, 1, "new-1")
    call(db, "credits.set_account_status", "acme", b, "frozen")
    assert call(db, "audit.verify")["ok"] and call(db, "audit.verify", True)["ok"]
    call(db, "audit.cleanup_old_transactions", 0)
    assert call(db, "audit.verify")["ok"]
    assert db.execute("SELECT * FROM credits.reconcile()").fetchall() == []
    assert call(db, "credits.get_account", "acme", a)["balance"] == 94
    # A forged anchor is caught by its signature.
    db.execute("ALTER TABLE audit.anchors DISABLE TRIGGER append_only")
    db.execute("UPDATE audit.anchors SET seq = seq WHERE stream = %s", (f"ledger/{a}",))
    db.execute("UPDATE audit.anchors SET sig = sha256(sig) WHERE stream = %s", (f"ledger/{a}",))
    db.execute("ALTER TABLE audit.anchors ENABLE ALWAYS TRIGGER append_only")
    v = call(db, "audit.verify")
    assert not v["ok"] and v["stream"] == f"ledger/{a}" and "anchor" in v["problem"]


def test_jobs_are_registered(db):
    jobs = {r["job_name"]: r["command"] for r in db.execute("SELECT * FROM ops.jobs")}
    assert "audit.checkpoint('periodic')" in jobs["shieldx-audit-checkpoint"]
    assert "audit.cleanup_old_transactions(" in jobs["shieldx-audit-retention"]
    assert "vault.reencrypt(" in jobs["shieldx-vault-reencrypt"]


def test_a_session_cannot_redirect_the_keyring(db, connect):
    a, _ = setup_accounts(db)
    app = connect("shieldx_app")
    app.execute("SET shieldx.key_dir = '/tmp/not-the-keyring'")
    e = top_up(app, a, "pay-1")["entry_id"]
    assert call(db, "vault._reveal", e)["pan"] == PAN  # encrypted with the configured keyring


def test_a_card_replay_matches_every_argument_by_a_keyed_hash(db):
    """Same key, same last four digits, another card or expiry or holder: a conflict, not a replay."""
    a, _ = setup_accounts(db)
    first = top_up(db, a, "pay-1")
    same_last4 = "4000000000061111"  # Luhn-valid, ends like PAN
    assert same_last4[-4:] == PAN[-4:] and same_last4 != PAN
    args = ["acme", a, 50, "pay-1", PAN, "12/29", "Jane Doe", "subject-1", "203.0.113.77", "Mozilla/5.0 (X11)"]
    before = everything_as_text(db)
    for i, other in ((4, same_last4), (5, "11/29"), (6, "John Doe"), (7, "subject-2")):
        with raises("SX005"):
            call(db, "vault.top_up", *args[:i], other, *args[i + 1 :])
    assert everything_as_text(db) == before
    # Where the request came from is no argument: a retry from elsewhere replays.
    again = call(db, "vault.top_up", *args[:8], "198.51.100.1", "curl/8")
    assert again["replayed"] and again["entry_id"] == first["entry_id"]
    # The fingerprint is a keyed hash bound to the row, never the number.
    row = db.execute("SELECT card_hmac, key_id FROM vault.payments").fetchone()
    assert len(row["card_hmac"]) == 32 and PAN.encode() not in row["card_hmac"]
    assert row["card_hmac"] != hashlib.sha256(PAN.encode()).digest()


def test_a_payment_without_a_fingerprint_is_compared_by_decrypting_and_reencrypt_fills_it_in(db):
    a, _ = setup_accounts(db)
    top_up(db, a, "pay-1")
    db.execute("ALTER TABLE vault.payments DISABLE TRIGGER USER")
    db.execute("UPDATE vault.payments SET card_hmac = NULL")  # a payment made before fingerprints existed
    db.execute("ALTER TABLE vault.payments ENABLE TRIGGER USER")
    assert top_up(db, a, "pay-1")["replayed"]
    with raises("SX005"):
        top_up(db, a, "pay-1", pan="4000000000061111")
    assert call(db, "vault.reencrypt", 100) == {"reencrypt": 1}
    assert db.execute("SELECT card_hmac IS NOT NULL AS ok FROM vault.payments").fetchone()["ok"]
    assert top_up(db, a, "pay-1")["replayed"]
