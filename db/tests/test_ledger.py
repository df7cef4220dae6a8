"""The credits ledger as a DBA calls it in psql: effects, replays, named errors."""

from __future__ import annotations

import pytest

from helpers import call, raises, rows, setup_accounts, snapshot


def test_tenant_is_created_once_and_replayed(db):
    first = call(db, "credits.create_tenant", "acme", "Acme")
    again = call(db, "credits.create_tenant", "acme", "Acme")
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert first["created_at"] == again["created_at"]
    with raises("SX011"):
        call(db, "credits.create_tenant", "acme", "Another name")


@pytest.mark.parametrize("bad", [None, "", "UPPER", "-lead", "x" * 64, "semi;colon", "ünï"])
def test_tenant_id_is_validated(db, bad):
    with raises("SX007"):
        call(db, "credits.create_tenant", bad, "Name")
    assert db.execute("SELECT count(*) AS n FROM credits.tenants").fetchone()["n"] == 0


def test_account_open_replay_and_conflicts(db):
    call(db, "credits.create_tenant", "acme", "Acme")
    a = call(db, "credits.create_account", "acme", "main", "k1")
    assert a["replayed"] is False and a["status"] == "open"
    b = call(db, "credits.create_account", "acme", "main", "k1")
    assert b["replayed"] is True and b["account_id"] == a["account_id"]
    with raises("SX011"):  # the name is taken under another key
        call(db, "credits.create_account", "acme", "main", "k2")
    with raises("SX005"):  # the key opened another account
        call(db, "credits.create_account", "acme", "other", "k1")
    with raises("SX001"):
        call(db, "credits.create_account", "nobody", "main", "k1")
    with raises("SX006"):
        call(db, "credits.create_account", "acme", "x", None)
    with raises("SX007"):
        call(db, "credits.create_account", "acme", "", "k3")


def test_grant_consume_transfer_move_balances_and_write_entries(db):
    a, b = setup_accounts(db, grant=0)
    g = call(db, "credits.grant_credits", "acme", a, 100, "g1", "welcome")
    assert (g["amount"], g["balance_after"], g["seq"], g["replayed"]) == (100, 100, 1, False)
    c = call(db, "credits.consume", "acme", a, 30, "c1", "scan")
    assert (c["amount"], c["balance_after"], c["seq"]) == (-30, 70, 2)
    t = call(db, "credits.transfer", "acme", a, b, 20, "t1")
    assert (t["from_balance_after"], t["to_balance_after"], t["replayed"]) == (50, 20, False)
    t2 = call(db, "credits.transfer", "acme", b, a, 5, "t2")  # the other lock order
    assert (t2["from_balance_after"], t2["to_balance_after"]) == (15, 55)
    acc = call(db, "credits.get_account", "acme", a)
    assert (acc["balance"], acc["held"], acc["available"], acc["entry_seq"]) == (55, 0, 55, 4)
    entries = rows(db, "credits.list_entries", "acme", a)
    assert [e["kind"] for e in entries] == ["transfer_in", "transfer_out", "consume", "grant"]
    assert [e["amount"] for e in entries] == [5, -20, -30, 100]
    assert entries[0]["counterparty"] == b
    assert rows(db, "credits.reconcile") == []


@pytest.mark.parametrize(
    "fn,args",
    [
        ("credits.grant_credits", (7,)),
        ("credits.consume", (7,)),
    ],
)
def test_replay_returns_the_original_and_changes_nothing(db, fn, args):
    a, _ = setup_accounts(db)
    first = call(db, fn, "acme", a, *args, "same-key", "why")
    before = snapshot(db)
    again = call(db, fn, "acme", a, *args, "same-key", "why")
    assert snapshot(db) == before
    assert again["replayed"] is True
    assert {k: v for k, v in again.items() if k != "replayed"} == {k: v for k, v in first.items() if k != "replayed"}


def test_transfer_replay_and_conflict(db):
    a, b = setup_accounts(db)
    first = call(db, "credits.transfer", "acme", b, a, 10, "tk")
    before = snapshot(db)
    again = call(db, "credits.transfer", "acme", b, a, 10, "tk")
    assert snapshot(db) == before
    assert again["replayed"] and again["debit_entry_id"] == first["debit_entry_id"]
    assert again["credit_entry_id"] == first["credit_entry_id"]
    assert again["to_balance_after"] == first["to_balance_after"]
    for changed in [(b, a, 11), (a, b, 10)]:
        with raises("SX005"):
            call(db, "credits.transfer", "acme", *changed, "tk")
    assert snapshot(db) == before


