"""Credits ledger routes: thin wrappers over the credits.* SQL functions."""

from __future__ import annotations

from litestar import Controller, Response, get, post, put

from ..auth import READERS  # roles: see shieldx/auth.py; no declaration = platform operator only
from ..models.bounds import PathId, TenantPath
from ..models.credits import (
    Account,
    AccountCreated,
    AccountIn,
    AccountPage,
    AccountStatusChange,
    AccountStatusIn,
    AccountSummary,
    AmountIn,
    Entry,
    EntryPage,
    Movement,
    Tenant,
    TenantIn,
    Transfer,
    TransferIn,
)
from .params import DB, LOCATION, REPLAY, Cursor, IdempotencyKey, Limit, created, next_cursor


class CreditsController(Controller):
    path = "/v1/tenants/{tenant_id:str}"
    tags = ["credits"]

    @put(
        "",
        summary="Create a tenant (idempotent by its id)",
        status_code=201,
        response_headers=[*LOCATION, *REPLAY],
    )
    async def create_tenant(self, tenant_id: TenantPath, data: TenantIn, db: DB) -> Response[Tenant]:
        row = await db.one("SELECT * FROM credits.create_tenant(%s, %s)", (tenant_id, data.name))
        return created(Tenant, row, f"/v1/tenants/{row['tenant_id']}")

    @post(
        "/accounts",
        summary="Open an account",
        opt={"roles": ["admin"]},
        response_headers=[*LOCATION, *REPLAY],
    )
    async def create_account(
        self, tenant_id: TenantPath, data: AccountIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[AccountCreated]:
        row = await db.one("SELECT * FROM credits.create_account(%s, %s, %s)", (tenant_id, data.name, idempotency_key))
        return created(AccountCreated, row, f"/v1/tenants/{tenant_id}/accounts/{row['account_id']}")

    @get("/accounts", summary="List accounts (keyset pagination)", opt={"roles": READERS})
    async def list_accounts(
        self, tenant_id: TenantPath, db: DB, cursor: Cursor = None, limit: Limit = 100
    ) -> AccountPage:
        rows = await db.all("SELECT * FROM credits.list_accounts(%s, %s::bigint, %s::int)", (tenant_id, cursor, limit))
        items = [AccountSummary(**r) for r in rows]
        return AccountPage(items=items, next_cursor=next_cursor(items, limit, "account_id"))

    @get("/accounts/{account_id:int}", summary="Balance, held and available credits", opt={"roles": READERS})
    async def get_account(self, tenant_id: TenantPath, account_id: PathId, db: DB) -> Account:
        return Account(**await db.one("SELECT * FROM credits.get_account(%s, %s::bigint)", (tenant_id, account_id)))

    @get(
        "/accounts/{account_id:int}/entries",
        summary="Journal, newest first (keyset pagination by seq)",
        opt={"roles": READERS},
    )
    async def list_entries(
        self, tenant_id: TenantPath, account_id: PathId, db: DB, cursor: Cursor = None, limit: Limit = 100
    ) -> EntryPage:
        rows = await db.all(
            "SELECT * FROM credits.list_entries(%s, %s::bigint, %s::bigint, %s::int)",
            (tenant_id, account_id, cursor, limit),
        )
        items = [Entry(**r) for r in rows]
        return EntryPage(items=items, next_cursor=next_cursor(items, limit, "seq"))

    @get(
        "/accounts/{account_id:int}/entries/{entry_id:int}",
        summary="One journal entry (what a movement's Location names)",
        opt={"roles": READERS},
    )
    async def get_entry(self, tenant_id: TenantPath, account_id: PathId, entry_id: PathId, db: DB) -> Entry:
        row = await db.one(
            "SELECT * FROM credits.get_entry(%s, %s::bigint, %s::bigint)", (tenant_id, account_id, entry_id)
        )
        return Entry(**row)

    @post(
        "/accounts/{account_id:int}/status",
        summary="Freeze, reopen or close an account",
        status_code=200,
        opt={"roles": ["admin"]},
    )
    async def set_account_status(
        self, tenant_id: TenantPath, account_id: PathId, data: AccountStatusIn, db: DB
    ) -> AccountStatusChange:
        row = await db.one(
            "SELECT * FROM credits.set_account_status(%s, %s::bigint, %s)", (tenant_id, account_id, data.status)
        )
        return AccountStatusChange(**row)

    @post(
        "/accounts/{account_id:int}/grants",
        summary="Grant (top up) credits",
        status_code=201,
        opt={"roles": ["billing"]},
        response_headers=[*LOCATION, *REPLAY],
    )
    async def grant_credits(
        self, tenant_id: TenantPath, account_id: PathId, data: AmountIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Movement]:
        row = await db.one(
            "SELECT * FROM credits.grant_credits(%s, %s::bigint, %s::bigint, %s, %s)",
            (tenant_id, account_id, data.amount, idempotency_key, data.reason),
        )
        return created(Movement, row, f"/v1/tenants/{tenant_id}/accounts/{account_id}/entries/{row['entry_id']}")

    @post(
        "/accounts/{account_id:int}/consume",
        summary="Consume (debit) credits",
        status_code=201,
        opt={"roles": ["consumer"]},
        response_headers=[*LOCATION, *REPLAY],
    )
    async def consume(
        self, tenant_id: TenantPath, account_id: PathId, data: AmountIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Movement]:
        row = await db.one(
            "SELECT * FROM credits.consume(%s, %s::bigint, %s::bigint, %s, %s)",
            (tenant_id, account_id, data.amount, idempotency_key, data.reason),
        )
        return created(Movement, row, f"/v1/tenants/{tenant_id}/accounts/{account_id}/entries/{row['entry_id']}")

    @post(
        "/transfers",
        summary="Transfer credits between two accounts of the tenant (Location: the debit entry)",
        status_code=201,
        opt={"roles": ["billing"]},
        response_headers=[*LOCATION, *REPLAY],
    )
    async def transfer(
        self, tenant_id: TenantPath, data: TransferIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Transfer]:
        row = await db.one(
            "SELECT * FROM credits.transfer(%s, %s::bigint, %s::bigint, %s::bigint, %s, %s)",
            (tenant_id, data.from_account, data.to_account, data.amount, idempotency_key, data.reason),
        )
        location = f"/v1/tenants/{tenant_id}/accounts/{data.from_account}/entries/{row['debit_entry_id']}"
        return created(Transfer, row, location)


ROUTES = [CreditsController]
