"""Hold and account changes are chained per account, under the account's row lock."""

from __future__ import annotations

import threading

import psycopg

from helpers import call, rows, setup_accounts


def _stream(db, name: str) -> list[dict]:
    return db.execute("SELECT seq, source, op FROM audit.log WHERE stream = %s ORDER BY seq", (name,)).fetchall()


def test_hold_changes_form_one_gap_free_chain_per_account(db):
    a, b = setup_accounts(db)
    h1 = call(db, "credits.reserve", "acme", a, 10, "r1")["hold_id"]
    call(db, "credits.reserve", "acme", b, 5, "r2")
    call(db, "credits.commit_hold", "acme", h1)
    h3 = call(db, "credits.reserve", "acme", a, 7, "r3")["hold_id"]
    call(db, "credits.abort_hold", "acme", h3)
    chain_a = _stream(db, f"credits.holds/{a}")
    assert [r["seq"] for r in chain_a] == [1, 2, 3, 4]
    assert [r["op"] for r in chain_a] == ["INSERT", "UPDATE", "INSERT", "UPDATE"]
    assert [r["seq"] for r in _stream(db, f"credits.holds/{b}")] == [1]
    call(db, "credits.set_account_status", "acme", a, "frozen")
    assert [r["op"] for r in _stream(db, f"credits.accounts/{a}")] == ["INSERT", "UPDATE"]
    assert call(db, "audit.verify", False, True)["ok"]


def test_concurrent_holds_on_many_accounts_keep_every_chain_whole(db, connect):
    ids = setup_accounts(db, n=4, grant=1000)
    conns = [connect() for _ in range(8)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for k in range(15):
                acc = ids[(i + k) % len(ids)]
                h = call(conns[i], "credits.reserve", "acme", acc, 1, f"w{i}-{k}")["hold_id"]
                if k % 2:
                    call(conns[i], "credits.commit_hold", "acme", h)
                else:
                    call(conns[i], "credits.abort_hold", "acme", h)
        except psycopg.Error as exc:  # asserted below: there must be none
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for acc in ids:
        seqs = [r["seq"] for r in _stream(db, f"credits.holds/{acc}")]
        assert seqs == list(range(1, len(seqs) + 1))
    assert sum(len(_stream(db, f"credits.holds/{acc}")) for acc in ids) == 8 * 15 * 2
    assert call(db, "audit.verify", False, True)["ok"]
    assert rows(db, "credits.reconcile") == [] and rows(db, "credits.reconcile_holds") == []
