"""The ledger's statement-level audit trigger chains a statement's many entries
of one account exactly as single-row statements would: the same links, the
same hashes, whatever order the statement wrote them in."""

from __future__ import annotations

import random

import psycopg

from helpers import call, setup_accounts

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


def one_by_one_and_in_one_statement(db: psycopg.Connection, accounts: list[int], rows: list[tuple]) -> tuple:
    """The audit chains of `rows` inserted one statement per row, then (instead) all in one statement, shuffled;
    both in one transaction (same txid and time, which every hash covers). The one-statement version stays."""
    shuffled = rows[:]
    random.Random(16).shuffle(shuffled)
    with db.transaction():
        with db.transaction() as one_by_one:
            db.cursor().executemany(ONE_ROW, rows)
            single = chains(db, accounts)
            raise psycopg.Rollback(one_by_one)
        db.execute(ALL_ROWS, [list(c) for c in zip(*shuffled, strict=True)])
        bulk = chains(db, accounts)
        db.execute(
            """UPDATE credits.accounts a SET entry_seq = m.seq, balance = m.balance
                 FROM (SELECT DISTINCT ON (account_id) account_id, seq, balance_after AS balance
                         FROM credits.entries ORDER BY account_id, seq DESC) AS m
                WHERE a.account_id = m.account_id AND a.account_id = ANY(%s)""",
            (accounts,),
        )
    return single, bulk


def test_many_entries_per_account_in_one_statement_chain_as_one_by_one(db):
    # 18 accounts with a first entry (their chains continue from the log), 2 without (genesis)
    accounts = setup_accounts(db, n=18) + [
        call(db, "credits.create_account", "acme", f"fresh{i}", f"open-fresh-{i}")["account_id"] for i in range(2)
    ]
    rows = journal_rows(db, accounts, 500, set())
    assert len(rows) == 10_000
    single, bulk = one_by_one_and_in_one_statement(db, accounts, rows)
    assert len(bulk) == len(single) == 10_000 + 18
    assert bulk == single
    result = db.execute("SELECT ok, entries_checked, problem FROM audit.verify(false, true, true)").fetchone()
    assert result["ok"], result


def test_a_gap_within_one_statement_is_chained_and_reported_as_one_by_one(db):
    accounts = setup_accounts(db, n=3)
    rows = journal_rows(db, accounts, 40, {(accounts[1], 20)})
    single, bulk = one_by_one_and_in_one_statement(db, accounts, rows)
    assert bulk == single
    after_gap = [b for b in bulk if b[0] == f"ledger/{accounts[1]}" and b[1] == 21]
    assert after_gap and after_gap[0][9] == bytes(32)  # linked to zeros: the missing entry is not invented
    result = db.execute("SELECT ok, stream, seq FROM audit.verify(false, true)").fetchone()
    assert not result["ok"] and result["stream"] == f"ledger/{accounts[1]}", result
