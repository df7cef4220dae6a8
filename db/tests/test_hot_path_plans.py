"""The ledger's hot paths run no SQL-language function through the function
manager: every SQL helper they use is inlined into the caller's cached plan.

A SQL function that is not inlined (an IMMUTABLE one whose body calls a STABLE
function, one with a SET clause, a STRICT one over non-strict expressions)
is parsed, analyzed and planned again in every transaction that calls it.
Two such helpers once cost a hold commit a fifth of its CPU; this test names
any that comes back. (PL/pgSQL functions keep their plans per session and
are fine.) pg_stat_xact_user_functions counts, within the transaction, every
call that went through the function manager; inlined calls never appear.
"""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from helpers import call, setup_accounts

CALLS = {
    "consume": lambda db, a, b, i: call(db, "credits.consume", "acme", a, 1, f"c{i}"),
    "transfer": lambda db, a, b, i: call(db, "credits.transfer", "acme", a, b, 1, f"t{i}"),
    "grant": lambda db, a, b, i: call(db, "credits.grant_credits", "acme", a, 1, f"g{i}"),
    "reserve_commit": lambda db, a, b, i: call(
        db, "credits.commit_hold", "acme", call(db, "credits.reserve", "acme", a, 1, f"r{i}")["hold_id"]
    ),
    "reserve_abort": lambda db, a, b, i: call(
        db, "credits.abort_hold", "acme", call(db, "credits.reserve", "acme", a, 1, f"x{i}")["hold_id"]
    ),
    "batch": lambda db, a, b, i: db.execute(
        "SELECT count(*) FROM credits.apply_batch('acme', %s, false)",
        (
            Jsonb(
                [
                    {"op": "consume", "account_id": a, "amount": 1, "idempotency_key": f"bc{i}"},
                    {"op": "consume", "account_id": b, "amount": 1000, "idempotency_key": f"bd{i}"},
                    {"op": "transfer", "from_account": a, "to_account": b, "amount": 1, "idempotency_key": f"bt{i}"},
                    {"op": "reserve", "account_id": a, "amount": 1, "idempotency_key": f"br{i}"},
                ]
            ),
        ),
    ),
    "batch_of_consumes": lambda db, a, b, i: db.execute(
        "SELECT count(*) FROM credits.apply_batch('acme', %s, false)",
        (Jsonb([{"op": "consume", "account_id": x, "amount": 1, "idempotency_key": f"bs{i}-{x}"} for x in (a, b)]),),
    ),
}


@pytest.mark.parametrize("path", sorted(CALLS))
def test_no_sql_function_is_planned_per_call(db, path):
    a, b = setup_accounts(db)
    db.execute("BEGIN")
    try:
        db.execute("SET LOCAL track_functions = 'all'")
        for i in range(3):
            CALLS[path](db, a, b, i)
        called = db.execute("""
            SELECT s.funcid::regprocedure::text AS fn, s.calls
              FROM pg_stat_xact_user_functions s JOIN pg_proc p ON p.oid = s.funcid
              JOIN pg_language l ON l.oid = p.prolang
             WHERE l.lanname = 'sql' ORDER BY 1""").fetchall()
        plpgsql = db.execute("""
            SELECT count(*) AS n FROM pg_stat_xact_user_functions s JOIN pg_proc p ON p.oid = s.funcid
              JOIN pg_language l ON l.oid = p.prolang WHERE l.lanname = 'plpgsql'""").fetchone()["n"]
    finally:
        db.execute("ROLLBACK")
    assert plpgsql > 0, "function statistics were not collected: the test would prove nothing"
    assert called == [], f"SQL functions run un-inlined on the {path} path: {called}"
