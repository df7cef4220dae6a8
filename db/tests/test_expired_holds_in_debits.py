"""A hold past its deadline stops counting against available at the moment a
debit needs the credits, even when no expiry job has run (correct by construction)."""

from __future__ import annotations

import time

from helpers import call, raises, rows, setup_accounts


def _expired_hold(db, account: int, amount: int) -> int:
    hold = call(db, "credits.reserve", "acme", account, amount, f"hold-{account}-{amount}", "150 milliseconds")
    time.sleep(0.3)
    return hold["hold_id"]


def test_consume_releases_expired_holds_before_refusing(db):
    a, _ = setup_accounts(db)
    call(db, "credits.reserve", "acme", a, 40, "live-hold", "1 hour")  # still active: must keep counting
    _expired_hold(db, a, 60)
    assert call(db, "credits.get_account", "acme", a)["held"] == 100  # no job has run
    r = call(db, "credits.consume", "acme", a, 60, "after-expiry")
    assert r["balance_after"] == 40 and r["replayed"] is False
    acc = call(db, "credits.get_account", "acme", a)
    assert (acc["balance"], acc["held"], acc["available"]) == (40, 40, 0)
    with raises("SX004"):  # the live hold still counts
        call(db, "credits.consume", "acme", a, 1, "one-more")
    assert rows(db, "credits.reconcile") == []
    assert rows(db, "credits.reconcile_holds") == []


def test_transfer_releases_expired_holds_in_either_lock_order(db):
    a, b = setup_accounts(db)
    _expired_hold(db, a, 100)
    _expired_hold(db, b, 100)
    t1 = call(db, "credits.transfer", "acme", a, b, 100, "low-to-high")
    assert t1["from_balance_after"] == 0 and t1["to_balance_after"] == 200
    t2 = call(db, "credits.transfer", "acme", b, a, 200, "high-to-low")
    assert t2["from_balance_after"] == 0 and t2["to_balance_after"] == 200
    assert call(db, "credits.get_account", "acme", b)["held"] == 0
    assert rows(db, "credits.reconcile") == []
    assert rows(db, "credits.reconcile_holds") == []


def test_expired_hold_cannot_be_spent_twice_by_release_and_capture(db):
    a, _ = setup_accounts(db)
    hold = _expired_hold(db, a, 100)
    call(db, "credits.consume", "acme", a, 100, "spend-all")
    with raises(
        db.execute("SELECT sqlstate FROM ops.error_catalog WHERE name = 'hold_expired'").fetchone()["sqlstate"]
    ):
        call(db, "credits.commit_hold", "acme", hold, None, "capture-late")
    assert call(db, "credits.get_account", "acme", a)["balance"] == 0
