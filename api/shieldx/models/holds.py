"""Request and response bodies of holds and distributed transactions (msgspec structs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class ReserveIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: int
    ttl_seconds: float = 300.0
    reason: str | None = None


class Hold(msgspec.Struct):
    hold_id: int
    account_id: int
    amount: int
    status: str
    expires_at: datetime
    created_at: datetime
    replayed: bool


class CommitHoldIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: int | None = None  # None: the whole hold
    reason: str | None = None


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
    tenant_id: str
    account_id: int
    amount: int  # < 0 debit (reserved at prepare), > 0 credit (applied at commit)


class DistBeginIn(msgspec.Struct, forbid_unknown_fields=True):
    xid: str
    legs: list[Leg]
    timeout_seconds: float = 60.0


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
    decision: str


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
    legs: list[Leg]
    timeout_seconds: float = 300.0


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
