"""API keys, roles, tenant isolation and rate limits: one app-wide guard.

Default deny. Every route goes through `guard`:
  * routes marked `opt={"public": True}` (and /health/*, /docs*) need no key;
  * every other route needs `Authorization: Bearer sx_<key_id>_<secret>`
    (or `X-API-Key: ...`); a route declares the roles that may call it next to
    itself, `opt={"roles": ["consumer", ...]}`. A route that declares none is
    for the platform operator only;
  * a tenant key may only name its own tenant in the path ({tenant_id}); any
    other tenant is answered 404 whether it exists or not. Operator keys may
    act on every tenant. The SQL functions check the tenant again;
  * each key has a token bucket in PostgreSQL (auth.take), shared by every
    replica. A process leases a few tokens at a time and spends them locally,
    so most requests cost no limiter round trip. A request costs one token
    per ledger operation it carries: one, or a batch's number of items
    (KeyAuth.charge), taken all or none before anything is applied.

A key is verified once (auth.authenticate: the database gets sha256 of the
secret, never the secret) and trusted from an in-process cache for
`auth_cache_s`; every lease re-checks it, so a revocation takes effect on
every replica within one lease (<= LEASE_S).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from .errors import catalog, named_problem

log = logging.getLogger("shieldx.auth")

OPERATOR = "operator"
TENANT_ROLES = ("consumer", "billing", "admin", "auditor")
READERS = list(TENANT_ROLES)  # any tenant role may read the tenant's ledger
PUBLIC_PREFIXES = ("/health/", "/docs")
TENANT_PARAMS = ("tenant_id", "tenant")
KEY_RE = re.compile(r"sx_([0-9a-f]{12})_([0-9a-f]{64})")
LEASE_S = 1.0  # unused leased tokens are dropped after this long
MAX_LEASE = 100


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: injected into handlers that ask for `principal`."""

    key_id: str | None
    tenant_id: str | None  # None: the platform operator
    roles: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


ANONYMOUS_OPERATOR = Principal(key_id=None, tenant_id=None, roles=frozenset({OPERATOR}))


