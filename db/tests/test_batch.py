"""credits.apply_batch: many ledger operations per call, each decided as its single operation decides it."""

from __future__ import annotations

import itertools
import json
import random
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from helpers import call, raises, run_threads, setup_accounts, snapshot


def batch(conn: psycopg.Connection, tenant: str, items: list[dict[str, Any]], atomic: bool = True) -> list[dict]:
    return conn.execute(
        "SELECT * FROM credits.apply_batch(%s, %s, %s) ORDER BY item", (tenant, Jsonb(items), atomic)
    ).fetchall()


def consume(acc: int, amount: int, key: str, **kw: Any) -> dict[str, Any]:
    return {"op": "consume", "account_id": acc, "amount": amount, "idempotency_key": key, **kw}


def audit_snapshot(conn: psycopg.Connection) -> tuple:
    return tuple(
        tuple(r.values())
        for r in conn.execute("SELECT stream, seq, payload, hash FROM audit.log ORDER BY stream, seq").fetchall()
    )


# --- one by one versus batched: the same ledger -----------------------------------------------------------------

SINGLE = {
    "consume": ("credits.consume", ("account_id", "amount", "idempotency_key", "reason")),
    "grant": ("credits.grant_credits", ("account_id", "amount", "idempotency_key", "reason")),
    "transfer": ("credits.transfer", ("from_account", "to_account", "amount", "idempotency_key", "reason")),
}
_tenants = itertools.count()


def apply_single(conn: psycopg.Connection, tenant: str, item: dict[str, Any]) -> tuple[str, str | None, dict | None]:
    """An item through its single operation: (status, sqlstate, result)."""
    if item["op"] == "reserve":
        fn = "credits.reserve"
        args = [item["account_id"], item["amount"], item["idempotency_key"], timedelta(seconds=300), item.get("reason")]
    else:
        fn, names = SINGLE[item["op"]]
        args = [item.get(n) for n in names]
    try:
        row = call(conn, fn, tenant, *args)
    except psycopg.Error as exc:
        assert exc.sqlstate and exc.sqlstate.startswith("SX"), exc
        return "refused", exc.sqlstate, None
    return ("replayed" if row["replayed"] else "applied"), None, row


ACCOUNT_FIELDS = ("account_id", "from_account", "to_account", "counterparty")


def normal(value: Any, ids: dict[int, Any]) -> Any:
    """Results and payloads without what differs between two tenants: ids, times, the seed's keys."""
    if isinstance(value, str) and value.startswith("seed-"):
        return "seed-" + value.rsplit("-", 1)[1]
    if isinstance(value, dict):
        return {
            k: (ids.get(v, v) if k in ACCOUNT_FIELDS else normal(v, ids))
            for k, v in value.items()
            if k not in ("entry_id", "debit_entry_id", "credit_entry_id", "hold_id", "tenant_id") and "_at" not in k
        }
    return value


def ledger(conn: psycopg.Connection, tenant: str, ids: dict[int, int]) -> tuple:
    accounts = conn.execute(
        "SELECT account_id, balance, held, entry_seq FROM credits.accounts WHERE tenant_id = %s ORDER BY account_id",
        (tenant,),
    ).fetchall()
    entries = conn.execute(
        "SELECT account_id, seq, kind, amount, balance_after, reason, idem_key, leg, counterparty"
        " FROM credits.entries WHERE tenant_id = %s ORDER BY entry_id",
        (tenant,),
    ).fetchall()
    payloads = conn.execute(
        "SELECT l.stream, l.seq, l.source, l.op, l.payload FROM audit.log l"
        " WHERE l.stream IN (SELECT 'ledger/' || a.account_id FROM credits.accounts a WHERE a.tenant_id = %s)"
        " ORDER BY l.stream, l.seq",
        (tenant,),
    ).fetchall()
    holds = conn.execute(
        "SELECT account_id, amount, status, reason, idem_key FROM credits.holds WHERE tenant_id = %s ORDER BY hold_id",
        (tenant,),
    ).fetchall()
    return (
        [normal(a, ids) for a in accounts],
        [normal(e, ids) for e in entries],
        sorted(
            (ids[int(p["stream"].split("/")[1])], p["seq"], p["op"], normal(json.loads(p["payload"]), ids))
            for p in payloads
        ),
        [normal(h, ids) for h in holds],
    )


