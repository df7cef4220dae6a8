"""The ledger's two audit triggers chain a statement's many entries of one
account exactly as single-row statements would: the same links, the same
hashes. The row trigger does it one row at a time, for rows written in seq
order (others are refused); the statement trigger, which the hint
shieldx.ledger_bulk picks (credits.apply_batch sets it), from the transition
table at once, whatever order the statement wrote them in. The hint changes
the cost only: exactly one of the two audits every statement."""

from __future__ import annotations

import random

import psycopg
import pytest

from helpers import call, setup_accounts

HINTS = ["on", "off"]  # the statement trigger, the row trigger

ONE_ROW = """INSERT INTO credits.entries
               (entry_id, account_id, tenant_id, seq, kind, amount, balance_after, idem_key, reason)
             OVERRIDING SYSTEM VALUE VALUES (%s, %s, 'acme', %s, 'grant', 1, %s, %s, 'bulk')"""

ALL_ROWS = """INSERT INTO credits.entries
                (entry_id, account_id, tenant_id, seq, kind, amount, balance_after, idem_key, reason)
              OVERRIDING SYSTEM VALUE
              SELECT r.id, r.a, 'acme', r.s, 'grant', 1, r.b, r.k, 'bulk'
                FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::text[]) AS r (id, a, s, b, k)"""


def journal_rows(db: psycopg.Connection, accounts: list[int], per: int, skip: set[tuple[int, int]]) -> list[tuple]:
    """`per` grants of 1 after each account's last entry, in (account, seq) order; (account, seq) in skip left out."""
    eid = db.execute("SELECT max(entry_id) AS m FROM credits.entries").fetchone()["m"]
    out = []
    for a in accounts:
        acc = db.execute("SELECT balance, entry_seq FROM credits.accounts WHERE account_id = %s", (a,)).fetchone()
        for s in range(acc["entry_seq"] + 1, acc["entry_seq"] + per + 1):
            if (a, s) not in skip:
                eid += 1
                out.append((eid, a, s, acc["balance"] + s - acc["entry_seq"], f"bulk-{a}-{s}"))
    return out


def chains(db: psycopg.Connection, accounts: list[int]) -> list[tuple]:
    return [
        tuple(r.values())
        for r in db.execute(
            "SELECT stream, seq, source, op, actor, app, txid, logged_at, payload, prev_hash, hash FROM audit.log"
            " WHERE stream = ANY(%s) ORDER BY stream, seq",
            ([f"ledger/{a}" for a in accounts],),
        )
    ]


def one_by_one_and_in_one_statement(db: psycopg.Connection, accounts: list[int], rows: list[tuple], hint: str) -> tuple:
    """The audit chains of `rows` inserted one statement per row (by the row trigger), then (instead) all in one
    statement under shieldx.ledger_bulk = hint (shuffled for the statement trigger; the row trigger needs each
    account's rows in seq order); both in one transaction (same txid and time, which every hash covers). The
    one-statement version stays."""
    shuffled = rows[:]
    if hint == "on":
        random.Random(16).shuffle(shuffled)
    with db.transaction():
        with db.transaction() as one_by_one:
            db.cursor().executemany(ONE_ROW, rows)
            single = chains(db, accounts)
            raise psycopg.Rollback(one_by_one)
        db.execute("SELECT set_config('shieldx.ledger_bulk', %s, true)", (hint,))
        db.execute(ALL_ROWS, [list(c) for c in zip(*shuffled, strict=True)])
        db.execute("SELECT set_config('shieldx.ledger_bulk', '', true)")
        bulk = chains(db, accounts)
        db.execute(
            """UPDATE credits.accounts a SET entry_seq = m.seq, balance = m.balance
                 FROM (SELECT DISTINCT ON (account_id) account_id, seq, balance_after AS balance
                         FROM credits.entries ORDER BY account_id, seq DESC) AS m
                WHERE a.account_id = m.account_id AND a.account_id = ANY(%s)""",
            (accounts,),
        )
    return single, bulk