class ApiProblem(Exception):
    """A refusal the API decides itself (no SQL function involved).

    It names its error by SQLSTATE only: the name, HTTP status and title are
    those of ops.error_catalog (shieldx.errors.catalog).
    """

    def __init__(self, sqlstate: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.sqlstate, self.detail, self.headers, self.extra = sqlstate, detail, headers, extra


def problem_handler(request: Request, exc: ApiProblem) -> Response:
    return named_problem(exc.sqlstate, exc.detail, headers=exc.headers, **exc.extra)


# Where a caller without a valid key learns how to get one (a page of the docs).
GETTING_A_KEY = "docs/access-control.md#getting-a-key"


def unauthenticated() -> ApiProblem:
    # One answer for every reason (missing, malformed, unknown, bad secret, revoked,
    # expired): the caller learns nothing about which keys exist.
    return ApiProblem(
        "SX301",
        "a valid API key is required: send Authorization: Bearer sx_<key_id>_<secret> "
        f"(or X-API-Key); to get a key, see {GETTING_A_KEY}",
        headers={"WWW-Authenticate": 'Bearer realm="shieldx"'},
        help=GETTING_A_KEY,
    )


def forbidden(detail: str) -> ApiProblem:
    return ApiProblem("SX302", detail)


def unknown_tenant(tenant: str) -> ApiProblem:
    # Same answer as for a tenant that does not exist: nothing leaks.
    return ApiProblem("SX001", f"tenant {tenant} not found")


def rate_limited(retry_after_s: float | None, limit: float, cost: int = 1, remaining: float = 0) -> ApiProblem:
    """429: the budget lacks the `cost` tokens the request needs (`remaining` are left). retry_after_s None:
    never, the cost exceeds the key's burst (`limit`)."""
    if retry_after_s is None:
        return ApiProblem(
            "SX303",
            f"this request costs {cost} tokens (one per operation), more than this key's burst of {int(limit)}; "
            "split it",
            headers=rate_limit_headers(limit, remaining, 0),
        )
    seconds = max(1, math.ceil(retry_after_s))
    headers = {"Retry-After": str(seconds), **rate_limit_headers(limit, remaining, seconds)}
    what = "too many requests" if cost == 1 else f"this request costs {cost} tokens (one per operation)"
    return ApiProblem("SX303", f"{what}; retry in {seconds}s", headers=headers)


def rate_limit_headers(limit: float, remaining: float, reset_s: float) -> dict[str, str]:
    """The IETF draft's RateLimit-* fields: the key's burst, what is left of it, seconds until it is full again."""
    return {
        "RateLimit-Limit": str(int(limit)),
        "RateLimit-Remaining": str(max(0, int(remaining))),
        "RateLimit-Reset": str(max(0, math.ceil(reset_s))),
    }


RATE_LIMIT_STATE = "shieldx_rate_limit"
RATE_ENTRY_STATE = "shieldx_rate_entry"  # request.state: the key's cache entry, for KeyAuth.charge


async def send_rate_limit(message: Any, scope: Any) -> None:
    """before_send: add the RateLimit-* headers the guard computed to a keyed request's answer."""
    if message["type"] == "http.response.start":
        fields = scope.get("state", {}).get(RATE_LIMIT_STATE)
        if fields:
            present = {name.lower() for name, _ in message.get("headers", [])}
            extra = [(k.lower().encode(), v.encode()) for k, v in fields.items() if k.lower().encode() not in present]
            message["headers"] = [*message.get("headers", []), *extra]


class _Entry:
    __slots__ = ("bucket", "burst", "digest", "lease_until", "principal", "rate", "tokens", "valid_until")

    def __init__(self, principal: Principal, digest: bytes, valid_until: float, rate: float, burst: float) -> None:
        self.principal, self.digest, self.valid_until = principal, digest, valid_until
        self.rate, self.burst = rate, burst
        self.tokens = 0
        self.lease_until = 0.0
        self.bucket = burst  # tokens left in the shared bucket at the last lease

    def rate_limit(self) -> dict[str, str]:
        """RateLimit-* as this process knows them (the shared bucket as of its last lease, plus its leased tokens)."""
        remaining = self.bucket + self.tokens
        return rate_limit_headers(self.burst, remaining, (self.burst - remaining) / self.rate if self.rate else 0)

    @property
    def lease_size(self) -> int:
        # Small against the bucket, so one replica cannot sit on tokens another needs.
        return max(1, min(MAX_LEASE, int(self.burst * 0.1), int(self.rate * 0.05)))


class FailureLimiter:
    """401/403 answers per client network (IPv4 /24, IPv6 /48): an in-process token bucket each.

    Every refusal of authentication or authorisation spends a token of the
    caller's network; an empty bucket is answered 429 before the database is
    asked anything, so a flood of bad keys costs this process, not the primary.
    A request with a valid key this process has cached is never held back.
    """

    MAX_NETWORKS = 100_000  # forget the oldest networks beyond this many

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: dict[str, tuple[float, float]] = {}  # network -> (tokens, at)

    @staticmethod
    def network(host: str | None) -> str:
        try:
            ip = ipaddress.ip_address(host or "")
        except ValueError:
            return host or "-"  # a test client or a socket path
        return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 48}", strict=False))

    def _tokens(self, net: str) -> float:
        tokens, at = self.buckets.get(net, (self.burst, self.clock()))
        return min(self.burst, tokens + (self.clock() - at) * self.rate)

    def wait_s(self, net: str) -> float:
        """Seconds until the network may be refused again (0: it may be answered now)."""
        tokens = self._tokens(net)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def spend(self, net: str) -> None:
        tokens = self._tokens(net)
        self.buckets.pop(net, None)  # re-insert: the dict stays ordered oldest first
        self.buckets[net] = (max(0.0, tokens - 1), self.clock())
        while len(self.buckets) > self.MAX_NETWORKS:
            del self.buckets[next(iter(self.buckets))]


FAILURE_FLUSH_S = 10.0  # failed authentications are recorded at most this often, in one write


