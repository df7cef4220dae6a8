"""Keys that every node of a cluster can hold, on a single node: payment and audit keys made outside the
database and activated (vault.rotate_key(purpose, key_id)), the database's record of the current key over a
node's CURRENT file, and the subject master keys' forward ratchet followed by a node that lags behind.

The cluster versions (a real Patroni failover) are in deploy/tests/test_ha_keys.py."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from helpers import call, raises, rows, setup_accounts
from shieldx.paths import ROOT

KEYRING_SH = ROOT / "deploy" / "local" / "keyring.sh"
PAN = "4111111111111111"


def keyring(*args: str) -> str:
    return subprocess.run([str(KEYRING_SH), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def node(db, dsn) -> Iterator[tuple[psycopg.Connection, Path]]:
    """This database on a keyring of its own, made by deploy/local/keyring.sh (as every node's is)."""
    d = Path("/tmp") / f"shieldx-keys-{uuid.uuid4().hex[:8]}"
    keyring(str(d))
    db.execute(f"ALTER DATABASE \"{dsn.rsplit('/', 1)[1]}\" SET shieldx.key_dir = '{d}'")
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn, d
    shutil.rmtree(d, ignore_errors=True)


def top_up(conn, account, key, subject="jane"):
    return call(conn, "vault.top_up", "acme", account, 50, key, PAN, "12/29", "Jane Doe", subject, "203.0.113.7", "ua")


def key_states(db, purpose):
    return {
        r["key_id"]: r["state"]
        for r in db.execute("SELECT key_id, state FROM vault.keys WHERE purpose = %s", (purpose,))
    }


def test_a_key_made_outside_is_activated_only_where_it_is_installed(node, connect):
    db, keys = node
    a, _ = setup_accounts(db)
    e1 = top_up(db, a, "pay-1")["entry_id"]
    old = (keys / "payment" / "CURRENT").read_text().strip()
    # Not installed here: refused by name, nothing changed.
    before = key_states(db, "payment")
    with raises("SX220") as missing:
        call(db, "vault.rotate_key", "payment", "k20991231000000abcdef")
    assert missing.value.diag.message_hint == "Key file not installed on this node"
    assert key_states(db, "payment") == before and (keys / "payment" / "CURRENT").read_text().strip() == old
    for bad in ("../audit/x", "K1", "kshort"):
        with raises("SX007"):
            call(db, "vault.rotate_key", "payment", bad)
    with raises("SX007"):
        call(db, "vault.rotate_key", "subject", old)
    with raises("SX007"):
        call(db, "vault.rotate_key", "subject")
    # Made outside and installed: activated.
    new = keyring("new", str(keys), "payment")
    assert (keys / "payment" / "CURRENT").read_text().strip() == old  # keyring.sh new leaves CURRENT alone
    rot = call(db, "vault.rotate_key", "payment", new)
    assert (rot["key_id"], rot["previous_key_id"]) == (new, old)
    assert key_states(db, "payment") == {old: "previous", new: "current"}
    assert (keys / "payment" / "CURRENT").read_text().strip() == new
    again = call(db, "vault.rotate_key", "payment", new)  # idempotent
    assert (again["key_id"], again["previous_key_id"]) == (new, new)
    e2 = top_up(db, a, "pay-2")["entry_id"]
    assert db.execute("SELECT key_id FROM vault.payments WHERE entry_id = %s", (e2,)).fetchone()["key_id"] == new
    assert call(db, "vault.reencrypt", 100) == {"reencrypt": 1}
    assert [r["key_id"] for r in rows(db, "vault.retire_unused_keys")] == [old]
    assert call(db, "vault._reveal", e1)["pan"] == PAN and call(db, "vault._reveal", e2)["pan"] == PAN
    # A retired key cannot come back, even if its file is put back.
    (keys / "payment" / f"{old}.key").write_text("11" * 32)
    subprocess.run(["chown", "postgres:postgres", str(keys / "payment" / f"{old}.key")], check=True)
    with raises("SX202"):
        call(db, "vault.rotate_key", "payment", old)
    # The app role may not rotate.
    with connect("shieldx_app") as app, raises("42501"):
        app.execute("SELECT * FROM vault.rotate_key('payment', %s)", (new,))


def test_the_database_record_not_a_stale_current_file_names_the_key(node, dsn):
    """A promoted standby whose CURRENT file still names the old key keeps using the recorded one."""
    db, keys = node
    a, _ = setup_accounts(db)
    top_up(db, a, "pay-1")
    old = (keys / "payment" / "CURRENT").read_text().strip()
    new = keyring("new", str(keys), "payment")
    call(db, "vault.rotate_key", "payment", new)
    keyring("current", str(keys), "payment", old)  # this node's file lags behind
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as fresh:
        e = top_up(fresh, a, "pay-2")["entry_id"]
        assert fresh.execute("SELECT key_id FROM vault.payments WHERE entry_id = %s", (e,)).fetchone()["key_id"] == new
        assert key_states(fresh, "payment") == {old: "previous", new: "current"}
        assert call(fresh, "audit.checkpoint", "manual")["key_id"] == (keys / "audit" / "CURRENT").read_text().strip()


def test_a_lagging_node_ratchets_forward_and_then_the_erasure_is_final_there(node, dsn, db):
    """The primary closes two epochs; a node that kept only the first master key (a standby's copy of the
    keyring) derives the current key from it, reads the remaining subjects, and destroys the old file; the
    erased subject's wrapped key, kept from before the erasure, is noise on both."""
    primary, keys = node
    a, _ = setup_accounts(primary)
    e_jane = top_up(primary, a, "pay-1", subject="jane")["entry_id"]
    e_john = top_up(primary, a, "pay-2", subject="john")["entry_id"]
    kept = primary.execute("SELECT key_id, wrapped FROM privacy.subject_keys WHERE subject_id = 'jane'").fetchone()
    holder, aad = (
        primary.execute(
            "SELECT holder_ct, vault._aad('pii', tenant_id, account_id, entry_id, 'holder') AS aad "
            "FROM vault.payments WHERE entry_id = %s",
            (e_jane,),
        )
        .fetchone()
        .values()
    )
    standby_keys = keys.parent / (keys.name + "-standby")
    shutil.copytree(keys, standby_keys)  # a node's copy, taken before the epochs close
    subprocess.run(["chown", "-R", "postgres:postgres", str(standby_keys)], check=True)
    try:
        k0 = kept["key_id"]
        call(primary, "privacy.erase_subject", "jane", "erase-jane")
        first = call(primary, "privacy.close_epoch")
        second = call(primary, "privacy.close_epoch")
        k1 = first["key_id"]
        assert k1.startswith("kr") and second["keys_destroyed"] == 1
        assert sorted(p.name for p in (keys / "subject").glob("*.key")) == [f"{k1}.key"]
        assert call(primary, "privacy.erasure_status", "jane")["final"] is True
        assert [dict(r) for r in rows(primary, "privacy.local_subject_keys")] == [
            {"key_id": k1, "epoch_id": first["epoch_id"], "closed": False}
        ]
        # The lagging node: the same database (replicated rows), its own keyring holding k0 only.
        db.execute(f"ALTER DATABASE \"{dsn.rsplit('/', 1)[1]}\" SET shieldx.key_dir = '{standby_keys}'")
        with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as lagging:
            assert [dict(r) for r in rows(lagging, "privacy.local_subject_keys")] == [
                {"key_id": k0, "epoch_id": 0, "closed": True}
            ]
            assert call(lagging, "privacy.erasure_status", "jane")["final"] is False  # k0 is still here
            # First use derives k1 from k0 and destroys k0.
            assert call(lagging, "vault.get_payment", "acme", e_john)["holder"] == "Jane Doe"
            assert sorted(p.name for p in (standby_keys / "subject").glob("*.key")) == [f"{k1}.key"]
            assert (standby_keys / "subject" / f"{k1}.key").read_text() == (keys / "subject" / f"{k1}.key").read_text()
            assert call(lagging, "privacy.erasure_status", "jane")["final"] is True
            assert call(lagging, "privacy.ratchet_local_keys") == {"key_id": k1, "derived": [], "destroyed": []}
            with raises("SX202"):
                lagging.execute("SELECT privacy._open(%s, 'jane', %s, %s)", (kept["wrapped"], holder, aad))
            assert call(lagging, "vault.get_payment", "acme", e_jane)["holder"] == "[erased]"
    finally:
        shutil.rmtree(standby_keys, ignore_errors=True)


def test_the_explicit_ratchet_derives_and_destroys_without_writing_to_the_database(node, dsn, db):
    primary, keys = node
    a, _ = setup_accounts(primary)
    top_up(primary, a, "pay-1", subject="john")
    standby_keys = keys.parent / (keys.name + "-standby")
    shutil.copytree(keys, standby_keys)
    subprocess.run(["chown", "-R", "postgres:postgres", str(standby_keys)], check=True)
    try:
        k0 = (keys / "subject" / "CURRENT").read_text().strip()
        k1 = call(primary, "privacy.close_epoch", True)["key_id"]
        k2 = call(primary, "privacy.close_epoch", True)["key_id"]
        db.execute(f"ALTER DATABASE \"{dsn.rsplit('/', 1)[1]}\" SET shieldx.key_dir = '{standby_keys}'")
        with psycopg.connect(dsn, row_factory=dict_row) as lagging:  # one transaction, read only
            lagging.execute("SET TRANSACTION READ ONLY")
            done = call(lagging, "privacy.ratchet_local_keys")
            assert done == {"key_id": k2, "derived": [k1, k2], "destroyed": [k0]}
            lagging.commit()
        assert (standby_keys / "subject" / f"{k2}.key").read_text() == (keys / "subject" / f"{k2}.key").read_text()
        assert (standby_keys / "subject" / "CURRENT").read_text().strip() == k2
        with psycopg.connect(dsn.replace("postgres@", "shieldx_app@"), autocommit=True) as app, raises("42501"):
            app.execute("SELECT * FROM privacy.ratchet_local_keys()")
    finally:
        shutil.rmtree(standby_keys, ignore_errors=True)
