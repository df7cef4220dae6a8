"""Holds (reserve / commit / abort), distributed transactions, and the external
two-phase-commit participant: thin wrappers over the credits.* SQL functions.

Holds are a tenant's (consumer keys reserve and resolve them). Distributed
and external transactions span tenants, so only platform operator keys drive them.

A hold is its own idempotency key for commit and abort (the hold id in the
path); reserve takes the Idempotency-Key header; a distributed transaction is
named by its xid.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

import msgspec
from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter
from psycopg.types.json import Jsonb

from ..auth import READERS  # no declaration = platform operator only (cross-tenant routes)
from ..models.bounds import PathId, TenantPath, XidPath
from ..models.holds import (
    CommitHoldIn,
    DistBeginIn,
    DistBegun,
    DistDecideIn,
    DistOutcome,
    DistPrepared,
    DistTransaction,
    ExtOutcome,
    ExtPrepareIn,
    ExtVote,
    Hold,
    HoldAborted,
    HoldCommitted,
    HoldPage,
    HoldSummary,
    HoldView,
    ReserveIn,
)
from .params import DB, LOCATION, REPLAY, Cursor, IdempotencyKey, Limit, answer, created, next_cursor

# credits.list_holds (SX007).
HoldStatus = Annotated[
    str | None,
    QueryParameter(
        required=False,
        schema_extra={"oneOf": None, "type": "string", "enum": ["active", "captured", "voided", "expired"]},
    ),
]


def _seconds(value: float) -> timedelta | None:
    # Out-of-range values reach SQL as an interval that it refuses (SX106).
    try:
        return timedelta(seconds=value)
    except (OverflowError, ValueError):
        return timedelta(days=999_999_999)


# Documented answers beyond the defaults every route gets (see shieldx/openapi.py).
EXPIRED = {
    410: ResponseSpec(
        None, description="hold_expired: the hold passed its deadline (SX104)", media_type="application/problem+json"
    )
}


def _legs(legs: list) -> Jsonb:
    return Jsonb(msgspec.to_builtins(legs))


class HoldsController(Controller):
    path = "/v1/tenants/{tenant_id:str}"
    tags = ["holds"]

    @post(
        "/accounts/{account_id:int}/holds",
        summary="Reserve (hold) credits for a time-to-live",
        opt={"roles": ["consumer"]},
        response_headers=[*LOCATION, *REPLAY],
    )
    async def reserve(
        self, tenant_id: TenantPath, account_id: PathId, data: ReserveIn, db: DB, idempotency_key: IdempotencyKey = None
    ) -> Response[Hold]:
        row = await db.one(
            "SELECT * FROM credits.reserve(%s, %s::bigint, %s::bigint, %s, %s::interval, %s)",
            (tenant_id, account_id, data.amount, idempotency_key, _seconds(data.ttl_seconds), data.reason),
        )
        return created(Hold, row, f"/v1/tenants/{tenant_id}/holds/{row['hold_id']}")

    @get(
        "/accounts/{account_id:int}/holds",
        summary="An account's holds, newest first (keyset pagination)",
        opt={"roles": READERS},
    )
    async def list_holds(
        self,
        tenant_id: TenantPath,
        account_id: PathId,
        db: DB,
        status: HoldStatus = None,
        cursor: Cursor = None,
        limit: Limit = 100,
    ) -> HoldPage:
        rows = await db.all(
            "SELECT * FROM credits.list_holds(%s, %s::bigint, %s, %s::bigint, %s::int)",
            (tenant_id, account_id, status, cursor, limit),
        )
        items = [HoldSummary(**r) for r in rows]
        return HoldPage(items=items, next_cursor=next_cursor(items, limit, "hold_id"))

    @get(
        "/holds/{hold_id:int}",
        summary="A hold (an active hold past its deadline reads as expired)",
        opt={"roles": READERS},
    )
    async def get_hold(self, tenant_id: TenantPath, hold_id: PathId, db: DB) -> HoldView:
        return HoldView(**await db.one("SELECT * FROM credits.get_hold(%s, %s::bigint)", (tenant_id, hold_id)))

    @post(
        "/holds/{hold_id:int}/commit",
        summary="Commit a hold, fully or partly",
        status_code=200,
        opt={"roles": ["consumer"]},
        responses=EXPIRED,
        response_headers=REPLAY,
    )
    async def commit_hold(
        self, tenant_id: TenantPath, hold_id: PathId, db: DB, data: CommitHoldIn | None = None
    ) -> Response[HoldCommitted]:
        data = data or CommitHoldIn()
        row = await db.one(
            "SELECT * FROM credits.commit_hold(%s, %s::bigint, %s::bigint, %s)",
            (tenant_id, hold_id, data.amount, data.reason),
        )
        return answer(HoldCommitted, row)

    @post(
        "/holds/{hold_id:int}/abort",
        summary="Abort a hold",
        status_code=200,
        opt={"roles": ["consumer"]},
        responses=EXPIRED,
        response_headers=REPLAY,
    )
    async def abort_hold(self, tenant_id: TenantPath, hold_id: PathId, db: DB) -> Response[HoldAborted]:
        row = await db.one("SELECT * FROM credits.abort_hold(%s, %s::bigint)", (tenant_id, hold_id))
        return answer(HoldAborted, row)


class DistController(Controller):
    path = "/v1/dist-transactions"
    tags = ["distributed transactions"]

    @post(
        "",
        summary="Begin a distributed transaction (idempotent by xid)",
        response_headers=[*LOCATION, *REPLAY],
    )
    async def dist_begin(self, data: DistBeginIn, db: DB) -> Response[DistBegun]:
        row = await db.one(
            "SELECT * FROM credits.dist_begin(%s, %s::jsonb, %s::interval)",
            (data.xid, _legs(data.legs), _seconds(data.timeout_seconds)),
        )
        # An xid is any text: the Location header carries it percent-encoded (headers are latin-1).
        return created(DistBegun, row, f"/v1/dist-transactions/{quote(row['xid'], safe='')}")

    @get("/{xid:str}", summary="A distributed transaction, its legs and its history")
    async def get_dist_transaction(self, xid: XidPath, db: DB) -> DistTransaction:
        return DistTransaction(**await db.one("SELECT * FROM credits.get_dist_transaction(%s)", (xid,)))

    @post("/{xid:str}/prepare", summary="Every leg votes; any no aborts", status_code=200, response_headers=REPLAY)
    async def dist_prepare(self, xid: XidPath, db: DB) -> Response[DistPrepared]:
        return answer(DistPrepared, await db.one("SELECT * FROM credits.dist_prepare(%s)", (xid,)))

    @post("/{xid:str}/decide", summary="Log a decision without applying it", status_code=200, response_headers=REPLAY)
    async def dist_decide(self, xid: XidPath, data: DistDecideIn, db: DB) -> Response[DistOutcome]:
        return answer(DistOutcome, await db.one("SELECT * FROM credits.dist_decide(%s, %s)", (xid, data.decision)))

    @post("/{xid:str}/complete", summary="Apply the logged decision", status_code=200, response_headers=REPLAY)
    async def dist_complete(self, xid: XidPath, db: DB) -> Response[DistOutcome]:
        return answer(DistOutcome, await db.one("SELECT * FROM credits.dist_complete(%s)", (xid,)))

    @post("/{xid:str}/commit", summary="Decide commit and apply it", status_code=200, response_headers=REPLAY)
    async def dist_commit(self, xid: XidPath, db: DB) -> Response[DistOutcome]:
        return answer(DistOutcome, await db.one("SELECT * FROM credits.dist_commit(%s)", (xid,)))

    @post("/{xid:str}/abort", summary="Decide abort and apply it", status_code=200, response_headers=REPLAY)
    async def dist_abort(self, xid: XidPath, db: DB) -> Response[DistOutcome]:
        return answer(DistOutcome, await db.one("SELECT * FROM credits.dist_abort(%s)", (xid,)))


class ExternalController(Controller):
    path = "/v1/external-transactions/{xid:str}"
    tags = ["external two-phase commit"]

    @post(
        "/prepare",
        summary="Prepare our legs of an external transaction; answers the vote",
        status_code=200,
        response_headers=REPLAY,
    )
    async def ext_prepare(self, xid: XidPath, data: ExtPrepareIn, db: DB) -> Response[ExtVote]:
        row = await db.one(
            "SELECT * FROM credits.ext_prepare(%s, %s::jsonb, %s::interval)",
            (xid, _legs(data.legs), _seconds(data.timeout_seconds)),
        )
        return answer(ExtVote, row)

    @post("/commit", summary="Commit a prepared external transaction", status_code=200, response_headers=REPLAY)
    async def ext_commit(self, xid: XidPath, db: DB) -> Response[ExtOutcome]:
        return answer(ExtOutcome, await db.one("SELECT * FROM credits.ext_commit(%s)", (xid,)))

    @post(
        "/abort",
        summary="Abort an external transaction (also one never prepared here)",
        status_code=200,
        response_headers=REPLAY,
    )
    async def ext_abort(self, xid: XidPath, db: DB) -> Response[ExtOutcome]:
        return answer(ExtOutcome, await db.one("SELECT * FROM credits.ext_abort(%s)", (xid,)))


ROUTES = [HoldsController, DistController, ExternalController]