def tenant_with_accounts(conn: psycopg.Connection, n: int, grant: int) -> tuple[str, list[int]]:
    tenant = f"t{next(_tenants)}"
    return tenant, setup_accounts(conn, tenant, n=n, grant=grant)


item_strategy = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["consume", "consume", "consume", "grant", "transfer", "reserve"]),
        "a": st.integers(0, 3),  # 3 = an account of another tenant: unknown here
        "b": st.integers(0, 2),
        "amount": st.one_of(st.integers(1, 120), st.just(0)),
        "reason": st.one_of(st.none(), st.just("r")),
        "repeat": st.integers(0, 6),  # 0: send an earlier item again (same key, same arguments)
    }
)


consume_strategy = st.fixed_dictionaries(
    {
        "op": st.just("consume"),
        "a": st.integers(0, 3),
        "b": st.just(0),
        "amount": st.integers(1, 60),
        "reason": st.one_of(st.none(), st.just("r")),
        "repeat": st.just(1),  # no repeated keys: the set-based path applies
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(item_strategy, min_size=1, max_size=25))
def test_a_batch_equals_its_items_applied_one_by_one(db, spec):
    check_batch_equals_singles(db, spec)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(consume_strategy, min_size=2, max_size=25))
def test_a_batch_of_consumes_equals_them_one_by_one(db, spec):
    """The set-based path of consume batches: accounts that cover all their items at once, others item by item."""
    check_batch_equals_singles(db, spec)


def test_consumes_of_accounts_that_cover_them_take_one_update_per_account(db, connect):
    a, b = setup_accounts(db, grant=100)

    def updates_of(items: list[dict[str, Any]]) -> tuple[list[str], int]:
        conn = connect()  # a new session: its pending table statistics are this transaction's alone
        with conn.transaction():
            got = batch(conn, "acme", items, atomic=False)
            n = conn.execute(
                "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relid = 'credits.accounts'::regclass"
            ).fetchone()["n_tup_upd"]
        return [r["status"] for r in got], n

    assert updates_of([consume(a if k % 2 else b, 5, f"u{k}") for k in range(10)]) == (["applied"] * 10, 2)
    # a cannot cover both of its items: they go one by one (one applied, one refused); b's at once.
    assert updates_of([consume(a, 60, "v1"), consume(a, 60, "v2"), consume(b, 5, "v3")]) == (
        ["applied", "refused", "applied"],
        2,
    )


