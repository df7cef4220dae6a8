"""Holds and distributed transactions: every transition, legal and illegal, as a DBA calls them."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest

from helpers import call, raises, rows, setup_accounts, snapshot


def held(db, tenant: str, acc: int) -> tuple[int, int, int]:
    a = call(db, "credits.get_account", tenant, acc)
    return a["balance"], a["held"], a["available"]


def proofs_are_empty(db) -> None:
    assert rows(db, "credits.reconcile") == []
    assert rows(db, "credits.reconcile_holds") == []


# --- holds: active -> captured | voided | expired -------------------------------------------


def test_reserve_counts_against_available_at_once_and_never_overdraws(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h = call(db, "credits.reserve", "acme", a, 60, "r1")
    assert (h["status"], h["amount"], h["replayed"]) == ("active", 60, False)
    assert held(db, "acme", a) == (100, 60, 40)
    before = snapshot(db)
    with raises("SX004"):
        call(db, "credits.reserve", "acme", a, 41, "r2")
    with raises("SX004"):  # consume's guard sees the hold too
        call(db, "credits.consume", "acme", a, 41, "c1")
    assert snapshot(db) == before
    call(db, "credits.consume", "acme", a, 40, "c2")
    assert held(db, "acme", a) == (60, 60, 0)
    proofs_are_empty(db)


def test_reserve_replay_and_conflict(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    first = call(db, "credits.reserve", "acme", a, 30, "r1", "5 minutes", "scan")
    again = call(db, "credits.reserve", "acme", a, 30, "r1", "5 minutes", "scan")
    assert again["replayed"] is True
    assert {k: v for k, v in again.items() if k != "replayed"} == {k: v for k, v in first.items() if k != "replayed"}
    assert held(db, "acme", a) == (100, 30, 70)
    with raises("SX005"):
        call(db, "credits.reserve", "acme", a, 31, "r1", "5 minutes", "scan")
    # Keys are per tenant: another tenant may use the same key.
    (b,) = setup_accounts(db, tenant="beta", n=1, grant=10)
    assert call(db, "credits.reserve", "beta", b, 5, "r1")["replayed"] is False
    # A replay answers even when the funds are gone by now.
    call(db, "credits.consume", "acme", a, 70, "drain")
    assert call(db, "credits.reserve", "acme", a, 30, "r1", "5 minutes", "scan")["replayed"] is True
    proofs_are_empty(db)


@pytest.mark.parametrize(
    "args,sqlstate",
    [
        (("acme", "{a}", 0, "k"), "SX003"),
        (("acme", "{a}", -1, "k"), "SX003"),
        (("acme", "{a}", 1, ""), "SX006"),
        (("acme", "{a}", 1, "dist:1:1"), "SX007"),
        (("acme", "{a}", 1, "k", "0 seconds"), "SX106"),
        (("acme", "{a}", 1, "k", "-1 seconds"), "SX106"),
        (("acme", "{a}", 1, "k", "31 days"), "SX106"),
        (("acme", 999999, 1, "k"), "SX002"),
        (("zeta", "{a}", 1, "k"), "SX002"),
    ],
)
def test_reserve_refusals(db, args, sqlstate):
    (a,) = setup_accounts(db, n=1, grant=100)
    before = snapshot(db)
    with raises(sqlstate):
        call(db, "credits.reserve", *[a if x == "{a}" else x for x in args])
    assert snapshot(db) == before


def test_reserve_on_frozen_account_refused_but_existing_hold_captures(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h = call(db, "credits.reserve", "acme", a, 10, "r1")
    call(db, "credits.set_account_status", "acme", a, "frozen")
    with raises("SX008"):
        call(db, "credits.reserve", "acme", a, 10, "r2")
    c = call(db, "credits.commit_hold", "acme", h["hold_id"])
    assert c["balance_after"] == 90
    proofs_are_empty(db)


def test_full_capture_journals_once_and_replays(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h = call(db, "credits.reserve", "acme", a, 40, "r1", "5 minutes", "job 7")
    c = call(db, "credits.commit_hold", "acme", h["hold_id"])
    assert (c["captured"], c["released"], c["balance_after"], c["seq"], c["replayed"]) == (40, 0, 60, 2, False)
    assert held(db, "acme", a) == (60, 0, 60)
    entry = db.execute("SELECT * FROM credits.entries WHERE entry_id = %s", (c["entry_id"],)).fetchone()
    assert (entry["kind"], entry["amount"], entry["idem_key"], entry["leg"], entry["reason"]) == (
        "capture",
        -40,
        "r1",
        2,
        "job 7",
    )
    again = call(db, "credits.commit_hold", "acme", h["hold_id"])
    assert again["replayed"] is True
    assert {k: v for k, v in again.items() if k != "replayed"} == {k: v for k, v in c.items() if k != "replayed"}
    assert call(db, "credits.commit_hold", "acme", h["hold_id"], 40)["replayed"] is True
    with raises("SX005"):  # the same hold committed for another amount
        call(db, "credits.commit_hold", "acme", h["hold_id"], 39)
    assert db.execute("SELECT count(*) AS n FROM credits.entries WHERE kind = 'capture'").fetchone()["n"] == 1
    proofs_are_empty(db)


def test_partial_capture_releases_the_rest(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h = call(db, "credits.reserve", "acme", a, 50, "r1")
    c = call(db, "credits.commit_hold", "acme", h["hold_id"], 20, "actual usage")
    assert (c["captured"], c["released"], c["balance_after"]) == (20, 30, 80)
    assert held(db, "acme", a) == (80, 0, 80)
    with raises("SX105"):
        call(db, "credits.commit_hold", "acme", call(db, "credits.reserve", "acme", a, 5, "r2")["hold_id"], 6)
    with raises("SX003"):
        call(db, "credits.commit_hold", "acme", h["hold_id"], 0)
    proofs_are_empty(db)


def test_abort_releases_and_replays(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h = call(db, "credits.reserve", "acme", a, 50, "r1")
    v = call(db, "credits.abort_hold", "acme", h["hold_id"])
    assert (v["status"], v["replayed"]) == ("voided", False)
    assert held(db, "acme", a) == (100, 0, 100)
    again = call(db, "credits.abort_hold", "acme", h["hold_id"])
    assert again["replayed"] is True and again["resolved_at"] == v["resolved_at"]
    assert db.execute("SELECT count(*) AS n FROM credits.entries").fetchone()["n"] == 1  # only the seed grant
    proofs_are_empty(db)


def test_illegal_hold_transitions_have_their_own_errors(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    committed = call(db, "credits.reserve", "acme", a, 10, "r1")["hold_id"]
    aborted = call(db, "credits.reserve", "acme", a, 10, "r2")["hold_id"]
    call(db, "credits.commit_hold", "acme", committed)
    call(db, "credits.abort_hold", "acme", aborted)
    before = snapshot(db)
    with raises("SX103"):
        call(db, "credits.abort_hold", "acme", committed)  # abort after commit
    with raises("SX102"):
        call(db, "credits.commit_hold", "acme", aborted)  # commit after abort
    with raises("SX101"):
        call(db, "credits.commit_hold", "acme", 987654)
    with raises("SX101"):
        call(db, "credits.abort_hold", "beta", committed)  # another tenant's hold is unknown
    with raises("SX101"):
        call(db, "credits.get_hold", "acme", 987654)
    assert snapshot(db) == before


def test_use_after_expiry_is_refused_even_before_any_job_ran(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h1 = call(db, "credits.reserve", "acme", a, 30, "r1", "50 milliseconds")["hold_id"]
    h2 = call(db, "credits.reserve", "acme", a, 30, "r2", "50 milliseconds")["hold_id"]
    time.sleep(0.1)
    assert call(db, "credits.get_hold", "acme", h1)["status"] == "expired"
    assert db.execute("SELECT status FROM credits.holds WHERE hold_id = %s", (h1,)).fetchone()["status"] == "active"
    before = snapshot(db)
    with raises("SX104"):
        call(db, "credits.commit_hold", "acme", h1)
    with raises("SX104"):
        call(db, "credits.commit_hold", "acme", h1, 1)
    with raises("SX104"):
        call(db, "credits.abort_hold", "acme", h2)
    assert snapshot(db) == before
    # The job releases them, once; running it again finds nothing.
    assert call(db, "credits.expire_holds") == {"accounts": 1, "holds": 2, "amount": 60}
    assert call(db, "credits.expire_holds") == {"accounts": 0, "holds": 0, "amount": 0}
    assert held(db, "acme", a) == (100, 0, 100)
    with raises("SX104"):
        call(db, "credits.commit_hold", "acme", h1)
    proofs_are_empty(db)


def test_reserve_releases_expired_holds_lazily(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    call(db, "credits.reserve", "acme", a, 80, "r1", "50 milliseconds")
    time.sleep(0.1)
    assert held(db, "acme", a) == (100, 80, 20)  # no job has run
    h = call(db, "credits.reserve", "acme", a, 90, "r2")
    assert h["replayed"] is False
    assert held(db, "acme", a) == (100, 90, 10)
    assert [r["status"] for r in rows(db, "credits.list_holds", "acme", a)] == ["active", "expired"]
    proofs_are_empty(db)


def test_release_expired_holds_contract(db):
    """The private function consume and transfer call when they refuse a debit."""
    (a, b) = setup_accounts(db, n=2, grant=100)
    call(db, "credits.reserve", "acme", a, 30, "r1", "50 milliseconds")
    call(db, "credits.reserve", "acme", a, 20, "r2", "50 milliseconds")
    keep = call(db, "credits.reserve", "acme", a, 10, "r3", "1 hour")["hold_id"]
    call(db, "credits.reserve", "acme", b, 5, "r4", "50 milliseconds")
    time.sleep(0.1)
    assert db.execute("SELECT credits._release_expired_holds(%s) AS x", (a,)).fetchone()["x"] == 50
    assert db.execute("SELECT credits._release_expired_holds(%s) AS x", (a,)).fetchone()["x"] == 0
    assert db.execute("SELECT credits._release_expired_holds(%s) AS x", (987654,)).fetchone()["x"] == 0
    assert held(db, "acme", a) == (100, 10, 90)
    assert held(db, "acme", b) == (100, 5, 95)  # other accounts untouched
    assert call(db, "credits.get_hold", "acme", keep)["status"] == "active"
    proofs_are_empty(db)


def test_hold_rows_refuse_illegal_transitions_whoever_writes(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h = call(db, "credits.reserve", "acme", a, 10, "r1", "50 milliseconds")["hold_id"]
    g = call(db, "credits.reserve", "acme", a, 10, "r2")["hold_id"]
    call(db, "credits.commit_hold", "acme", g)
    time.sleep(0.1)
    for stmt, args in [
        ("UPDATE credits.holds SET status = 'captured', captured = 10, resolved_at = now() WHERE hold_id = %s", (h,)),
        ("UPDATE credits.holds SET status = 'voided' WHERE hold_id = %s", (g,)),
        ("UPDATE credits.holds SET amount = 11 WHERE hold_id = %s", (h,)),
        ("UPDATE credits.holds SET expires_at = 'infinity' WHERE hold_id = %s", (h,)),
    ]:
        with raises("23514"):
            db.execute(stmt, args)
    with raises("42501"):
        db.execute("DELETE FROM credits.holds WHERE hold_id = %s", (h,))
    with raises("23514"):  # the table's own check: captured within the amount
        db.execute(
            "UPDATE credits.holds SET status = 'captured', captured = 99, resolved_at = now() WHERE hold_id = %s",
            (call(db, "credits.reserve", "acme", a, 5, "r3")["hold_id"],),
        )


def test_app_role_may_call_the_api_but_not_the_private_functions(db, connect):
    (a,) = setup_accounts(db, n=1, grant=100)
    app = connect("shieldx_app")
    h = call(app, "credits.reserve", "acme", a, 10, "r1")
    call(app, "credits.commit_hold", "acme", h["hold_id"])
    for stmt in [
        "SELECT credits._release_expired_holds(1)",
        "SELECT * FROM credits._expire_holds_at(now())",
        "SELECT * FROM credits.holds",
        "UPDATE credits.holds SET reason = 'x'",
    ]:
        with raises("42501"):
            app.execute(stmt)


# --- distributed transactions ----------------------------------------------------------------


def legs(*triples) -> psycopg.types.json.Jsonb:
    return psycopg.types.json.Jsonb([{"tenant_id": t, "account_id": a, "amount": n} for t, a, n in triples])


@pytest.fixture
def two_tenants(db):
    a, b = setup_accounts(db, tenant="acme", n=2, grant=100)
    (c,) = setup_accounts(db, tenant="beta", n=1, grant=100)
    return a, b, c


def test_dist_commit_moves_all_legs_across_tenants(db, two_tenants):
    a, b, c = two_tenants
    t = call(db, "credits.dist_begin", "x1", legs(("acme", a, -30), ("acme", b, -20), ("beta", c, 50)))
    assert (t["state"], t["legs"], t["replayed"]) == ("active", 3, False)
    assert call(db, "credits.dist_begin", "x1", legs(("acme", a, -30), ("acme", b, -20), ("beta", c, 50)))["replayed"]
    with raises("SX005"):
        call(db, "credits.dist_begin", "x1", legs(("acme", a, -31), ("beta", c, 31)))
    p = call(db, "credits.dist_prepare", "x1")
    assert (p["state"], p["votes_yes"], p["votes_no"]) == ("prepared", 3, 0)
    assert held(db, "acme", a) == (100, 30, 70)
    assert call(db, "credits.dist_prepare", "x1")["replayed"] is True
    # Legs' holds belong to the transaction.
    hold = db.execute("SELECT hold_id FROM credits.holds WHERE account_id = %s", (a,)).fetchone()["hold_id"]
    with raises("SX113"):
        call(db, "credits.commit_hold", "acme", hold)
    with raises("SX113"):
        call(db, "credits.abort_hold", "acme", hold)
    r = call(db, "credits.dist_commit", "x1")
    assert (r["state"], r["decision"], r["replayed"]) == ("committed", "commit", False)
    assert held(db, "acme", a) == (70, 0, 70)
    assert held(db, "acme", b) == (80, 0, 80)
    assert held(db, "beta", c) == (150, 0, 150)
    assert call(db, "credits.dist_commit", "x1")["replayed"] is True
    with raises("SX109"):
        call(db, "credits.dist_abort", "x1")  # abort after commit
    with raises("SX109"):
        call(db, "credits.dist_decide", "x1", "abort")
    with raises("SX005"):  # the xid names a transaction that is done
        call(db, "credits.dist_begin", "x1", legs(("acme", a, -1)))
    tx = call(db, "credits.get_dist_transaction", "x1")
    assert [e["event"] for e in tx["events"]] == [
        "begun",
        "voted_yes",
        "voted_yes",
        "voted_yes",
        "prepared",
        "decided_commit",
        "leg_committed",
        "leg_committed",
        "leg_committed",
        "committed",
    ]
    assert {p["outcome"] for p in tx["participants"]} == {"committed"}
    proofs_are_empty(db)


def test_dist_a_no_vote_aborts_everything(db, two_tenants):
    a, b, c = two_tenants
    call(db, "credits.dist_begin", "x2", legs(("acme", a, -30), ("acme", b, -500), ("beta", c, 530)))
    p = call(db, "credits.dist_prepare", "x2")
    assert (p["state"], p["decision"], p["votes_no"]) == ("aborted", "abort", 1)
    assert held(db, "acme", a) == (100, 0, 100)  # a's yes-vote hold was voided
    tx = call(db, "credits.get_dist_transaction", "x2")
    assert tx["reason"] == "a participant voted no"
    no = [p for p in tx["participants"] if p["vote"] == "no"]
    assert no[0]["account_id"] == b and no[0]["vote_reason"].startswith("SX004")
    with raises("SX108"):
        call(db, "credits.dist_commit", "x2")  # commit after abort
    with raises("SX108"):
        call(db, "credits.dist_prepare", "x2")
    assert call(db, "credits.dist_abort", "x2")["replayed"] is True
    proofs_are_empty(db)


def test_dist_votes_no_for_unknown_frozen_or_closed_accounts(db, two_tenants):
    a, b, c = two_tenants
    call(db, "credits.set_account_status", "acme", b, "frozen")
    call(db, "credits.dist_begin", "x3", legs(("acme", a, -10), ("acme", b, -10)))
    assert call(db, "credits.dist_prepare", "x3")["state"] == "aborted"
    call(db, "credits.dist_begin", "x4", legs(("acme", a, -10), ("acme", c, 10)))  # c belongs to beta
    assert call(db, "credits.dist_prepare", "x4")["state"] == "aborted"
    reasons = [
        p["vote_reason"] for p in call(db, "credits.get_dist_transaction", "x4")["participants"] if p["vote"] == "no"
    ]
    assert reasons[0].startswith("SX002")
    proofs_are_empty(db)


def test_dist_illegal_transitions(db, two_tenants):
    a, _b, c = two_tenants
    call(db, "credits.dist_begin", "x5", legs(("acme", a, -10), ("beta", c, 10)))
    before = snapshot(db)
    with raises("SX110"):
        call(db, "credits.dist_commit", "x5")  # commit before prepare
    with raises("SX110"):
        call(db, "credits.dist_decide", "x5", "commit")
    with raises("SX110"):
        call(db, "credits.dist_complete", "x5")  # nothing decided
    with raises("SX107"):
        call(db, "credits.dist_commit", "nope")
    with raises("SX007"):
        call(db, "credits.dist_decide", "x5", "maybe")
    assert snapshot(db) == before
    # abort from active is legal
    assert call(db, "credits.dist_abort", "x5")["state"] == "aborted"
    for bad in [
        psycopg.types.json.Jsonb([]),
        psycopg.types.json.Jsonb({"a": 1}),
        legs(("acme", a, 0)),
        legs(("acme", a, -1), ("acme", a, 1)),
        psycopg.types.json.Jsonb([{"tenant_id": "acme", "account_id": a, "amount": 1.5}]),
        psycopg.types.json.Jsonb([{"tenant_id": "acme", "account_id": a, "amount": 1, "x": 1}]),
    ]:
        with raises("SX112"):
            call(db, "credits.dist_begin", "bad", bad)
    with raises("SX106"):
        call(db, "credits.dist_begin", "bad", legs(("acme", a, -1)), "0 seconds")
    # The table refuses illegal transitions whoever writes.
    with raises("23514"):
        db.execute(
            "UPDATE credits.dist_transactions SET state = 'committing', decision = 'commit', "
            "decided_at = now() WHERE xid = 'x5'"
        )


def test_dist_decide_then_complete_in_separate_calls(db, two_tenants):
    a, _b, c = two_tenants
    call(db, "credits.dist_begin", "x6", legs(("acme", a, -10), ("beta", c, 10)), "1 second")
    call(db, "credits.dist_prepare", "x6")
    d = call(db, "credits.dist_decide", "x6", "commit")
    assert (d["state"], d["replayed"]) == ("committing", False)
    assert call(db, "credits.dist_decide", "x6", "commit")["replayed"] is True
    with raises("SX109"):
        call(db, "credits.dist_decide", "x6", "abort")
    time.sleep(1.1)  # past the deadline: the decision is logged, so the legs are pinned
    assert call(db, "credits.expire_holds")["holds"] == 0
    r = call(db, "credits.dist_complete", "x6")
    assert r["state"] == "committed"
    assert held(db, "beta", c) == (110, 0, 110)
    proofs_are_empty(db)


def test_dist_commit_past_deadline_is_refused(db, two_tenants):
    a, b, c = two_tenants
    call(db, "credits.dist_begin", "x7", legs(("acme", a, -10), ("beta", c, 10)), "50 milliseconds")
    call(db, "credits.dist_prepare", "x7")
    time.sleep(0.1)
    before = snapshot(db)
    with raises("SX111"):
        call(db, "credits.dist_commit", "x7")
    assert snapshot(db) == before
    call(db, "credits.dist_begin", "x8", legs(("acme", b, -10)), "50 milliseconds")
    time.sleep(0.1)
    with raises("SX111"):
        call(db, "credits.dist_prepare", "x8")


def test_closing_an_account_with_a_pending_distributed_credit_is_refused(db, two_tenants):
    a, _b, _c = two_tenants
    (d,) = setup_accounts(db, tenant="gamma", n=1, grant=0)
    call(db, "credits.dist_begin", "x9", legs(("acme", a, -10), ("gamma", d, 10)))
    call(db, "credits.dist_prepare", "x9")
    with raises("SX114"):
        call(db, "credits.set_account_status", "gamma", d, "closed")
    call(db, "credits.dist_abort", "x9")
    assert call(db, "credits.set_account_status", "gamma", d, "closed")["status"] == "closed"
    call(db, "credits.dist_begin", "x10", legs(("acme", a, -10), ("gamma", d, 10)))
    assert call(db, "credits.dist_prepare", "x10")["state"] == "aborted"  # closed: votes no


# --- external coordinators -------------------------------------------------------------------


def test_external_prepare_commit_abort_idempotent(db, two_tenants):
    a, _b, c = two_tenants
    p = call(db, "credits.ext_prepare", "ext-1", legs(("acme", a, -25), ("beta", c, 25)))
    assert (p["vote"], p["state"], p["replayed"]) == ("yes", "prepared", False)
    again = call(db, "credits.ext_prepare", "ext-1", legs(("acme", a, -25), ("beta", c, 25)))
    assert (again["vote"], again["replayed"]) == ("yes", True)
    assert held(db, "acme", a) == (100, 25, 75)
    assert call(db, "credits.ext_commit", "ext-1")["state"] == "committed"
    assert call(db, "credits.ext_commit", "ext-1")["replayed"] is True
    with raises("SX109"):
        call(db, "credits.ext_abort", "ext-1")
    assert held(db, "beta", c) == (125, 0, 125)
    # A no vote, then the coordinator aborts (idempotently).
    no = call(db, "credits.ext_prepare", "ext-2", legs(("acme", a, -1000)))
    assert (no["vote"], no["state"]) == ("no", "aborted") and no["reason"].startswith("SX004")
    assert call(db, "credits.ext_abort", "ext-2")["replayed"] is True
    with raises("SX108"):
        call(db, "credits.ext_commit", "ext-2")
    # Unknown ids: commit is refused; abort leaves a tombstone, a late prepare votes no.
    with raises("SX107"):
        call(db, "credits.ext_commit", "ext-404")
    assert call(db, "credits.ext_abort", "ext-3")["state"] == "aborted"
    late = call(db, "credits.ext_prepare", "ext-3", legs(("acme", a, -1)))
    assert (late["vote"], late["state"]) == ("no", "aborted")
    # Bad arguments are refused by name, an aborted xid's included.
    for xid in ("ext-3", "ext-new"):
        with raises("SX112"):
            call(db, "credits.ext_prepare", xid, psycopg.types.json.Jsonb([{"tenant_id": "acme", "account_id": a}]))
        with raises("SX106"):
            call(db, "credits.ext_prepare", xid, legs(("acme", a, -1)), timedelta(0))
    with raises("SX007"):
        call(db, "credits.ext_prepare", "", legs(("acme", a, -1)))
    assert held(db, "acme", a) == (75, 0, 75)
    # An internal transaction is not the external coordinator's to drive.
    call(db, "credits.dist_begin", "int-1", legs(("acme", a, -1)))
    with raises("SX107"):
        call(db, "credits.ext_commit", "int-1")
    proofs_are_empty(db)