@pytest.mark.parametrize("hint", HINTS)
def test_many_entries_per_account_in_one_statement_chain_as_one_by_one(db, hint):
    # 18 accounts with a first entry (their chains continue from the log), 2 without (genesis)
    accounts = setup_accounts(db, n=18) + [
        call(db, "credits.create_account", "acme", f"fresh{i}", f"open-fresh-{i}")["account_id"] for i in range(2)
    ]
    rows = journal_rows(db, accounts, 500, set())
    assert len(rows) == 10_000
    single, bulk = one_by_one_and_in_one_statement(db, accounts, rows, hint)
    assert len(bulk) == len(single) == 10_000 + 18
    assert bulk == single
    result = db.execute("SELECT ok, entries_checked, problem FROM audit.verify(false, true, true)").fetchone()
    assert result["ok"], result


@pytest.mark.parametrize("hint", HINTS)
def test_a_gap_within_one_statement_is_chained_and_reported_as_one_by_one(db, hint):
    accounts = setup_accounts(db, n=3)
    rows = journal_rows(db, accounts, 40, {(accounts[1], 20)})
    single, bulk = one_by_one_and_in_one_statement(db, accounts, rows, hint)
    assert bulk == single
    after_gap = [b for b in bulk if b[0] == f"ledger/{accounts[1]}" and b[1] == 21]
    assert after_gap and after_gap[0][9] == bytes(32)  # linked to zeros: the missing entry is not invented
    result = db.execute("SELECT ok, stream, seq FROM audit.verify(false, true)").fetchone()
    assert not result["ok"] and result["stream"] == f"ledger/{accounts[1]}", result


def test_the_row_trigger_refuses_one_accounts_entries_out_of_order(db):
    """Without the hint, a statement that writes an account's entries out of seq order is refused whole (the row
    trigger audits rows in the order written and could not link them); with it, the same statement chains."""
    accounts = setup_accounts(db, n=2)
    rows = journal_rows(db, accounts, 3, set())
    backwards = [list(c) for c in zip(*reversed(rows), strict=True)]
    before = db.execute("SELECT count(*) AS n FROM audit.log").fetchone()["n"]
    with pytest.raises(psycopg.errors.InternalError, match="out of seq order"), db.transaction():
        db.execute(ALL_ROWS, backwards)
    assert db.execute("SELECT count(*) AS n FROM audit.log").fetchone()["n"] == before
    assert db.execute("SELECT count(*) AS n FROM credits.entries WHERE reason = 'bulk'").fetchone()["n"] == 0
    with db.transaction():
        db.execute("SELECT set_config('shieldx.ledger_bulk', 'on', true)")
        db.execute(ALL_ROWS, backwards)


@pytest.mark.parametrize("hint", ["on", "off", "On", None])
def test_any_value_of_the_hint_audits_every_entry_once(connect, db, hint):
    """The hint is the session's to set (it changes only which trigger runs): whatever its value, a single call and
    a batch are each audited exactly once, and the log verifies."""
    a, b = setup_accounts(db)
    app = connect()
    if hint is not None:
        app.execute("SELECT set_config('shieldx.ledger_bulk', %s, false)", (hint,))
    call(app, "credits.consume", "acme", a, 1, f"hint-{hint}-c")
    call(app, "credits.transfer", "acme", a, b, 1, f"hint-{hint}-t")
    app.execute(
        "SELECT count(*) FROM credits.apply_batch('acme', %s::jsonb, true)",
        (
            f'[{{"op": "consume", "account_id": {a}, "amount": 1, "idempotency_key": "hint-{hint}-b1"}},'
            f' {{"op": "consume", "account_id": {a}, "amount": 1, "idempotency_key": "hint-{hint}-b2"}}]',
        ),
    )
    audited = db.execute(
        """SELECT count(*) AS n, count(DISTINCT (l.stream, l.seq)) AS distinct_n
             FROM credits.entries e JOIN audit.log l ON l.stream = 'ledger/' || e.account_id AND l.seq = e.seq
            WHERE e.idem_key LIKE %s""",
        (f"hint-{hint}-%",),
    ).fetchone()
    assert audited["n"] == audited["distinct_n"] == 5  # a consume, two transfer legs, two batch items
    written = db.execute("SELECT count(*) AS n FROM credits.entries WHERE idem_key LIKE %s", (f"hint-{hint}-%",))
    assert written.fetchone()["n"] == 5
    result = db.execute("SELECT ok, problem FROM audit.verify(false, true, true)").fetchone()
    assert result["ok"], result
