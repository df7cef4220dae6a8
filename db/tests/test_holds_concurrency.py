"""Holds under concurrency on a real server: no overdraft, one resolution per hold, no deadlock."""

from __future__ import annotations

import random
import threading
import time

import psycopg
from psycopg.rows import dict_row

from helpers import call, rows, run_threads, setup_accounts


def test_many_clients_reserving_against_one_account_never_overdraw(db, connect):
    (acc,) = setup_accounts(db, n=1, grant=1000)
    conns = [connect() for _ in range(24)]
    holds: list[list[int]] = [[] for _ in range(24)]
    refused = [0] * 24

    def reserver(i: int) -> None:
        for k in range(30):  # 24 x 30 x 2 = 1440 asked, 1000 there
            try:
                holds[i].append(call(conns[i], "credits.reserve", "acme", acc, 2, f"r-{i}-{k}")["hold_id"])
            except psycopg.Error as exc:
                assert exc.sqlstate == "SX004", exc
                refused[i] += 1
            # consumers compete for the same available credits
            if k % 10 == 0:
                try:
                    call(conns[i], "credits.consume", "acme", acc, 1, f"c-{i}-{k}")
                except psycopg.Error as exc:
                    assert exc.sqlstate == "SX004", exc

    assert run_threads(24, reserver) == []
    a = call(db, "credits.get_account", "acme", acc)
    total_holds = sum(len(h) for h in holds)
    assert a["held"] == 2 * total_holds and a["available"] >= 0
    assert a["balance"] + 0 == 1000 - (a["entry_seq"] - 1)  # each consume took 1
    assert a["available"] <= 1  # everything asked for beyond the funds was refused
    assert rows(db, "credits.reconcile_holds") == [] and rows(db, "credits.reconcile") == []

    # Now resolve them all concurrently: half commit, half abort, each raced by two clients.
    flat = [h for hs in holds for h in hs]
    outcomes: dict[int, list[str]] = {h: [] for h in flat}
    lock = threading.Lock()

    def resolver(i: int) -> None:
        rnd = random.Random(i)
        mine = flat[:]
        rnd.shuffle(mine)
        for h in mine:
            if (h + i) % 3:  # not every client touches every hold
                continue
            op = "credits.commit_hold" if h % 2 else "credits.abort_hold"
            try:
                r = call(conns[i], op, "acme", h)
                with lock:
                    outcomes[h].append("replayed" if r["replayed"] else "first")
            except psycopg.Error as exc:
                assert exc.sqlstate in ("SX102", "SX103"), exc

    assert run_threads(24, resolver) == []
    for h, seen in outcomes.items():
        assert seen.count("first") == 1, (h, seen)
    a = call(db, "credits.get_account", "acme", acc)
    captures = sum(1 for h in flat if h % 2)
    assert a["held"] == 0
    assert db.execute("SELECT count(*) AS n FROM credits.entries WHERE kind = 'capture'").fetchone()["n"] == captures
    assert rows(db, "credits.reconcile_holds") == [] and rows(db, "credits.reconcile") == []


def test_commit_racing_expiry_job_resolves_each_hold_once(db, connect):
    (acc,) = setup_accounts(db, n=1, grant=10_000)
    ids = [call(db, "credits.reserve", "acme", acc, 10, f"r{k}", "400 milliseconds")["hold_id"] for k in range(200)]
    conns = [connect() for _ in range(6)]
    results: dict[int, str] = {}

    def worker(i: int) -> None:
        if i == 0:
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:  # the job, run again and again
                call(conns[0], "credits.expire_holds")
            return
        for h in ids[i - 1 :: 5]:
            time.sleep(0.002)
            try:
                call(conns[i], "credits.commit_hold", "acme", h)
                results[h] = "captured"
            except psycopg.Error as exc:
                assert exc.sqlstate == "SX104", exc
                results[h] = "expired"

    assert run_threads(6, worker) == []
    call(db, "credits.expire_holds")
    st = {r["hold_id"]: r["status"] for r in db.execute("SELECT hold_id, status FROM credits.holds").fetchall()}
    assert all(st[h] == results[h] for h in ids)
    a = call(db, "credits.get_account", "acme", acc)
    assert a["held"] == 0 and a["balance"] == 10_000 - 10 * list(results.values()).count("captured")
    assert rows(db, "credits.reconcile_holds") == [] and rows(db, "credits.reconcile") == []


def test_distributed_transactions_in_opposite_orders_never_deadlock(db, connect):
    ids = setup_accounts(db, n=4, grant=10_000)
    conns = [connect() for _ in range(8)]

    def mover(i: int) -> None:
        rnd = random.Random(i)
        for k in range(25):
            a, b, c = rnd.sample(ids, 3)
            xid = f"d-{i}-{k}"
            legs = psycopg.types.json.Jsonb(
                [
                    {"tenant_id": "acme", "account_id": a, "amount": -3},
                    {"tenant_id": "acme", "account_id": b, "amount": -2},
                    {"tenant_id": "acme", "account_id": c, "amount": 5},
                ]
            )
            call(conns[i], "credits.dist_begin", xid, legs)
            call(conns[i], "credits.dist_prepare", xid)
            if k % 4 == 3:
                call(conns[i], "credits.dist_abort", xid)
            else:
                call(conns[i], "credits.dist_commit", xid)
            # single holds on the same accounts in between
            h = call(conns[i], "credits.reserve", "acme", c, 1, f"h-{i}-{k}")["hold_id"]
            call(conns[i], "credits.commit_hold", "acme", h)

    assert run_threads(8, mover) == []  # a 40P01 would surface here
    total = db.execute("SELECT sum(balance) AS s, sum(held) AS h FROM credits.accounts").fetchone()
    assert total["s"] == 40_000 - 8 * 25 and total["h"] == 0
    assert rows(db, "credits.reconcile_holds") == [] and rows(db, "credits.reconcile") == []


def _blocked_call(conn, fn: str, *args):
    """Run a call in a thread (it will wait for a lock); returns a getter for its result or error."""
    out: dict = {}

    def target() -> None:
        try:
            out["row"] = call(conn, fn, *args)
        except psycopg.Error as exc:
            out["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    return t, out


def test_a_commit_waiting_for_the_account_sees_the_winner_and_replays(db, dsn, connect):
    (acc,) = setup_accounts(db, n=1, grant=100)
    h = call(db, "credits.reserve", "acme", acc, 40, "raced")["hold_id"]
    h2 = call(db, "credits.reserve", "acme", acc, 10, "raced-2")["hold_id"]
    winner = psycopg.connect(dsn, row_factory=dict_row)  # one transaction, committed below
    winner.execute("SELECT 1 FROM credits.accounts WHERE account_id = %s FOR UPDATE", (acc,))
    t, out = _blocked_call(connect(), "credits.commit_hold", "acme", h)
    t2, out2 = _blocked_call(connect(), "credits.abort_hold", "acme", h2)
    time.sleep(0.5)  # both wait for the account's lock, having read the holds as active
    first = call(winner, "credits.commit_hold", "acme", h)
    call(winner, "credits.commit_hold", "acme", h2)
    winner.commit()
    t.join(30)
    t2.join(30)
    winner.close()
    assert "error" not in out, out
    assert out["row"]["replayed"] is True and out["row"]["entry_id"] == first["entry_id"]
    assert out2["error"].sqlstate == "SX103"  # the abort lost to a commit
    a = call(db, "credits.get_account", "acme", acc)
    assert (a["balance"], a["held"]) == (50, 0)
    assert rows(db, "credits.reconcile_holds") == [] and rows(db, "credits.reconcile") == []
