"""Batches: up to 1,000 ledger operations of one tenant in one call (credits.apply_batch).

Each item is decided as its single route would decide it, and needs the role
that route needs: the roles are read from those routes, so they live once.
Each item costs the rate-limit token its single call would (KeyAuth.charge).
"""

from __future__ import annotations

import msgspec
from litestar import Request, post
from litestar.openapi import ResponseSpec
from psycopg.types.json import Jsonb

from ..auth import OPERATOR, forbidden
from ..errors import PROBLEM
from ..models.batches import BatchApplied, BatchIn, BatchItemResult
from ..models.bounds import TenantPath
from .credits import CreditsController
from .holds import HoldsController
from .params import DB

# Which single route each operation stands for: an item needs that route's roles.
SINGLE_ROUTES = {
    "consume": CreditsController.consume,
    "grant": CreditsController.grant_credits,
    "transfer": CreditsController.transfer,
    "reserve": HoldsController.reserve,
    "commit": HoldsController.commit_hold,
    "abort": HoldsController.abort_hold,
}
ROLES = {op: frozenset(handler.opt.get("roles") or ()) for op, handler in SINGLE_ROUTES.items()}
ANY_ITEM_ROLE = sorted(set().union(*ROLES.values()))

ITEM_CODES = (
    "SX002 unknown_account, SX003 invalid_amount, SX004 insufficient_funds, SX005 idempotency_conflict, "
    "SX006 invalid_idempotency_key, SX007 invalid_argument, SX008 account_not_open, SX009 same_account, "
    "SX010 balance_limit, SX101 unknown_hold, SX102 hold_aborted, SX103 hold_committed, SX104 hold_expired, "
    "SX105 capture_exceeds_hold, SX106 invalid_ttl, SX113 hold_in_dist_transaction"
)


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(None, description=description, media_type=PROBLEM)


@post(
    "/v1/tenants/{tenant_id:str}/batches",
    summary="Apply up to 1,000 ledger operations in one call",
    description=(
        "Items (consume, grant, transfer, reserve, commit, abort) apply in order in one transaction, each decided "
        "as its single route decides it, with its own idempotency key (commit and abort: the hold, named by "
        "`hold_id` or by `hold_key`, the idempotency key of its reserve, so one batch can reserve and commit the "
        "same hold). Each item "
        "needs the role its single route needs. `atomic: true` (the default): all or nothing, the first refusal "
        "answers 409 batch_item_refused naming the item. `atomic: false`: each item is applied, replayed or "
        f"refused on its own; a refused item carries its named error: {ITEM_CODES}. A batch sent again answers "
        "every applied item as a replay. Rate limit: a batch of N items costs N tokens of the key's budget, as N "
        "single calls would, taken all at once before any item is applied; when the budget lacks N tokens the "
        "whole batch is answered 429 and nothing is applied or taken."
    ),
    status_code=200,
    tags=["credits"],
    opt={"roles": ANY_ITEM_ROLE},
    responses={
        403: _problem("forbidden: an item needs a role this key lacks (nothing applied)"),
        409: _problem(
            "batch_item_refused (SX121): an item of an atomic batch was refused; `facts` names the item, its "
            "SQLSTATE and message (nothing applied). batch_key_contended (SX122): a key of the batch was used "
            "concurrently; retry the same batch"
        ),
        413: _problem("too_large: the body exceeds the request size limit (nothing applied)"),
        429: _problem(
            "rate_limited (SX303): the key's budget lacks one token per item (nothing applied, no token taken); "
            "Retry-After says when N tokens will be there (absent when N exceeds the key's burst: split the batch), "
            "RateLimit-Remaining how many are"
        ),
        422: _problem(
            "invalid_batch (SX120): not 1 to 1,000 items, or a key repeated with other arguments; "
            "invalid_request: an unknown operation or field, or a wrong type (nothing applied)"
        ),
    },
)
async def apply_batch(tenant_id: TenantPath, data: BatchIn, db: DB, request: Request) -> BatchApplied:
    principal = request.state.principal
    if OPERATOR not in principal.roles:
        for k, item in enumerate(data.items):
            op = type(item).__struct_config__.tag
            if principal.roles.isdisjoint(ROLES[str(op)]):
                raise forbidden(f"item {k} ({op}) needs one of the roles: {', '.join(sorted(ROLES[str(op)]))}")
    await request.app.state.auth.charge(request, len(data.items))  # one token per item, all or none: 429
    rows = await db.all(
        "SELECT * FROM credits.apply_batch(%s, %s, %s)",
        (tenant_id, Jsonb(msgspec.to_builtins(data.items)), data.atomic),
    )
    items = [BatchItemResult(**r) for r in rows]
    counts = {s: sum(1 for r in items if r.status == s) for s in ("applied", "replayed", "refused")}
    return BatchApplied(items=items, **counts)


ROUTES = [apply_batch]
