"""A bank-style workload through the API, and the checks of the ledger after it.

Many clients move credits through the API; every mutation carries an
idempotency key, and an indeterminate attempt (timeout, lost connection, 503)
is retried with the same key. `failover` kills the primary mid-run and
`switchover` switches it over under load; `verify` then checks that every
acknowledged operation is in the ledger exactly once, nothing was recorded that
nobody asked for, balances add up, the audit trail verifies and exactly one node
accepts writes.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from .cluster import Cluster
from .private import ready
from .processes import wait_until
from .sql import one, scalar

TENANT = "bank"
ACCOUNTS = 12
SEED = 1_000_000
RETRYABLE = (503, 502, 504, 429)


@dataclass
class Op:
    key: str
    kind: str  # grant | consume | transfer | hold (reserve, then commit)
    amount: int
    account: int
    to_account: int | None = None
    status: str = "pending"  # pending -> acked | refused (a business refusal) | failed
    attempts: int = 0
    http: int | None = None
    acked_at: float | None = None
    sent_at: float | None = None  # start of the latest attempt
    hold_id: int | None = None


@dataclass
class Workload:
    """Many clients moving credits through the API; each mutation has an idempotency key.

    A timeout, a connection error or a 503 is indeterminate: the client retries the
    same key until it gets an answer (or the drain deadline passes).
    """

    base: str
    accounts: list[int]
    probe_account: int
    clients: int = 16
    seed: int = 7
    ops: list[Op] = field(default_factory=list)
    probes: list[tuple[float, float, bool]] = field(default_factory=list)
    ready: list[tuple[float, int]] = field(default_factory=list)
    retries: int = 0
    unexpected: list[str] = field(default_factory=list)
    probe_log: list[tuple[float, float, str]] = field(default_factory=list)
    tenant: str = TENANT
    kinds: tuple[str, ...] = ("grant", "consume", "consume", "transfer", "transfer", "hold")
    api_key: str | None = None  # sent as a Bearer token when the API checks keys
    # Several API processes behind one address, as a Service spreads requests over
    # pods: each attempt goes to one of these (base is then only the default).
    # Changed while the workload runs to add or remove a process.
    bases: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.drain_deadline = float("inf")

    def _url(self, path: str) -> str:
        return random.choice(self.bases) + path if self.bases else path

    # -- one operation --
    async def _post(self, http, op: Op, path: str, body: dict | None, key: str | None) -> dict | None:
        """POST until a definite answer: the JSON of a 2xx, or None after a refusal (op.status says
        which) or when the drain deadline passes (op stays pending: indeterminate)."""
        import httpx

        while True:
            op.attempts += 1
            op.sent_at = time.monotonic()
            try:
                resp = await http.post(self._url(path), json=body, headers={"Idempotency-Key": key} if key else {})
            except (httpx.TimeoutException, httpx.TransportError):
                status = None
            else:
                status = resp.status_code
            op.http = status
            if status is not None and 200 <= status < 300:
                return resp.json()
            if status is not None and status not in RETRYABLE:
                name = resp.json().get("type", "") if status in (404, 409, 422) else ""
                op.status = "refused" if name.endswith("insufficient_funds") else "failed"
                if op.status == "failed":
                    self.unexpected.append(f"{op.key}: {status} {resp.text[:200]}")
                return None
            self.retries += 1
            if time.monotonic() > self.drain_deadline:
                return None
            await asyncio.sleep(0.05 + random.random() * 0.15)

    async def _send(self, http, op: Op) -> None:
        t = f"/v1/tenants/{self.tenant}"
        if op.kind == "transfer":
            done = await self._post(
                http,
                op,
                f"{t}/transfers",
                {"from_account": op.account, "to_account": op.to_account, "amount": op.amount, "reason": "ha test"},
                op.key,
            )
        elif op.kind == "hold":
            # Reserve (keyed), then commit the whole hold (idempotent by hold id).
            hold = await self._post(
                http,
                op,
                f"{t}/accounts/{op.account}/holds",
                {"amount": op.amount, "ttl_seconds": 600, "reason": "ha test"},
                op.key,
            )
            if hold is None:
                return
            op.hold_id = hold["hold_id"]
            done = await self._post(http, op, f"{t}/holds/{op.hold_id}/commit", None, None)
        else:
            verb = "grants" if op.kind == "grant" else "consume"
            done = await self._post(
                http, op, f"{t}/accounts/{op.account}/{verb}", {"amount": op.amount, "reason": "ha test"}, op.key
            )
        if done is not None:
            op.status, op.acked_at = "acked", time.monotonic()

    async def _client(self, http, n: int, rng: random.Random) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            kind = rng.choice(self.kinds)
            a, b = rng.sample(self.accounts, 2)
            op = Op(f"c{n}-{i}-{kind}", kind, rng.randint(1, 50), a, b if kind == "transfer" else None)
            self.ops.append(op)
            await self._send(http, op)

    async def _probe(self, http) -> None:
        """A tiny grant every 50 ms with its own key and a short timeout: when do writes work?"""
        import httpx

        i = 0
        while not self._stop.is_set():
            i += 1
            t0 = time.monotonic()
            try:
                # A new connection each time, so probes reach every API worker process.
                resp = await http.post(
                    self._url(f"/v1/tenants/{self.tenant}/accounts/{self.probe_account}/grants"),
                    json={"amount": 1},
                    timeout=1.0,
                    headers={"Idempotency-Key": f"probe-{i}", "Connection": "close"},
                )
                ok = resp.status_code in (200, 201)
                why = "ok" if ok else f"{resp.status_code} {resp.json().get('type', '')}"
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                ok, why = False, type(exc).__name__
            self.probes.append((t0, time.monotonic(), ok))
            self.probe_log.append((t0, time.monotonic(), why))
            await asyncio.sleep(0.05)

    async def _readiness(self, http) -> None:
        import httpx

        while not self._stop.is_set():
            try:
                status = (await http.get(self._url("/health/ready"), timeout=1.0)).status_code
            except (httpx.TimeoutException, httpx.TransportError):
                status = 0
            self.ready.append((time.monotonic(), status))
            await asyncio.sleep(0.2)

    async def _main(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.clients + 4)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        async with httpx.AsyncClient(base_url=self.base, timeout=5.0, limits=limits, headers=headers) as http:
            rng = random.Random(self.seed)
            tasks = [
                asyncio.create_task(self._client(http, n, random.Random(rng.random()))) for n in range(self.clients)
            ]
            tasks += [asyncio.create_task(self._probe(http)), asyncio.create_task(self._readiness(http))]
            await asyncio.gather(*tasks)

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 60.0) -> None:
        """Stop issuing new operations; let in-flight ones finish their retries (bounded)."""
        self.drain_deadline = time.monotonic() + drain_s
        self._stop.set()
        assert self._thread is not None
        self._thread.join(drain_s + 15)
        if self._thread.is_alive():
            raise RuntimeError("workload did not stop")

    # -- figures --
    def unavailable_since(self, t_kill: float) -> float | None:
        """Seconds from t_kill until a write sent after it succeeded (a probe or a client's attempt)."""
        ok = [end for start, end, good in self.probes if good and start >= t_kill]
        ok += [
            op.acked_at
            for op in list(self.ops)
            if op.status == "acked" and op.sent_at is not None and op.sent_at >= t_kill and op.acked_at
        ]
        return min(ok) - t_kill if ok else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in self.ops:
            out[op.status] = out.get(op.status, 0) + 1
        return out


def seed_bank(url: str, tenant: str = TENANT, accounts: int = ACCOUNTS) -> tuple[list[int], int, str | None]:
    """A tenant with funded accounts, a probe account and an API key for its clients.

    Returns (account ids, probe account id, API key or None when the build has no auth schema).
    The key's rate limit is far above the workload: limits are not what these runs measure."""
    with psycopg.connect(url, autocommit=True) as conn:
        api_key = None
        conn.execute("SELECT credits.create_tenant(%s, 'HA bank')", (tenant,))
        ids = []
        for i in range(accounts + 1):
            acc = scalar(
                conn, "SELECT account_id FROM credits.create_account(%s, %s, %s)", (tenant, f"acct-{i}", f"open-{i}")
            )
            conn.execute(
                "SELECT credits.grant_credits(%s, %s::bigint, %s::bigint, %s, 'seed')", (tenant, acc, SEED, f"seed-{i}")
            )
            ids.append(acc)
        if scalar(conn, "SELECT to_regproc('auth.create_key') IS NOT NULL"):
            api_key = scalar(
                conn,
                "SELECT api_key FROM auth.create_key(%s, 'ha-workload', ARRAY['consumer', 'billing', 'admin'], "
                "'ha-workload-key', 1e6, 1e6)",
                (tenant,),
            )
    return ids[:-1], ids[-1], api_key


class Nodes(Protocol):
    """What verify() needs of a cluster: a superuser URL of the primary and the nodes accepting writes."""

    @property
    def layout(self) -> Any: ...

    def writable_nodes(self) -> list[str]: ...


def verify(cluster: Nodes, work: Workload, tenant: str = TENANT) -> dict[str, Any]:
    """Check the ledger on the settled cluster against what the clients were told.

    Returns figures and a list of problems (empty when everything holds)."""
    problems: list[str] = []
    url = cluster.layout.url()
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        entries = conn.execute(
            "SELECT idem_key, leg, kind, amount, account_id FROM credits.entries WHERE tenant_id = %s", (tenant,)
        ).fetchall()
        accounts = conn.execute(
            "SELECT account_id, balance, held FROM credits.accounts WHERE tenant_id = %s", (tenant,)
        ).fetchall()
        reconcile = conn.execute("SELECT * FROM credits.reconcile()").fetchall()
        # The audit trail (when the audit schema is installed) must verify end to end.
        audit = None
        if one(conn, "SELECT to_regproc('audit.verify') IS NOT NULL AS yes")["yes"]:
            audit = one(conn, "SELECT ok, broken_streams, stream, problem FROM audit.verify()")
    by_key: dict[str, list[dict]] = {}
    for e in entries:
        by_key.setdefault(e["idem_key"], []).append(e)
    requested = {op.key: op for op in work.ops}
    lost = 0
    holds = {}
    if any(op.kind == "hold" for op in work.ops):
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            holds = {
                h["idem_key"]: h
                for h in conn.execute(
                    "SELECT idem_key, status, amount, captured FROM credits.holds WHERE tenant_id = %s", (tenant,)
                ).fetchall()
            }
    for op in work.ops:
        legs = by_key.get(op.key, [])
        want_legs = 2 if op.kind == "transfer" else 1
        if op.kind == "hold" and op.status == "acked":
            h = holds.get(op.key)
            if not h or h["status"] != "captured" or h["captured"] != op.amount:
                problems.append(f"acknowledged hold {op.key} is {h}")
        if op.status == "acked":
            if not legs:
                lost += 1
                problems.append(f"acknowledged {op.key} is missing")
            elif len(legs) != want_legs:
                problems.append(f"{op.key} has {len(legs)} entries, expected {want_legs}")
            else:
                main = next((e for e in legs if e["leg"] in (0, 2)), legs[0])
                expect = {"grant": op.amount, "consume": -op.amount, "transfer": -op.amount, "hold": -op.amount}[
                    op.kind
                ]
                if main["amount"] != expect or main["account_id"] != op.account:
                    problems.append(f"{op.key} recorded as {main}, requested {op}")
        elif op.status in ("refused", "failed") and legs:
            problems.append(f"{op.key} was refused but is in the ledger")
        # pending (indeterminate) ops may be there once or not at all
    known = set(requested) | {k for k in by_key if k.startswith(("seed-", "probe-"))}
    strangers = sorted(set(by_key) - known)
    if strangers:
        problems.append(f"{len(strangers)} entries nobody requested, e.g. {strangers[:3]}")
    if audit is not None and not audit["ok"]:
        problems.append(f"audit.verify() fails: {audit}")
    if reconcile:
        problems.append(f"reconcile() reports {len(reconcile)} accounts: {reconcile[:2]}")
    grants = sum(e["amount"] for e in entries if e["kind"] == "grant")
    consumed = -sum(e["amount"] for e in entries if e["kind"] in ("consume", "capture"))
    balances = sum(a["balance"] for a in accounts)
    held = sum(a["held"] for a in accounts)
    # held is part of balance in this schema (held <= balance): grants = balances + consumed.
    if grants != balances + consumed:
        problems.append(f"grants {grants} != balances {balances} + consumed {consumed}")
    if any(a["balance"] < 0 or a["balance"] - a["held"] < 0 for a in accounts):
        problems.append("a negative balance")
    acked_grants = sum(op.amount for op in work.ops if op.kind == "grant" and op.status == "acked")
    pending_grants = sum(op.amount for op in work.ops if op.kind == "grant" and op.status == "pending")
    ledger_grants = sum(e["amount"] for e in entries if e["kind"] == "grant" and e["idem_key"] in requested)
    if not acked_grants <= ledger_grants <= acked_grants + pending_grants:
        problems.append(
            f"granted {ledger_grants} in the ledger, acknowledged {acked_grants} (+{pending_grants} indeterminate)"
        )
    writable = cluster.writable_nodes()
    if len(writable) != 1:
        problems.append(f"nodes accepting writes: {writable}")
    return {
        "lost_acked_ops": lost,
        "problems": problems,
        "entries": len(entries),
        "grants": grants,
        "audit_ok": None if audit is None else audit["ok"],
        "acked_by_kind": {k: sum(1 for op in work.ops if op.kind == k and op.status == "acked") for k in work.kinds},
        "balances": balances,
        "consumed": consumed,
        "held": held,
        "writable": writable,
        "counts": work.counts(),
    }


def failover(
    cluster: Cluster, base: str, before_s: float = 4.0, after_s: float = 3.0, clients: int = 16
) -> dict[str, Any]:
    """Kill -9 the primary mid-run; returns figures and the verification."""
    tenant = f"bank-{uuid.uuid4().hex[:8]}"
    accounts, probe, api_key = seed_bank(cluster.layout.url(), tenant)
    timelines_before = cluster.timelines()
    old = cluster.leader()
    assert old, "no leader before the kill"
    work = Workload(base, accounts, probe, clients=clients, tenant=tenant, api_key=api_key)
    work.start()
    try:
        time.sleep(before_s)
        acked_before = work.counts().get("acked", 0)
        # The clock starts when the signals have been sent: until then the primary still works.
        t_kill = cluster.kill_node(old)
        phases = _watch_recovery(cluster, work, old, t_kill)
        new = cluster.leader()
        time.sleep(after_s)
    finally:
        work.stop()
    unavailable = work.unavailable_since(t_kill)
    ready_during = [s for t, s in work.ready if t > t_kill and t < t_kill + (unavailable or 0)]
    # The old primary comes back as a standby (pg_rewind) and the cluster is whole again.
    cluster.start_node(old)
    wait_until(cluster.healthy, 120, "the old primary to rejoin as a standby", 0.5)
    timelines_after = cluster.timelines()
    # Readiness must be back once a primary is reachable: a bounded wait, since
    # the breaker may still be closing after the old primary's dead connections.
    deadline = time.monotonic() + 20
    while not ready(base) and time.monotonic() < deadline:
        time.sleep(0.25)
    ready_final = 200 if ready(base) else 503
    result = verify(cluster, work, tenant)
    result.update(
        {
            "unavailable_s": unavailable,
            "old_leader": old,
            "new_leader": new,
            "acked_before_kill": acked_before,
            "timelines_before": timelines_before,
            "timelines_after": timelines_after,
            "ready_statuses_during_outage": sorted(set(ready_during)),
            "ready_final": ready_final,
            "retries": work.retries,
            "unexpected": work.unexpected,
            "phases_s": phases,
            "probe_story": _story(work.probe_log, t_kill),
        }
    )
    return result


def freeze(
    cluster: Cluster,
    base: str,
    target: str = "leader",
    frozen_s: float = 20.0,
    before_s: float = 3.0,
    after_s: float = 3.0,
    clients: int = 16,
) -> dict[str, Any]:
    """Freeze a node (SIGSTOP of its Patroni and PostgreSQL) for frozen_s under load, then wake it (SIGCONT).

    target "leader": the primary freezes, Patroni elects another, and the old one wakes up
    believing it is still the primary until its Patroni demotes it; "sync": the
    synchronous standby freezes and strict synchronous mode must move to the other one.
    Every answer the clients got is checked against the ledger (`verify`); a definite
    refusal given by a deposed primary (a stale "unknown hold", say) is an unexpected answer.
    """
    tenant = f"bank-{uuid.uuid4().hex[:8]}"
    accounts, probe, api_key = seed_bank(cluster.layout.url(), tenant)
    old = cluster.leader()
    assert old, "no leader before the freeze"
    if target == "leader":
        node = old
    else:
        node = next(m["name"] for m in cluster.members() if m.get("role") == "sync_standby")
    work = Workload(base, accounts, probe, clients=clients, seed=29, tenant=tenant, api_key=api_key)
    work.start()
    try:
        time.sleep(before_s)
        acked_before = work.counts().get("acked", 0)
        pids = cluster.signal_node(node, signal.SIGSTOP)
        t_freeze = time.monotonic()
        time.sleep(frozen_s)
        cluster.signal_node(node, signal.SIGCONT, pids)
        time.sleep(after_s)
    finally:
        work.stop()
    wait_until(cluster.healthy, 120, f"{node} to rejoin after the freeze", 0.5)
    result = verify(cluster, work, tenant)
    result.update(
        {
            "frozen": node,
            "target": target,
            "old_leader": old,
            "new_leader": cluster.leader(),
            "acked_before_freeze": acked_before,
            "unavailable_s": work.unavailable_since(t_freeze),
            "retries": work.retries,
            "unexpected": work.unexpected,
            "probe_story": _story(work.probe_log, t_freeze),
        }
    )
    return result


def _story(log: list[tuple[float, float, str]], t0: float) -> list[str]:
    """Probe outcomes after t0, run-length encoded: '0.0-2.1s 503 ...database_unavailable x12'."""
    out: list[list] = []
    for start, end, why in log:
        if start < t0:
            continue
        if out and out[-1][2] == why:
            out[-1][1], out[-1][3] = end - t0, out[-1][3] + 1
        else:
            out.append([start - t0, end - t0, why, 1])
    return [f"{a:.1f}-{b:.1f}s {why} x{n}" for a, b, why, n in out]


def _watch_recovery(cluster: Cluster, work: Workload, old: str, t_kill: float, timeout: float = 90) -> dict:
    """Seconds after the kill at which: Patroni has a new running leader, a direct write
    through HAProxy works, and a write through the API works (bounded wait)."""
    phases: dict[str, float] = {}
    deadline = t_kill + timeout
    while "api_write" not in phases or "patroni_leader" not in phases or "haproxy_write" not in phases:
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"no recovery {timeout}s after the kill: {phases}")
        if "patroni_leader" not in phases:
            try:
                leader = cluster.leader()
            except Exception:  # noqa: BLE001
                leader = None
            if leader and leader != old:
                phases["patroni_leader"] = round(time.monotonic() - t_kill, 3)
        if "haproxy_write" not in phases:
            try:
                if cluster.writes_reach_primary():
                    phases["haproxy_write"] = round(time.monotonic() - t_kill, 3)
            except psycopg.Error:
                pass
        api_write = work.unavailable_since(t_kill)
        if "api_write" not in phases and api_write is not None:
            phases["api_write"] = round(api_write, 3)
        time.sleep(0.1)
    return phases


def switchover(
    cluster: Cluster, base: str, before_s: float = 3.0, after_s: float = 3.0, clients: int = 16
) -> dict[str, Any]:
    """A planned switchover under load; returns figures and the verification."""
    tenant = f"bank-{uuid.uuid4().hex[:8]}"
    accounts, probe, api_key = seed_bank(cluster.layout.url(), tenant)
    timelines_before = cluster.timelines()
    work = Workload(base, accounts, probe, clients=clients, seed=11, tenant=tenant, api_key=api_key)
    work.start()
    try:
        time.sleep(before_s)
        old = cluster.leader()
        t0 = time.monotonic()
        new = cluster.switchover()
        switch_s = time.monotonic() - t0
        time.sleep(after_s)
    finally:
        work.stop()
    wait_until(cluster.healthy, 120, "the old leader to follow as a standby", 0.5)
    result = verify(cluster, work, tenant)
    result.update(
        {
            "old_leader": old,
            "new_leader": new,
            "switchover_s": switch_s,
            "timelines_before": timelines_before,
            "timelines_after": cluster.timelines(),
            "retries": work.retries,
            "unexpected": work.unexpected,
        }
    )
    return result
