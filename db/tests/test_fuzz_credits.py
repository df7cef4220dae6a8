"""Hypothesis fuzzing of the public credits.* functions with hostile arguments.

Huge, zero and negative amounts, NULLs, overlong strings, unicode, NUL bytes and
injection strings: every call either succeeds with a correct result or fails
with a named error (SXnnn) or a PostgreSQL data exception (class 22). Never an
internal error, and after every call the invariants hold: credits.reconcile()
is empty and no balance or available amount is negative.
"""

from __future__ import annotations

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import setup_accounts

INJECTION = [
    "'; DROP TABLE credits.entries; --",
    "acme' OR '1'='1",
    "$$; SELECT 1; $$",
    "\\x00",
    "%s",
    "{}",
    "NULL",
    "acme\u0000",
    "ａｃｍｅ",
    "acme ",
    "ACME",
    "x" * 70,
    "💥" * 300,
    "",
    " ",
]
texts = st.one_of(
    st.none(),
    st.sampled_from(INJECTION),
    st.text(max_size=600),
    st.text(min_size=250, max_size=260),
    st.just("r" * 501),
)
tenants = st.one_of(st.just("acme"), st.just("zeta"), texts)
amounts = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 10**15, 10**15 + 1, 2**62, 2**63 - 1, -(2**63), 99, 100, 101]),
)
ids = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from([1, 2, 3, 0, -1]))
limits = st.one_of(st.none(), st.integers(min_value=-(2**31), max_value=2**31 - 1), st.sampled_from([0, 1, 1000, 1001]))

CALLS = {
    "consume": (
        st.tuples(tenants, ids, amounts, texts, texts),
        "SELECT * FROM credits.consume(%s, %s::bigint, %s::bigint, %s, %s)",
    ),
    "grant": (
        st.tuples(tenants, ids, amounts, texts, texts),
        "SELECT * FROM credits.grant_credits(%s, %s::bigint, %s::bigint, %s, %s)",
    ),
    "transfer": (
        st.tuples(tenants, ids, ids, amounts, texts, texts),
        "SELECT * FROM credits.transfer(%s, %s::bigint, %s::bigint, %s::bigint, %s, %s)",
    ),
    "create_tenant": (st.tuples(texts, texts), "SELECT * FROM credits.create_tenant(%s, %s)"),
    "create_account": (st.tuples(tenants, texts, texts), "SELECT * FROM credits.create_account(%s, %s, %s)"),
    "set_status": (
        st.tuples(tenants, ids, st.one_of(texts, st.sampled_from(["open", "frozen", "closed"]))),
        "SELECT * FROM credits.set_account_status(%s, %s::bigint, %s)",
    ),
    "get_account": (st.tuples(tenants, ids), "SELECT * FROM credits.get_account(%s, %s::bigint)"),
    "list_accounts": (st.tuples(tenants, ids, limits), "SELECT * FROM credits.list_accounts(%s, %s::bigint, %s::int)"),
    "list_entries": (
        st.tuples(tenants, ids, ids, limits),
        "SELECT * FROM credits.list_entries(%s, %s::bigint, %s::bigint, %s::int)",
    ),
}
calls = st.one_of(*[st.tuples(st.just(name), args) for name, (args, _) in CALLS.items()])


def _invariants(db: psycopg.Connection) -> None:
    assert db.execute("SELECT * FROM credits.reconcile()").fetchall() == []
    bad = db.execute(
        "SELECT account_id FROM credits.accounts WHERE balance < 0 OR held < 0 OR held > balance"
    ).fetchall()
    assert bad == []


def test_hostile_arguments_give_named_errors_or_correct_results(db, connect):
    setup_accounts(db, "acme", n=3, grant=100)
    setup_accounts(db, "zeta", n=1, grant=50)
    app = connect("shieldx_app")  # as the API calls them
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=1000, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(calls)
    def run(call):
        name, args = call
        sql = CALLS[name][1]
        before = db.execute("SELECT coalesce(sum(balance), 0) AS total FROM credits.accounts").fetchone()["total"]
        try:
            rows = app.execute(sql, args).fetchall()
        except psycopg.DataError as exc:
            # Client-side refusals (NUL byte, int out of range) have no SQLSTATE; server ones are class 22 or named.
            state = exc.sqlstate
            assert state is None or state.startswith(("22", "SX")), (name, args, state, exc)
            outcomes[state or "client"] = outcomes.get(state or "client", 0) + 1
        except psycopg.Error as exc:
            assert exc.sqlstate and exc.sqlstate.startswith("SX"), (name, args, exc.sqlstate, exc)
            outcomes[exc.sqlstate] = outcomes.get(exc.sqlstate, 0) + 1
        else:
            outcomes["ok"] = outcomes.get("ok", 0) + 1
            after = db.execute("SELECT coalesce(sum(balance), 0) AS total FROM credits.accounts").fetchone()["total"]
            if name in ("consume", "grant") and rows and not rows[0]["replayed"]:
                # A movement moves exactly the amount asked, and only in the tenant asked.
                tenant, account, amount = args[0], args[1], args[2]
                assert rows[0]["amount"] == (-amount if name == "consume" else amount)
                assert after - before == rows[0]["amount"]
                owner = db.execute(
                    "SELECT tenant_id FROM credits.accounts WHERE account_id = %s", (account,)
                ).fetchone()
                assert owner["tenant_id"] == tenant
            elif name == "transfer":
                assert after == before  # a transfer never creates or destroys credits
        _invariants(db)

    run()
    # The fuzzer reached both sides: successes and several distinct named errors.
    assert outcomes.get("ok", 0) > 0, outcomes
    assert len([k for k in outcomes if k.startswith("SX")]) >= 5, outcomes