def test_replay_answers_even_when_funds_are_gone(db):
    a, _b = setup_accounts(db)
    first = call(db, "credits.consume", "acme", a, 100, "all")
    again = call(db, "credits.consume", "acme", a, 100, "all")
    assert again["replayed"] and again["entry_id"] == first["entry_id"]


@pytest.mark.parametrize(
    "other",
    [
        ("credits.consume", 8, "k", None),  # different amount
        ("credits.consume", 7, "k", "other reason"),  # different reason
        ("credits.grant_credits", 7, "k", None),  # different operation
    ],
)
def test_same_key_different_arguments_is_a_conflict(db, other):
    a, _ = setup_accounts(db)
    call(db, "credits.consume", "acme", a, 7, "k", None)
    before = snapshot(db)
    fn, amount, key, reason = other
    with raises("SX005"):
        call(db, fn, "acme", a, amount, key, reason)
    assert snapshot(db) == before


def test_keys_are_scoped_per_tenant(db):
    (a,) = setup_accounts(db, "acme", n=1)
    (z,) = setup_accounts(db, "zeta", n=1)
    call(db, "credits.consume", "acme", a, 1, "shared")
    r = call(db, "credits.consume", "zeta", z, 1, "shared")
    assert r["replayed"] is False


def test_insufficient_funds_is_named_and_changes_nothing(db):
    a, b = setup_accounts(db)
    before = snapshot(db)
    with raises("SX004") as info:
        call(db, "credits.consume", "acme", a, 101, "too-much")
    assert '"available": 100' in info.value.diag.message_detail
    with raises("SX004"):
        call(db, "credits.transfer", "acme", a, b, 101, "too-much-t")
    with raises("SX004"):
        call(db, "credits.transfer", "acme", b, a, 101, "too-much-t2")
    assert snapshot(db) == before


def test_other_tenants_accounts_are_unknown(db):
    (a,) = setup_accounts(db, "acme", n=1)
    (z,) = setup_accounts(db, "zeta", n=1)
    before = snapshot(db)
    for call_args in [
        ("credits.consume", "zeta", a, 1, "x1"),
        ("credits.grant_credits", "zeta", a, 1, "x2"),
        ("credits.transfer", "zeta", z, a, 1, "x3"),
        ("credits.transfer", "zeta", a, z, 1, "x4"),
        ("credits.get_account", "zeta", a),
        ("credits.set_account_status", "zeta", a, "frozen"),
    ]:
        with raises("SX002"):
            call(db, *call_args)
    with raises("SX002"):
        rows(db, "credits.list_entries", "zeta", a)
    assert snapshot(db) == before
    assert [r["account_id"] for r in rows(db, "credits.list_accounts", "zeta")] == [z]


@pytest.mark.parametrize("amount", [0, -1, None, 10**15 + 1, -(2**63)])
def test_bad_amounts_are_refused(db, amount):
    a, b = setup_accounts(db)
    before = snapshot(db)
    for fn, args in [("credits.consume", (a,)), ("credits.grant_credits", (a,))]:
        with raises("SX003"):
            call(db, fn, "acme", *args, amount, "bad")
    with raises("SX003"):
        call(db, "credits.transfer", "acme", a, b, amount, "bad")
    assert snapshot(db) == before


@pytest.mark.parametrize("key", [None, "", "k" * 256])
def test_bad_idempotency_keys_are_refused(db, key):
    a, _ = setup_accounts(db)
    with raises("SX006"):
        call(db, "credits.consume", "acme", a, 1, key)


def test_long_reason_refused_and_unicode_kept(db):
    a, _ = setup_accounts(db)
    with raises("SX007"):
        call(db, "credits.consume", "acme", a, 1, "r", "x" * 501)
    r = call(db, "credits.consume", "acme", a, 1, "ключ-🔑", "raison d'être; DROP TABLE x;--")
    e = rows(db, "credits.list_entries", "acme", a, None, 1)[0]
    assert (e["idem_key"], e["reason"]) == ("ключ-🔑", "raison d'être; DROP TABLE x;--")
    assert r["entry_id"] == e["entry_id"]