class KeyAuth:
    """The guard, its key cache and its counters (exposed by /metrics)."""

    def __init__(
        self,
        database: Any,
        enabled: bool = True,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        failure_rate: float = 1.0,
        failure_burst: float = 20.0,
        flush_s: float = FAILURE_FLUSH_S,
    ) -> None:
        self.database, self.enabled, self.cache_s, self.clock = database, enabled, cache_s, clock
        self.limiter = FailureLimiter(failure_rate, failure_burst, clock)
        self.flush_s, self.flushed_at = flush_s, clock()
        self.pending: dict[tuple[str, str], int] = {}  # (reason, key id) -> failures not yet recorded
        self.flushing: asyncio.Task | None = None
        self.cache: dict[str, _Entry] = {}
        self.counters: dict[str, int] = {
            "cache_hits": 0,
            "verifications": 0,
            "leases": 0,
            "rate_limited": 0,
            "forbidden": 0,
            "tenant_mismatch": 0,
            "refusals_limited": 0,
        }
        self.failures: dict[str, int] = {}

    # --- authentication --------------------------------------------------
    def _fail(self, reason: str, key_id: str | None, path: str) -> ApiProblem:
        self.failures[reason] = self.failures.get(reason, 0) + 1
        # Counted here; recorded in auth.failures by `flush`, one write for many failures.
        real_key = key_id if reason in ("bad_secret", "revoked", "expired") else ""
        self.pending[(reason, real_key or "")] = self.pending.get((reason, real_key or ""), 0) + 1
        # Never the key itself: its public id at most.
        log.warning("authentication failed: reason=%s key_id=%s path=%r", reason, key_id or "-", path)
        return unauthenticated()

    @staticmethod
    def _presented(connection: ASGIConnection) -> str | None:
        value = connection.headers.get("authorization")
        if value is not None:
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
        return connection.headers.get("x-api-key")

    async def authenticate(self, connection: ASGIConnection) -> _Entry:
        presented = self._presented(connection)
        path = connection.url.path
        if presented is None:
            raise self._fail("missing", None, path)
        match = KEY_RE.fullmatch(presented)
        if match is None:
            raise self._fail("malformed", None, path)
        key_id, secret = match.groups()
        digest = hashlib.sha256(secret.encode()).digest()
        now = self.clock()
        entry = self.cache.get(key_id)
        if entry is not None and entry.valid_until > now and hmac.compare_digest(entry.digest, digest):
            self.counters["cache_hits"] += 1
            return entry
        self.counters["verifications"] += 1
        row = await self.database.one("SELECT * FROM auth.authenticate(%s, %s)", (key_id, digest))
        if not row["ok"]:
            raise self._fail(row["reason"], key_id, path)
        valid_until = now + self.cache_s
        if row["expires_at"] is not None:  # never trust a key past its expiry
            valid_until = min(valid_until, now + max(0.0, row["expires_at"].timestamp() - time.time()))
        principal = Principal(key_id=key_id, tenant_id=row["tenant_id"], roles=frozenset(row["roles"]))
        fresh = _Entry(principal, digest, valid_until, row["rate_per_s"], row["burst"])
        if entry is not None and entry.digest == digest:  # keep the tokens already leased
            fresh.tokens, fresh.lease_until = entry.tokens, entry.lease_until
        self.cache[key_id] = fresh
        return fresh

    # --- rate limit ------------------------------------------------------
    async def spend(self, entry: _Entry, path: str, cost: int = 1) -> None:
        """Take `cost` tokens of the key's budget, all or none: from this process's lease, the rest leased from
        the shared bucket (auth.take with p_min: all of the rest, or nothing). 429 when the budget lacks them."""
        if entry.lease_until <= self.clock():
            entry.tokens = 0  # an ended lease's tokens are gone
        local = entry.tokens
        if local >= cost:
            entry.tokens -= cost
            return
        if cost > entry.burst:  # the bucket never holds that many
            self.counters["rate_limited"] += 1
            raise rate_limited(None, entry.burst, cost, entry.bucket + local)
        entry.tokens -= local  # claimed before the await: a concurrent request cannot spend them too
        need = cost - local
        self.counters["leases"] += 1
        row = await self.database.one(
            "SELECT * FROM auth.take(%s, %s::int, %s::int)", (entry.principal.key_id, need - 1 + entry.lease_size, need)
        )
        if not row["active"]:  # revoked or expired since we cached it
            self.cache.pop(entry.principal.key_id or "", None)
            raise self._fail("revoked_or_expired", entry.principal.key_id, path)
        entry.bucket = row["tokens"]
        if row["granted"] < need:
            entry.tokens += local  # nothing taken
            self.counters["rate_limited"] += 1
            raise rate_limited(row["retry_after_s"], entry.burst, cost, 0 if cost == 1 else entry.bucket + local)
        entry.tokens += row["granted"] - need
        entry.lease_until = self.clock() + LEASE_S

    async def charge(self, request: Request, operations: int) -> None:
        """A request costs one token per ledger operation it carries, as that many single calls would. The guard
        took one for the request before its body was read; a request carrying several operations (a batch) calls
        this before applying any: the guard's token is given back and all `operations` tokens are taken at once,
        or none (429, nothing applied). (Should the lease end between the guard and this call, the guard's token
        ends with it: the request then pays one token more.)"""
        entry: _Entry | None = getattr(request.state, RATE_ENTRY_STATE, None)
        if entry is None or operations == 1:  # limits off, or the guard's token already paid for it
            return
        entry.tokens += 1
        try:
            await self.spend(entry, request.url.path, operations)
        finally:
            request.scope.setdefault("state", {})[RATE_LIMIT_STATE] = entry.rate_limit()

    async def flush(self) -> int:
        """Record the failures counted since the last flush, in one write. Returns how many."""
        batch, self.pending = self.pending, {}
        if not batch:
            return 0
        counts = [{"reason": r, "key_id": k, "count": n} for (r, k), n in batch.items()]
        try:
            row = await self.database.one("SELECT auth.record_failures(%s::jsonb) AS n", (json.dumps(counts),))
        except Exception:  # noqa: BLE001 - keep the counts for the next flush
            for k, n in batch.items():
                self.pending[k] = self.pending.get(k, 0) + n
            log.warning("could not record %d failed authentications; will retry", sum(batch.values()))
            return 0
        return int(row["n"])

    def _flush_if_due(self) -> None:
        now = self.clock()
        if self.pending and now - self.flushed_at >= self.flush_s and (self.flushing is None or self.flushing.done()):
            self.flushed_at = now
            self.flushing = asyncio.get_running_loop().create_task(self.flush())

    def _cached(self, connection: ASGIConnection) -> bool:
        """The presented key is one this process verified and still trusts."""
        match = KEY_RE.fullmatch(self._presented(connection) or "")
        entry = self.cache.get(match.group(1)) if match else None
        return (
            entry is not None
            and entry.valid_until > self.clock()
            and hmac.compare_digest(entry.digest, hashlib.sha256(match.group(2).encode()).digest())  # type: ignore[union-attr]
        )

    def forget(self, key_id: str) -> None:
        """Drop a key from this process's cache (after revoke/rotate here)."""
        self.cache.pop(key_id, None)

    # --- the guard -------------------------------------------------------
    async def guard(self, connection: ASGIConnection, route_handler: BaseRouteHandler) -> None:
        opt = route_handler.opt
        path = connection.url.path
        if opt.get("public") or path.startswith(PUBLIC_PREFIXES):
            return
        # Refusals (ours and Litestar's, e.g. 413) take their titles from the catalog.
        await catalog.ensure(self.database)
        if not self.enabled:
            connection.state.principal = ANONYMOUS_OPERATOR
            return
        self._flush_if_due()
        net = self.limiter.network(connection.client.host if connection.client else None)
        wait = self.limiter.wait_s(net)
        if wait > 0 and not self._cached(connection):
            self.counters["refusals_limited"] += 1
            self.counters["rate_limited"] += 1  # every 429 answer (the per-key limit's and this one)
            raise rate_limited(wait, self.limiter.burst)
        try:
            entry = await self.authenticate(connection)
            principal = entry.principal
            if not principal.is_operator:
                self._check_tenant_and_roles(connection, principal, opt)
        except ApiProblem:
            self.limiter.spend(net)
            raise
        await self.spend(entry, path)
        connection.state.principal = principal
        setattr(connection.state, RATE_ENTRY_STATE, entry)
        connection.scope.setdefault("state", {})[RATE_LIMIT_STATE] = entry.rate_limit()

    def _check_tenant_and_roles(self, connection: ASGIConnection, principal: Principal, opt: dict) -> None:
        params = connection.path_params
        for name in TENANT_PARAMS:
            tenant = params.get(name)
            if tenant is not None and tenant != principal.tenant_id:
                self.counters["tenant_mismatch"] += 1
                raise unknown_tenant(str(tenant))
        required = opt.get("roles")
        if not required or principal.roles.isdisjoint(required):
            self.counters["forbidden"] += 1
            needed = ", ".join(required) if required else "operator"
            raise forbidden(f"this operation needs one of the roles: {needed}")

    def snapshot(self) -> dict[str, Any]:
        return {
            **{f"{k}_total": v for k, v in self.counters.items()},
            "failures_total": dict(self.failures),
            "cached_keys": len(self.cache),
        }


async def provide_principal(request: Request) -> Principal:
    """Dependency `principal`: the caller, for routes without {tenant_id} in the path."""
    return request.state.principal
