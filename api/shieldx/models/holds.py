"""Request and response bodies of holds and distributed transactions (msgspec structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from .bounds import Amount, Id, LegAmount, Reason, TenantId, TtlSeconds, Xid, documented


class ReserveIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: Amount
    ttl_seconds: TtlSeconds = 300.0
    reason: Reason | None = None


class Hold(msgspec.Struct):
    hold_id: int
    account_id: int
    amount: int
    status: str
    expires_at: datetime
    created_at: datetime
    replayed: bool


class CommitHoldIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: Amount | None = None  # None: the whole hold
    reason: Reason | None = None


class HoldCommitted(msgspec.Struct):
    hold_id: int
    account_id: int
    amount: int
    captured: int
    released: int
    entry_id: int
    balance_after: int
    seq: int
    resolved_at: datetime
    replayed: bool


class HoldAborted(msgspec.Struct):
    hold_id: int
    account_id: int
    amount: int
    status: str
    resolved_at: datetime
    replayed: bool


class HoldView(msgspec.Struct):
    hold_id: int
    account_id: int
    amount: int
    status: str
    captured: int | None
    reason: str | None
    idem_key: str
    expires_at: datetime
    created_at: datetime
    resolved_at: datetime | None
    dist_tx_id: int | None


class HoldSummary(msgspec.Struct):
    hold_id: int
    amount: int
    status: str
    captured: int | None
    reason: str | None
    idem_key: str
    expires_at: datetime
    created_at: datetime
    resolved_at: datetime | None
    dist_tx_id: int | None


class HoldPage(msgspec.Struct):
    items: list[HoldSummary]
    next_cursor: int | None  # pass back as ?cursor= for the next page; null on the last one


class Leg(msgspec.Struct, forbid_unknown_fields=True):
    tenant_id: TenantId
    account_id: Id
    amount: LegAmount  # < 0 debit (reserved at prepare), > 0 credit (applied at commit)


# credits._check_legs (SX112): 1 to 100 legs, each account in one leg at most.
Legs = Annotated[list[Leg], documented(minItems=1, maxItems=100)]


class DistBeginIn(msgspec.Struct, forbid_unknown_fields=True):
    xid: Xid
    legs: Legs
    timeout_seconds: TtlSeconds = 60.0


class DistBegun(msgspec.Struct):
    dist_tx_id: int
    xid: str
    coordinator: str
    state: str
    deadline: datetime
    legs: int
    created_at: datetime
    replayed: bool


class DistPrepared(msgspec.Struct):
    xid: str
    state: str
    decision: str | None
    votes_yes: int
    votes_no: int
    deadline: datetime
    replayed: bool


class DistDecideIn(msgspec.Struct, forbid_unknown_fields=True):
    decision: Annotated[str, documented(enum=["commit", "abort"])]  # credits.dist_decide


class DistOutcome(msgspec.Struct):
    xid: str
    state: str
    decision: str | None
    replayed: bool


class DistTransaction(msgspec.Struct):
    dist_tx_id: int
    xid: str
    coordinator: str
    state: str
    decision: str | None
    reason: str | None
    deadline: datetime
    created_at: datetime
    decided_at: datetime | None
    completed_at: datetime | None
    participants: list[dict[str, Any]]
    events: list[dict[str, Any]]


class ExtPrepareIn(msgspec.Struct, forbid_unknown_fields=True):
    legs: Legs
    timeout_seconds: TtlSeconds = 300.0


class ExtVote(msgspec.Struct):
    xid: str
    vote: str
    state: str
    reason: str | None
    deadline: datetime
    replayed: bool


class ExtOutcome(msgspec.Struct):
    xid: str
    state: str
    replayed: bool
