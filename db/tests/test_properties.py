"""Property test: random grant/consume/transfer/replay sequences against a model.

After every step: balances equal the model, each balance equals the sum of
its entries, nothing is negative, and a replay changed nothing.
"""

from __future__ import annotations

import itertools

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from helpers import call, rows

_tenants = itertools.count()
amounts = st.integers(min_value=-5, max_value=400)


def ledger_machine(conn: psycopg.Connection):
    class Ledger(RuleBasedStateMachine):
        @initialize()
        def open_accounts(self) -> None:
            self.tenant = f"prop{next(_tenants)}"
            call(conn, "credits.create_tenant", self.tenant, "Property")
            self.ids = [
                call(conn, "credits.create_account", self.tenant, f"a{i}", f"open{i}")["account_id"] for i in range(3)
            ]
            self.model = dict.fromkeys(self.ids, 0)
            self.calls: list[tuple[str, tuple, dict]] = []  # (fn, args, first result)
            self.n = 0

        def _do(self, fn: str, args: tuple, expect_ok: bool, effect) -> None:
            self.n += 1
            key = f"k{self.n}"
            try:
                result = call(conn, fn, self.tenant, *args, key)
            except psycopg.Error as exc:
                assert not expect_ok, f"{fn}{args} failed: {exc}"
                assert exc.sqlstate in ("SX003", "SX004"), exc
                return
            assert expect_ok, f"{fn}{args} should have failed"
            assert result["replayed"] is False
            effect()
            self.calls.append((fn, (*args, key), result))

        @rule(i=st.integers(0, 2), amount=amounts)
        def grant(self, i, amount):
            a = self.ids[i]
            self._do(
                "credits.grant_credits",
                (a, amount),
                amount >= 1,
                lambda: self.model.__setitem__(a, self.model[a] + amount),
            )

        @rule(i=st.integers(0, 2), amount=amounts)
        def consume(self, i, amount):
            a = self.ids[i]
            self._do(
                "credits.consume",
                (a, amount),
                1 <= amount <= self.model[a],
                lambda: self.model.__setitem__(a, self.model[a] - amount),
            )

        @rule(i=st.integers(0, 2), j=st.integers(0, 2), amount=amounts)
        def transfer(self, i, j, amount):
            if i == j:
                return
            a, b = self.ids[i], self.ids[j]

            def effect():
                self.model[a] -= amount
                self.model[b] += amount

            self._do("credits.transfer", (a, b, amount), 1 <= amount <= self.model[a], effect)

        @rule(data=st.data())
        def replay(self, data):
            if not self.calls:
                return
            fn, args, first = data.draw(st.sampled_from(self.calls))
            again = call(conn, fn, self.tenant, *args)
            assert again["replayed"] is True
            assert {k: v for k, v in again.items() if k != "replayed"} == {
                k: v for k, v in first.items() if k != "replayed"
            }

        @invariant()
        def balances_match_model_and_ledger(self):
            if not hasattr(self, "ids"):
                return
            for a in self.ids:
                acc = call(conn, "credits.get_account", self.tenant, a)
                assert acc["balance"] == self.model[a] >= 0
                assert acc["available"] == acc["balance"] - acc["held"] >= 0
            bad = [r for r in rows(conn, "credits.reconcile") if r["tenant_id"] == self.tenant]
            assert bad == []

    return Ledger


def test_ledger_invariants_hold_under_random_sequences(db):
    machine = ledger_machine(db)
    machine.TestCase.settings = settings(
        max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    machine.TestCase().runTest()
