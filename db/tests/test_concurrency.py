"""Concurrency on a real server: no overdraft, no deadlock, one effect per key."""

from __future__ import annotations

import random

import psycopg

from helpers import call, rows, run_threads, setup_accounts


def test_32_consumers_on_one_account_end_exact_and_never_negative(db, connect):
    (acc,) = setup_accounts(db, n=1, grant=1000)
    conns = [connect() for _ in range(32)]
    done = [0] * 32
    refused = [0] * 32

    def consumer(i: int) -> None:
        conn = conns[i]
        for k in range(40):  # 32 x 40 x 1 = 1280 asked, 1000 available
            try:
                call(conn, "credits.consume", "acme", acc, 1, f"c-{i}-{k}")
                done[i] += 1
            except psycopg.Error as exc:
                assert exc.sqlstate == "SX004", exc
                refused[i] += 1

    assert run_threads(32, consumer) == []
    assert sum(done) == 1000 and sum(refused) == 280
    account = call(db, "credits.get_account", "acme", acc)
    assert account["balance"] == 0 and account["entry_seq"] == 1001
    assert rows(db, "credits.reconcile") == []
    assert db.execute("SELECT min(balance_after) AS m FROM credits.entries").fetchone()["m"] == 0


def test_opposite_transfers_never_deadlock_and_conserve_credits(db, connect):
    ids = setup_accounts(db, n=4, grant=10_000)
    conns = [connect() for _ in range(16)]

    def mover(i: int) -> None:
        rnd = random.Random(i)
        for k in range(60):
            a, b = rnd.sample(ids, 2)
            try:
                call(conns[i], "credits.transfer", "acme", a, b, rnd.randint(1, 50), f"t-{i}-{k}")
            except psycopg.Error as exc:
                assert exc.sqlstate == "SX004", exc  # never 40P01 (deadlock)

    assert run_threads(16, mover) == []
    total = db.execute("SELECT sum(balance) AS s FROM credits.accounts").fetchone()["s"]
    assert total == 40_000
    assert rows(db, "credits.reconcile") == []


def test_same_key_raced_by_many_clients_applies_once(db, connect):
    a, b = setup_accounts(db, grant=1000)
    conns = [connect() for _ in range(12)]
    results: list[dict] = []

    def racer(i: int) -> None:
        results.append(call(conns[i], "credits.transfer", "acme", a, b, 7, "the-one-key"))

    assert run_threads(12, racer) == []
    assert sum(1 for r in results if not r["replayed"]) == 1
    assert len({r["debit_entry_id"] for r in results}) == 1
    assert call(db, "credits.get_account", "acme", a)["balance"] == 993
    assert rows(db, "credits.reconcile") == []
