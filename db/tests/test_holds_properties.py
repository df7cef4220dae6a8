"""Property test: random interleavings of reserve/commit/abort/expire/consume/transfer against a model.

Time moves by calling the expiry job with a clock ahead of the real one
(credits._expire_holds_at): holds live 10 minutes to an hour in real time, so
only the moved clock expires them, deterministically. After every step:
balance = the model = the sum of the account's journal; held = the sum of its
active holds; available = balance - held >= 0; every hold is in the model's
state, and a resolved hold never changes again (resolved at most once: one
capture entry at most, the same resolved_at forever).
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from helpers import call, rows

_tenants = itertools.count()
amounts = st.integers(min_value=-3, max_value=300)


def holds_machine(conn: psycopg.Connection):
    class Holds(RuleBasedStateMachine):
        @initialize()
        def open_accounts(self) -> None:
            self.tenant = f"hprop{next(_tenants)}"
            call(conn, "credits.create_tenant", self.tenant, "Property")
            self.ids = []
            for i in range(3):
                acc = call(conn, "credits.create_account", self.tenant, f"a{i}", f"open{i}")["account_id"]
                call(conn, "credits.grant_credits", self.tenant, acc, 500, f"seed{i}")
                self.ids.append(acc)
            self.balance = dict.fromkeys(self.ids, 500)
            # hold_id -> dict(account, amount, expires_at, status, captured, resolved_at)
            self.holds: dict[int, dict] = {}
            self.clock_ahead = timedelta(0)
            self.n = 0

        def key(self) -> str:
            self.n += 1
            return f"k{self.n}"

        def held(self, a: int) -> int:
            return sum(h["amount"] for h in self.holds.values() if h["account"] == a and h["status"] == "active")

        def available(self, a: int) -> int:
            return self.balance[a] - self.held(a)

        def expect(self, fn, args, sqlstate: str | None):
            try:
                result = call(conn, fn, *args)
            except psycopg.Error as exc:
                assert sqlstate is not None, f"{fn}{args} failed: {exc}"
                assert exc.sqlstate == sqlstate, f"{fn}{args}: expected {sqlstate}, got {exc.sqlstate}: {exc}"
                return None
            assert sqlstate is None, f"{fn}{args} should have failed with {sqlstate}"
            return result

        @rule(i=st.integers(0, 2), amount=amounts, ttl=st.integers(600, 3600))
        def reserve(self, i, amount, ttl):
            a = self.ids[i]
            err = "SX003" if amount < 1 else ("SX004" if amount > self.available(a) else None)
            r = self.expect("credits.reserve", (self.tenant, a, amount, self.key(), timedelta(seconds=ttl)), err)
            if r:
                assert r["replayed"] is False
                self.holds[r["hold_id"]] = {
                    "account": a,
                    "amount": amount,
                    "expires_at": r["expires_at"],
                    "status": "active",
                    "captured": None,
                    "resolved_at": None,
                }

        @precondition(lambda self: getattr(self, "holds", None))
        @rule(data=st.data(), partial=st.one_of(st.none(), st.integers(0, 350)))
        def commit(self, data, partial):
            hid = data.draw(st.sampled_from(sorted(self.holds)))
            h = self.holds[hid]
            if partial is not None and partial < 1:
                err = "SX003"
            elif h["status"] == "captured":
                err = None if partial in (None, h["captured"]) else "SX005"
            else:
                err = {"voided": "SX102", "expired": "SX104"}.get(h["status"])
                if err is None and partial is not None and partial > h["amount"]:
                    err = "SX105"
            r = self.expect("credits.commit_hold", (self.tenant, hid, partial), err)
            if r is None:
                return
            if h["status"] == "captured":
                assert r["replayed"] is True and r["captured"] == h["captured"]
                assert r["resolved_at"] == h["resolved_at"]
                return
            assert r["replayed"] is False
            captured = h["amount"] if partial is None else partial
            assert (r["captured"], r["released"]) == (captured, h["amount"] - captured)
            h.update(status="captured", captured=captured, resolved_at=r["resolved_at"])
            self.balance[h["account"]] -= captured
            assert r["balance_after"] == self.balance[h["account"]]

        @precondition(lambda self: getattr(self, "holds", None))
        @rule(data=st.data())
        def abort(self, data):
            hid = data.draw(st.sampled_from(sorted(self.holds)))
            h = self.holds[hid]
            err = {"captured": "SX103", "expired": "SX104"}.get(h["status"])
            r = self.expect("credits.abort_hold", (self.tenant, hid), err)
            if r is None:
                return
            if h["status"] == "voided":
                assert r["replayed"] is True and r["resolved_at"] == h["resolved_at"]
                return
            assert r["replayed"] is False
            h.update(status="voided", resolved_at=r["resolved_at"])

        @rule(minutes=st.integers(0, 70))
        def expire(self, minutes):
            self.clock_ahead += timedelta(minutes=minutes)
            now = conn.execute("SELECT now() + %s AS t", (self.clock_ahead,)).fetchone()["t"]
            conn.execute("SELECT * FROM credits._expire_holds_at(%s)", (now,))
            for h in self.holds.values():
                if h["status"] == "active" and h["expires_at"] <= now:
                    h["status"] = "expired"
                    h["resolved_at"] = "set"

        @rule(i=st.integers(0, 2), amount=amounts)
        def consume(self, i, amount):
            a = self.ids[i]
            err = "SX003" if amount < 1 else ("SX004" if amount > self.available(a) else None)
            if self.expect("credits.consume", (self.tenant, a, amount, self.key()), err):
                self.balance[a] -= amount

        @rule(i=st.integers(0, 2), j=st.integers(0, 2), amount=amounts)
        def transfer(self, i, j, amount):
            a, b = self.ids[i], self.ids[j]
            if a == b:
                return
            err = "SX003" if amount < 1 else ("SX004" if amount > self.available(a) else None)
            if self.expect("credits.transfer", (self.tenant, a, b, amount, self.key()), err):
                self.balance[a] -= amount
                self.balance[b] += amount

        @invariant()
        def ledger_holds_and_model_agree(self):
            if not hasattr(self, "ids"):
                return
            for a in self.ids:
                acc = call(conn, "credits.get_account", self.tenant, a)
                assert acc["balance"] == self.balance[a] >= 0
                assert acc["held"] == self.held(a)
                assert acc["available"] == acc["balance"] - acc["held"] >= 0
            assert [r for r in rows(conn, "credits.reconcile") if r["tenant_id"] == self.tenant] == []
            assert [r for r in rows(conn, "credits.reconcile_holds") if r["tenant_id"] == self.tenant] == []
            db_holds = {
                r["hold_id"]: r
                for r in conn.execute(
                    "SELECT h.hold_id, h.status, h.captured, h.resolved_at, "
                    "       (SELECT count(*) FROM credits.entries e WHERE e.tenant_id = h.tenant_id "
                    "          AND e.idem_key = h.idem_key AND e.leg = 2) AS captures "
                    "  FROM credits.holds h WHERE h.tenant_id = %s",
                    (self.tenant,),
                ).fetchall()
            }
            assert set(db_holds) == set(self.holds)
            for hid, h in self.holds.items():
                d = db_holds[hid]
                assert d["status"] == h["status"], hid
                assert d["captured"] == h["captured"]
                assert d["captures"] == (1 if h["status"] == "captured" else 0)
                if h["resolved_at"] == "set":  # learnt from the database once, then frozen
                    h["resolved_at"] = d["resolved_at"]
                assert d["resolved_at"] == h["resolved_at"]

    return Holds


def test_holds_invariants_hold_under_random_interleavings(db):
    machine = holds_machine(db)
    machine.TestCase.settings = settings(
        max_examples=40, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    machine.TestCase().runTest()