def check_batch_equals_singles(db, spec):
    one, one_ids = tenant_with_accounts(db, 3, 100)
    many, many_ids = tenant_with_accounts(db, 3, 100)
    _, (foreign,) = tenant_with_accounts(db, 1, 100)

    def items_for(ids: list[int]) -> list[dict[str, Any]]:
        acct = [*ids, foreign]
        out: list[dict[str, Any]] = []
        for k, s in enumerate(spec):
            if s["repeat"] == 0 and out:
                out.append(dict(out[k // 2]))
                continue
            key = f"k{k}"
            if s["op"] == "transfer":
                item = {
                    "op": "transfer",
                    "from_account": acct[s["a"]],
                    "to_account": acct[s["b"]],
                    "amount": s["amount"],
                }
            else:
                item = {"op": s["op"], "account_id": acct[s["a"]], "amount": s["amount"]}
            item |= {"idempotency_key": key, "reason": s["reason"]}
            if s["op"] == "reserve":
                item["ttl_seconds"] = 300
            out.append(item)
        return out

    singles = [apply_single(db, one, it) for it in items_for(one_ids)]
    got = batch(db, many, items_for(many_ids), atomic=False)

    to_one = {a: i for i, a in enumerate(one_ids)} | {foreign: "foreign"}
    to_many = {a: i for i, a in enumerate(many_ids)} | {foreign: "foreign"}
    for (status, sqlstate, result), row in zip(singles, got, strict=True):
        assert (row["status"], row["sqlstate"]) == (status, sqlstate), (row, status, sqlstate)
        if result is not None:
            assert normal(row["result"], to_many) == normal(dict(result), to_one)
    assert ledger(db, many, to_many) == ledger(db, one, to_one)

    # Atomic: all applied exactly as one by one, or nothing and the first refusal named.
    atomic, atomic_ids = tenant_with_accounts(db, 3, 100)
    to_atomic = {a: i for i, a in enumerate(atomic_ids)} | {foreign: "foreign"}
    first_refusal = next((k for k, s in enumerate(singles) if s[0] == "refused"), None)
    before = ledger(db, atomic, to_atomic)
    if first_refusal is None:
        batch(db, atomic, items_for(atomic_ids), atomic=True)
        assert ledger(db, atomic, to_atomic) == ledger(db, one, to_one)
    else:
        with raises("SX121") as info:
            batch(db, atomic, items_for(atomic_ids), atomic=True)
        detail = json.loads(info.value.diag.message_detail)
        assert (detail["item"], detail["sqlstate"]) == (first_refusal, singles[first_refusal][1])
        assert ledger(db, atomic, to_atomic) == before
    assert db.execute("SELECT ok FROM audit.verify()").fetchone()["ok"]


# --- order, replays, holds ---------------------------------------------------------------------------------------


def test_items_apply_in_order_and_see_each_other(db):
    a, b = setup_accounts(db, grant=100)
    got = batch(
        db,
        "acme",
        [
            consume(a, 60, "c1"),
            consume(a, 60, "c2"),  # 40 left: refused
            {"op": "transfer", "from_account": b, "to_account": a, "amount": 50, "idempotency_key": "t1"},
            consume(a, 60, "c2"),  # same request again, now 90 available: applied
            consume(a, 60, "c1"),  # the applied c1 again: its replay
        ],
        atomic=False,
    )
    assert [r["status"] for r in got] == ["applied", "refused", "applied", "applied", "replayed"]
    assert got[1]["sqlstate"] == "SX004" and got[1]["result"]["error"] == "insufficient_funds"
    assert got[1]["result"]["detail"] == {"account_id": a, "available": 40, "requested": 60}
    assert [got[0]["result"]["balance_after"], got[3]["result"]["balance_after"]] == [40, 30]
    assert got[4]["result"] == got[0]["result"] | {"replayed": True}
    ids = [
        got[k]["result"][f]
        for k, f in [(0, "entry_id"), (2, "debit_entry_id"), (2, "credit_entry_id"), (3, "entry_id")]
    ]
    assert ids == sorted(ids)  # journal rows in item order
    assert db.execute("SELECT ok FROM audit.verify()").fetchone()["ok"]


def test_replays_of_items_and_of_whole_batches(db):
    a, b = setup_accounts(db, grant=100)
    single = call(db, "credits.consume", "acme", a, 5, "before")
    items = [
        consume(a, 5, "before"),  # a single call's key: its replay
        consume(a, 10, "x1"),
        {"op": "transfer", "from_account": a, "to_account": b, "amount": 7, "idempotency_key": "x2"},
        {"op": "grant", "account_id": b, "amount": 3, "idempotency_key": "x3"},
        {"op": "reserve", "account_id": b, "amount": 4, "idempotency_key": "x4", "ttl_seconds": 60},
        consume(a, 1000, "x5"),  # refused
    ]
    first = batch(db, "acme", items, atomic=False)
    assert [r["status"] for r in first] == ["replayed", "applied", "applied", "applied", "applied", "refused"]
    assert first[0]["result"]["entry_id"] == single["entry_id"]
    state = snapshot(db), audit_snapshot(db)
    again = batch(db, "acme", items, atomic=False)
    assert [r["status"] for r in again] == ["replayed"] * 5 + ["refused"]
    for r1, r2 in zip(first, again, strict=True):
        assert r2["result"] == (r1["result"] | {"replayed": True} if r1["status"] != "refused" else r1["result"])
    assert (snapshot(db), audit_snapshot(db)) == state
    # An item replayed through its single operation answers the batch's result.
    single_again = call(db, "credits.consume", "acme", a, 10, "x1")
    assert single_again["replayed"] and single_again["entry_id"] == first[1]["result"]["entry_id"]
    # Reused with other arguments: SX005 for that item (refused in a non-atomic batch).
    (conflict,) = batch(db, "acme", [consume(a, 11, "x1")], atomic=False)
    assert (conflict["status"], conflict["sqlstate"]) == ("refused", "SX005")
    with raises("SX005"):
        call(db, "credits.consume", "acme", b, 3, "x3")


def test_commit_and_abort_holds_in_a_batch(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h1 = call(db, "credits.reserve", "acme", a, 30, "h1")["hold_id"]
    h2 = call(db, "credits.reserve", "acme", a, 20, "h2")["hold_id"]
    h3 = call(db, "credits.reserve", "acme", a, 10, "h3", timedelta(milliseconds=50))["hold_id"]
    time.sleep(0.1)  # h3 expires; its 10 still count in held until released
    got = batch(
        db,
        "acme",
        [
            {"op": "commit", "hold_id": h1, "amount": 25},
            {"op": "abort", "hold_id": h2},
            {"op": "commit", "hold_id": h1, "amount": 25},  # the same request again
            {"op": "commit", "hold_id": h3},  # expired
            {"op": "abort", "hold_id": 999999},  # unknown
            consume(a, 75, "rest"),  # 100 - 25 captured: exactly what is left once h3 is released
        ],
        atomic=False,
    )
    assert [(r["status"], r["sqlstate"]) for r in got] == [
        ("applied", None),
        ("applied", None),
        ("replayed", None),
        ("refused", "SX104"),
        ("refused", "SX101"),
        ("applied", None),
    ]
    assert got[0]["result"]["captured"] == 25 and got[0]["result"]["released"] == 5
    assert got[5]["result"]["balance_after"] == 0
    single = call(db, "credits.commit_hold", "acme", h1, 25)
    assert single["replayed"] and single["entry_id"] == got[0]["result"]["entry_id"]
    assert call(db, "credits.abort_hold", "acme", h2)["replayed"]
    assert db.execute("SELECT ok FROM audit.verify()").fetchone()["ok"]
    assert db.execute("SELECT count(*) AS n FROM credits.reconcile_holds()").fetchone()["n"] == 0


def test_a_batch_reserves_and_commits_or_aborts_the_same_hold_by_its_key(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    items = [
        {"op": "reserve", "account_id": a, "amount": 30, "idempotency_key": "r1"},
        {"op": "reserve", "account_id": a, "amount": 20, "idempotency_key": "r2"},
        {"op": "commit", "hold_key": "r1", "amount": 25},
        {"op": "abort", "hold_key": "r2"},
        {"op": "commit", "hold_key": "r1", "amount": 25},  # the same request again
        {"op": "abort", "hold_key": "never-reserved"},
        consume(a, 75, "rest"),  # 100 - 25 captured
    ]
    got = batch(db, "acme", items, atomic=False)
    assert [(r["status"], r["sqlstate"]) for r in got] == [
        ("applied", None),
        ("applied", None),
        ("applied", None),
        ("applied", None),
        ("replayed", None),
        ("refused", "SX101"),
        ("applied", None),
    ]
    h1, h2 = got[0]["result"]["hold_id"], got[1]["result"]["hold_id"]
    assert got[2]["result"]["hold_id"] == h1 and got[2]["result"]["captured"] == 25
    assert got[3]["result"]["hold_id"] == h2 and got[3]["result"]["status"] == "voided"
    assert "never-reserved" in got[5]["result"]["message"]
    # The same batch again: every applied item answers as a replay, nothing changes.
    before = snapshot(db), audit_snapshot(db)
    again = batch(db, "acme", items, atomic=False)
    assert [r["status"] for r in again] == ["replayed"] * 5 + ["refused", "replayed"]
    assert (snapshot(db), audit_snapshot(db)) == before
    # Equal to the single operations: commit by id answers as the batch's replay.
    single = call(db, "credits.commit_hold", "acme", h1, 25)
    assert single["replayed"] and single["entry_id"] == got[2]["result"]["entry_id"]
    assert db.execute("SELECT ok FROM audit.verify()").fetchone()["ok"]
    assert db.execute("SELECT count(*) AS n FROM credits.reconcile_holds()").fetchone()["n"] == 0


def test_an_atomic_batch_commits_by_key_a_hold_of_an_earlier_request(db):
    (a,) = setup_accounts(db, n=1, grant=100)
    h = call(db, "credits.reserve", "acme", a, 40, "earlier")["hold_id"]
    got = batch(db, "acme", [{"op": "commit", "hold_key": "earlier"}, consume(a, 60, "all")])
    assert got[0]["result"]["hold_id"] == h and got[1]["result"]["balance_after"] == 0
    with raises("SX121") as info:
        batch(
            db,
            "acme",
            [
                {"op": "grant", "account_id": a, "amount": 5, "idempotency_key": "x"},
                {"op": "abort", "hold_key": "nope"},
            ],
        )
    assert "item 1 (abort)" in str(info.value) and "nope" in str(info.value)
    assert db.execute("SELECT balance FROM credits.accounts WHERE account_id = %s", (a,)).fetchone()["balance"] == 0


# --- bad input: a clear error and nothing applied ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ([{"op": "refund", "account_id": 1, "amount": 1}], "unknown operation"),
        ([{"op": "consume", "account_id": 1, "amount": 1, "idempotency_key": "k", "tenant_id": "other"}], "one tenant"),
        ([{"op": "consume", "account_id": 1, "amount": 1, "idempotency_key": "k", "amout": 2}], "unknown field"),
        ([{"op": "consume", "account_id": "1", "amount": 1, "idempotency_key": "k"}], "wrong type"),
        ([{"op": "consume", "account_id": 1, "amount": 1.5, "idempotency_key": "k"}], "wrong type"),
        ([consume(1, 1, "same"), consume(1, 2, "same")], "with other arguments"),
        ([consume(1, 1, "same"), {"op": "grant", "account_id": 1, "amount": 1, "idempotency_key": "same"}], "other"),
        ([{"op": "commit", "hold_id": 1}, {"op": "abort", "hold_id": 1}], "repeats the hold"),
        ([{"op": "commit", "hold_key": "r"}, {"op": "abort", "hold_key": "r"}], "repeats the hold"),
        ([{"op": "commit", "hold_id": 1, "hold_key": "r"}], "one of the two"),
        ([{"op": "abort"}], "one of the two"),
        ([{"op": "abort", "hold_key": 5}], "wrong type"),
        ([consume(1, 1, f"k{i}") for i in range(1001)], "1 to 1000 items"),
        ([], "1 to 1000 items"),
        ({"op": "consume"}, "JSON array"),
        (["consume"], "JSON object"),
    ],
)
def test_bad_batches_apply_nothing(db, items, words):
    (a,) = setup_accounts(db, n=1, grant=100)
    items = json.loads(json.dumps(items).replace('"account_id": 1,', f'"account_id": {a},'))
    good = consume(a, 1, "good")
    payload = [good, *items] if isinstance(items, list) and 0 < len(items) < 1000 else items
    before = snapshot(db), audit_snapshot(db)
    for atomic in (True, False):
        with raises("SX120") as info:
            db.execute("SELECT * FROM credits.apply_batch('acme', %s, %s)", (Jsonb(payload), atomic))
        assert words in str(info.value)
    assert (snapshot(db), audit_snapshot(db)) == before


def test_unknown_tenant_is_refused_whole(db):
    setup_accounts(db, n=1)
    with raises("SX001"):
        batch(db, "nobody", [consume(1, 1, "k")])


# --- no subtransactions ------------------------------------------------------------------------------------------


def xids_spent(db: psycopg.Connection, connect, sql: str, params: tuple = ()) -> int:
    """Transaction ids assigned while sql runs in its own transaction, beyond its own: one per
    subtransaction that wrote. Measured from another session while the transaction is still open."""
    other = connect()
    worker = connect()
    with worker.transaction():
        worker.execute(sql, params)
        top = worker.execute("SELECT txid_current() AS x").fetchone()["x"]
        after = other.execute("SELECT txid_current() AS x").fetchone()["x"]
    return after - top - 1


def test_a_thousand_item_half_refused_batch_opens_no_subtransaction(db, connect):
    ids = setup_accounts(db, n=10, grant=100)  # 50 per account for each of the two runs
    items = [consume(ids[(i // 2) % 10], 1 if i % 2 == 0 else 10**6, f"b{i}") for i in range(1000)]
    # The measure sees subtransactions: the same work with an EXCEPTION block per item.
    per_item = """
      DO $$ DECLARE j jsonb; BEGIN
        FOR j IN SELECT * FROM jsonb_array_elements(%s::jsonb) LOOP
          BEGIN
            PERFORM credits.consume('acme', (j->>'account_id')::bigint, (j->>'amount')::bigint,
                                    'p' || (j->>'idempotency_key'));
          EXCEPTION WHEN OTHERS THEN NULL;
          END;
        END LOOP;
      END $$"""
    assert xids_spent(db, connect, per_item.replace("%s", "'" + json.dumps(items) + "'")) >= 500
    spent = xids_spent(db, connect, "SELECT count(*) FROM credits.apply_batch('acme', %s, false)", (Jsonb(items),))
    # 0 of its own; other sessions of the cluster (jobs, other tests) may take a few meanwhile, while a
    # subtransaction per item would take at least one per applied item: 500.
    assert spent < 100
    counts = db.execute(
        "SELECT count(*) FILTER (WHERE idem_key LIKE 'b%%') AS b, count(*) FILTER (WHERE idem_key LIKE 'pb%%') AS p"
        " FROM credits.entries"
    ).fetchone()
    assert counts == {"b": 500, "p": 500}  # both did the work: half applied, half refused
    src = db.execute("SELECT prosrc FROM pg_proc WHERE proname = 'apply_batch'").fetchone()["prosrc"]
    assert "EXCEPTION WHEN" not in src.upper().replace("\n", " ")


# --- concurrency -------------------------------------------------------------------------------------------------


def test_concurrent_opposite_order_batches_never_deadlock(db, connect):
    ids = setup_accounts(db, n=6, grant=10_000)
    conns = [connect() for _ in range(8)]

    def worker(i: int) -> None:
        rnd = random.Random(i)
        for k in range(15):
            order = ids if i % 2 == 0 else ids[::-1]
            items: list[dict[str, Any]] = []
            for j, acc in enumerate(order):
                other = order[(j + 1) % len(order)]
                items.append(consume(acc, rnd.randint(1, 30), f"c{i}-{k}-{j}"))
                items.append(
                    {
                        "op": "transfer",
                        "from_account": acc,
                        "to_account": other,
                        "amount": rnd.randint(1, 30),
                        "idempotency_key": f"t{i}-{k}-{j}",
                    }
                )
            try:
                batch(conns[i], "acme", items, atomic=k % 2 == 0)
            except psycopg.Error as exc:
                assert exc.sqlstate == "SX121", exc  # never 40P01 (deadlock)

    assert run_threads(8, worker) == []
    consumed = db.execute("SELECT -sum(amount) AS s FROM credits.entries WHERE kind = 'consume'").fetchone()["s"]
    total = db.execute("SELECT sum(balance) AS s FROM credits.accounts").fetchone()["s"]
    assert total + consumed == 60_000
    assert db.execute("SELECT count(*) AS n FROM credits.reconcile()").fetchone()["n"] == 0
    assert db.execute("SELECT ok FROM audit.verify()").fetchone()["ok"]


def test_a_key_names_one_request_across_operations_in_batches_too(db):
    a, b = setup_accounts(db, grant=100)
    call(db, "credits.grant_credits", "acme", a, 5, "used-by-grant")
    got = batch(
        db,
        "acme",
        [
            consume(a, 1, "used-by-grant"),  # a grant's key: SX005, another operation
            consume(a, 1, "open-acme-0"),  # an account's key (setup_accounts opened it)
            consume(a, 1, "dist:x"),  # reserved for distributed legs
            {"op": "reserve", "account_id": b, "amount": 1, "idempotency_key": f"seed-acme-{1}"},  # a grant's
            consume(a, 1, "fresh"),
        ],
        atomic=False,
    )
    assert [(r["status"], r["sqlstate"]) for r in got] == [
        ("refused", "SX005"),
        ("refused", "SX005"),
        ("refused", "SX007"),
        ("refused", "SX005"),
        ("applied", None),
    ]
    assert got[0]["result"]["detail"]["operation"] == "grant"
    assert got[1]["result"]["detail"]["operation"] == "account"
    # The batch's keys are claimed too: a single call of another operation is refused.
    with raises("SX005"):
        call(db, "credits.reserve", "acme", b, 1, "fresh")
