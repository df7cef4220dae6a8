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
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from .errors import PROBLEM, problem

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
    """A refusal the API decides itself (no SQL function involved)."""

    def __init__(
        self,
        status: int,
        name: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        sqlstate: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.name, self.title, self.detail = status, name, title, detail
        self.headers, self.sqlstate = headers, sqlstate


def problem_handler(request: Request, exc: ApiProblem) -> Response:
    extra = {"sqlstate": exc.sqlstate} if exc.sqlstate else {}
    return problem(exc.status, exc.name, exc.title, exc.detail, headers=exc.headers, **extra)


def unauthenticated(detail: str = "a valid API key is required") -> ApiProblem:
    return ApiProblem(
        401,
        "unauthenticated",
        "Missing, malformed, unknown, revoked or expired API key",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="shieldx"'},
        sqlstate="SX301",
    )


def forbidden(detail: str) -> ApiProblem:
    return ApiProblem(403, "forbidden", "The API key lacks a role this operation requires", detail, sqlstate="SX302")


def unknown_tenant(tenant: str) -> ApiProblem:
    # Same answer as for a tenant that does not exist: nothing leaks.
    return ApiProblem(404, "unknown_tenant", "Unknown tenant", f"tenant {tenant} not found", sqlstate="SX001")


def rate_limited(retry_after_s: float) -> ApiProblem:
    seconds = max(1, math.ceil(retry_after_s))
    return ApiProblem(
        429,
        "rate_limited",
        "Rate limit exceeded",
        f"too many requests; retry in {seconds}s",
        headers={"Retry-After": str(seconds)},
        sqlstate="SX303",
    )


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

    def __init__(self, database: Any, enabled: bool = True, cache_s: float = 5.0, clock=time.monotonic) -> None:
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


# --- OpenAPI: document what the guard and the error handlers may answer -----
PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "sqlstate": {"type": "string"},
        "facts": {"type": "object"},
        "errors": {"type": "array"},
    },
    "additionalProperties": True,
}
ERRORS = {
    "400": "Malformed request",
    "401": "Missing, malformed, unknown, revoked or expired API key",
    "403": "The API key lacks a required role",
    "404": "Unknown tenant, account or key (another tenant's ids are unknown too)",
    "405": "Method not allowed",
    "409": "Conflict with the current state (funds, status, idempotency key)",
    "413": "Request body or batch too large",
    "422": "Invalid argument",
    "429": "Rate limit exceeded (see Retry-After)",
    "503": "Database unavailable or circuit open (see Retry-After)",
}
PUBLIC_ERRORS = ("400", "405", "413", "422", "503")


def document(app: Any) -> None:
    """Add the bearer scheme, and problem+json answers to every operation."""
    from litestar.openapi.spec import (
        Components,
        OpenAPIHeader,
        OpenAPIMediaType,
        OpenAPIResponse,
        OpenAPIType,
        Reference,
        Schema,
        SecurityScheme,
    )

    openapi = app.openapi_schema
    components = openapi.components or Components()
    components.security_schemes = {
        **(components.security_schemes or {}),
        "ApiKey": SecurityScheme(
            type="http",
            scheme="bearer",
            description="Authorization: Bearer sx_<key_id>_<secret> (or the X-API-Key header)",
        ),
    }
    components.schemas = {
        **(components.schemas or {}),
        "Problem": Schema(
            type=OpenAPIType.OBJECT,
            required=PROBLEM_SCHEMA["required"],
            description="RFC 9457 problem details",
            properties={k: Schema(type=OpenAPIType(v["type"])) for k, v in PROBLEM_SCHEMA["properties"].items()},
        ),
    }
    openapi.components = components
    problem_schema = Reference(ref="#/components/schemas/Problem")
    retry = {"Retry-After": OpenAPIHeader(schema=Schema(type=OpenAPIType.STRING), description="seconds")}
    public_ops = {
        (route.path_format, method.lower())
        for route in app.routes
        for handler in getattr(route, "route_handlers", ())
        if handler.opt.get("public")
        for method in getattr(handler, "http_methods", ())
    }
    for path, item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            op = getattr(item, method, None)
            if op is None:
                continue
            public = path.startswith(PUBLIC_PREFIXES) or (path, method) in public_ops
            op.responses = dict(op.responses or {})
            for code, text in ERRORS.items():
                # Litestar's own 400 entry describes a body we never send (errors.py answers problem+json).
                if (public and code not in PUBLIC_ERRORS) or (code in op.responses and code != "400"):
                    continue
                op.responses[code] = OpenAPIResponse(
                    description=text,
                    content={PROBLEM: OpenAPIMediaType(schema=problem_schema)},
                    headers=retry if code in ("429", "503") else None,
                )
            if not public:
                op.security = [{"ApiKey": []}]
