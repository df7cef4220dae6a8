"""Bodies of the batch route (credits.apply_batch): up to 1,000 ledger operations in one call."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .bounds import Amount, Id, Reason, documented

IdemKey = Annotated[str, documented(minLength=1, maxLength=255)]  # credits._movement_problem (SX006)


class _Item(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, omit_defaults=True):
    pass


class ConsumeItem(_Item, tag="consume"):
    account_id: Id
    amount: Amount
    idempotency_key: IdemKey
    reason: Reason | None = None


class GrantItem(_Item, tag="grant"):
    account_id: Id
    amount: Amount
    idempotency_key: IdemKey
    reason: Reason | None = None


class TransferItem(_Item, tag="transfer"):
    from_account: Id
    to_account: Id
    amount: Amount
    idempotency_key: IdemKey
    reason: Reason | None = None


class ReserveItem(_Item, tag="reserve"):
    account_id: Id
    amount: Amount
    idempotency_key: IdemKey
    ttl_seconds: Annotated[int, documented(minimum=1, maximum=30 * 86400)] = 300
    reason: Reason | None = None


class CommitItem(_Item, tag="commit"):
    # The hold: hold_id, or hold_key (the idempotency key of the reserve that made it, an earlier item of this
    # batch or an earlier request); one of the two.
    hold_id: Id | None = None
    hold_key: IdemKey | None = None
    amount: Amount | None = None
    reason: Reason | None = None


class AbortItem(_Item, tag="abort"):
    hold_id: Id | None = None
    hold_key: IdemKey | None = None


BatchItem = ConsumeItem | GrantItem | TransferItem | ReserveItem | CommitItem | AbortItem


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[BatchItem], documented(minItems=1, maxItems=1000)]  # credits.apply_batch (SX120)
    # true: all or nothing (the first refusal answers 409 batch_item_refused);
    # false: each item applied or refused on its own.
    atomic: bool = True


class BatchItemResult(msgspec.Struct):
    item: int  # 0-based index in the request
    op: str
    status: Literal["applied", "replayed", "refused"]
    # The refusal's SQLSTATE (SXnnn), else null.
    sqlstate: str | None
    # applied/replayed: what the single operation answers (Movement, Transfer, Hold, HoldCommitted,
    # HoldAborted); refused: {error, status, title, message, detail}.
    result: dict[str, Any]


class BatchApplied(msgspec.Struct):
    items: list[BatchItemResult]
    applied: int
    replayed: int
    refused: int