def test_transfer_to_self_and_unknown_accounts(db):
    a, _b = setup_accounts(db)
    with raises("SX009"):
        call(db, "credits.transfer", "acme", a, a, 1, "self")
    with raises("SX002"):
        call(db, "credits.transfer", "acme", a, 999999, 1, "nowhere")
    with raises("SX002"):
        call(db, "credits.transfer", "acme", 999999, a, 1, "nowhere2")
    with raises("SX002"):
        call(db, "credits.consume", "acme", 999999, 1, "nowhere3")
    assert rows(db, "credits.reconcile") == []


def test_frozen_and_closed_accounts(db):
    a, b = setup_accounts(db)
    assert call(db, "credits.set_account_status", "acme", a, "frozen")["changed"] is True
    assert call(db, "credits.set_account_status", "acme", a, "frozen")["changed"] is False
    with raises("SX008"):
        call(db, "credits.consume", "acme", a, 1, "f1")
    with raises("SX008"):
        call(db, "credits.transfer", "acme", a, b, 1, "f2")
    call(db, "credits.grant_credits", "acme", a, 1, "f3")  # credits still arrive
    with raises("SX007"):  # a non-empty account cannot close
        call(db, "credits.set_account_status", "acme", a, "closed")
    call(db, "credits.set_account_status", "acme", a, "open")
    call(db, "credits.consume", "acme", a, 101, "drain")
    call(db, "credits.set_account_status", "acme", a, "closed")
    with raises("SX008"):
        call(db, "credits.grant_credits", "acme", a, 1, "f4")
    with raises("SX008"):  # closed is final
        call(db, "credits.set_account_status", "acme", a, "open")
    with raises("SX007"):
        call(db, "credits.set_account_status", "acme", a, "deleted")


def test_balance_limit(db):
    (a,) = setup_accounts(db, n=1, grant=0)
    big = 10**15
    db.execute("UPDATE credits.accounts SET balance = 9223372036854775807 - %s + 1 WHERE account_id = %s", (big, a))
    with raises("SX010"):
        call(db, "credits.grant_credits", "acme", a, big, "overflow")


def test_entry_history_keyset_pagination(db):
    a, _ = setup_accounts(db, grant=0)
    for i in range(25):
        call(db, "credits.grant_credits", "acme", a, i + 1, f"g{i}")
    seen, before = [], None
    while True:
        page = rows(db, "credits.list_entries", "acme", a, before, 10)
        seen += [e["seq"] for e in page]
        if len(page) < 10:
            break
        before = page[-1]["seq"]
    assert seen == list(range(25, 0, -1))
    with raises("SX007"):
        rows(db, "credits.list_entries", "acme", a, None, 0)
    with raises("SX007"):
        rows(db, "credits.list_entries", "acme", a, None, 1001)


def test_reconcile_finds_a_balance_edited_behind_the_ledger(db):
    a, _b = setup_accounts(db)
    call(db, "credits.consume", "acme", a, 10, "c")
    assert rows(db, "credits.reconcile") == []
    db.execute("UPDATE credits.accounts SET balance = balance + 5 WHERE account_id = %s", (a,))
    bad = rows(db, "credits.reconcile")
    assert [r["account_id"] for r in bad] == [a]
    assert "balance differs" in bad[0]["problem"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE credits.entries SET amount = 1000",
        "DELETE FROM credits.entries",
        "TRUNCATE credits.entries CASCADE",
    ],
)
def test_entries_are_append_only_even_for_superusers_in_replica_mode(db, statement):
    setup_accounts(db)
    db.execute("SET session_replication_role = replica")
    with raises("42501"):
        db.execute(statement)
    db.execute("RESET session_replication_role")
    assert rows(db, "credits.reconcile") == []


def test_negative_balance_is_impossible_even_by_direct_sql(db):
    a, _ = setup_accounts(db)
    with raises("23514"):
        db.execute("UPDATE credits.accounts SET balance = -1 WHERE account_id = %s", (a,))
    with raises("23514"):
        db.execute("UPDATE credits.accounts SET held = balance + 1 WHERE account_id = %s", (a,))
