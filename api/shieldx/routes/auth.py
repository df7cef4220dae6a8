"""API key administration (auth.*): role `admin` of the tenant, or the platform operator."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post

from ..models.auth import KeyCreated, KeyIn, KeyPage, KeyRevoked, KeyRotated, KeySummary, RotateKeyIn
from ..models.bounds import KeyPath, TenantPath
from .params import DB, REPLAY, IdempotencyKey, KeyCursor, Limit, created, next_cursor

ADMIN = {"roles": ["admin"]}


class KeysController(Controller):
    path = "/v1/tenants/{tenant_id:str}/keys"
    tags = ["keys"]

    @post(
        "",
        summary="Create an API key (the whole key is shown once; a replay answers api_key null)",
        status_code=201,
        opt=ADMIN,
        response_headers=REPLAY,
    )
    async def create_key(
        self, tenant_id: TenantPath, data: KeyIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[KeyCreated]:
        row = await db.one(
            "SELECT * FROM auth.create_key(%s, %s, %s::text[], %s, %s::float8, %s::float8, %s::timestamptz)",
            (tenant_id, data.name, data.roles, idempotency_key, data.rate_per_s, data.burst, data.expires_at),
        )
        return created(KeyCreated, row)

    @get("", summary="List the tenant's keys, masked", opt=ADMIN)
    async def list_keys(self, tenant_id: TenantPath, db: DB, cursor: KeyCursor = None, limit: Limit = 100) -> KeyPage:
        rows = await db.all("SELECT * FROM auth.list_keys(%s, %s, %s::int)", (tenant_id, cursor, limit))
        items = [KeySummary(**r) for r in rows]
        return KeyPage(items=items, next_cursor=next_cursor(items, limit, "key_id"))

    @post(
        "/{key_id:str}/rotate",
        summary="Replace a key by a new one; the old one works grace_s more seconds (a replay: api_key null)",
        status_code=201,
        opt=ADMIN,
        response_headers=REPLAY,
    )
    async def rotate_key(
        self,
        request: Request,
        tenant_id: TenantPath,
        key_id: KeyPath,
        data: RotateKeyIn,
        db: DB,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[KeyRotated]:
        row = await db.one(
            "SELECT * FROM auth.rotate_key(%s, %s, %s, %s::int)", (tenant_id, key_id, idempotency_key, data.grace_s)
        )
        request.app.state.auth.forget(key_id)
        return created(KeyRotated, row)

    @post("/{key_id:str}/revoke", summary="Revoke a key at once", status_code=200, opt=ADMIN)
    async def revoke_key(self, request: Request, tenant_id: TenantPath, key_id: KeyPath, db: DB) -> KeyRevoked:
        row = await db.one("SELECT * FROM auth.revoke_key(%s, %s)", (tenant_id, key_id))
        request.app.state.auth.forget(key_id)
        return KeyRevoked(**row)


ROUTES = [KeysController]
