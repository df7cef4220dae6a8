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
    so most requests cost no limiter round trip.

A key is verified once (auth.authenticate: the database gets sha256 of the
secret, never the secret) and trusted from an in-process cache for
`auth_cache_s`; every lease re-checks it, so a revocation takes effect on
every replica within one lease (<= LEASE_S).
"""

from __future__ import annotations

import hashlib
import hmac
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


def rate_limited(retry_after_s: float) -> ApiProblem:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiProblem("SX303", f"too many requests; retry in {seconds}s", headers={"Retry-After": str(seconds)})


class _Entry:
    __slots__ = ("burst", "digest", "lease_until", "principal", "rate", "tokens", "valid_until")

    def __init__(self, principal: Principal, digest: bytes, valid_until: float, rate: float, burst: float) -> None:
        self.principal, self.digest, self.valid_until = principal, digest, valid_until
        self.rate, self.burst = rate, burst
        self.tokens = 0
        self.lease_until = 0.0

    @property
    def lease_size(self) -> int:
        # Small against the bucket, so one replica cannot sit on tokens another needs.
        return max(1, min(MAX_LEASE, int(self.burst * 0.1), int(self.rate * 0.05)))


class KeyAuth:
    """The guard, its key cache and its counters (exposed by /metrics)."""

    def __init__(
        self,
        database: Any,
        enabled: bool = True,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database, self.enabled, self.cache_s, self.clock = database, enabled, cache_s, clock
        self.cache: dict[str, _Entry] = {}
        self.counters: dict[str, int] = {
            "cache_hits": 0,
            "verifications": 0,
            "leases": 0,
            "rate_limited": 0,
            "forbidden": 0,
            "tenant_mismatch": 0,
        }
        self.failures: dict[str, int] = {}

    # --- authentication --------------------------------------------------
    def _fail(self, reason: str, key_id: str | None, path: str) -> ApiProblem:
        self.failures[reason] = self.failures.get(reason, 0) + 1
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
    async def spend(self, entry: _Entry, path: str) -> None:
        now = self.clock()
        if entry.tokens >= 1 and entry.lease_until > now:
            entry.tokens -= 1
            return
        self.counters["leases"] += 1
        want = entry.lease_size
        row = await self.database.one("SELECT * FROM auth.take(%s, %s::int)", (entry.principal.key_id, want))
        if not row["active"]:  # revoked or expired since we cached it
            self.cache.pop(entry.principal.key_id or "", None)
            raise self._fail("revoked_or_expired", entry.principal.key_id, path)
        if row["granted"] < 1:
            self.counters["rate_limited"] += 1
            raise rate_limited(row["retry_after_s"])
        entry.tokens, entry.lease_until = row["granted"] - 1, self.clock() + LEASE_S

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
        entry = await self.authenticate(connection)
        principal = entry.principal
        if not principal.is_operator:
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
        await self.spend(entry, path)
        connection.state.principal = principal

    def snapshot(self) -> dict[str, Any]:
        return {
            **{f"{k}_total": v for k, v in self.counters.items()},
            "failures_total": dict(self.failures),
            "cached_keys": len(self.cache),
        }


async def provide_principal(request: Request) -> Principal:
    """Dependency `principal`: the caller, for routes without {tenant_id} in the path."""
    return request.state.principal
