"""Bodies of the audit, card-payment and privacy routes (msgspec structs).

No response carries more of a card number than its last four digits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Verification(msgspec.Struct):
    ok: bool
    entries_checked: int
    streams_checked: int
    since_checkpoint: int | None
    broken_streams: int
    stream: str | None
    seq: int | None
    problem: str | None


class Checkpoint(msgspec.Struct):
    checkpoint_id: int
    created_at: datetime
    streams: int
    entries: int
    root: str
    key_id: str


class ExportVerification(msgspec.Struct):
    ok: bool
    checkpoint_id: int
    heads_checked: int
    broken_streams: int
    stream: str | None
    seq: int | None
    problem: str | None


class CheckpointDoc(msgspec.Struct, forbid_unknown_fields=False):
    """An exported checkpoint, as written by `shieldx audit checkpoint export`."""

    format: str
    checkpoint_id: int
    heads: dict[str, Any]
    root: str
    sig: str
    key_id: str


class CardTopUpIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: int
    card_number: str = msgspec.field()
    expiry: str
    holder: str | None = None
    subject: str | None = None  # the data subject (card holder) id, needed with holder


class CardTopUp(msgspec.Struct):
    entry_id: int
    account_id: int
    amount: int
    balance_after: int
    card: str  # masked: **** **** **** 1234
    created_at: datetime
    replayed: bool


class Payment(msgspec.Struct):
    entry_id: int
    account_id: int
    card: str
    key_id: str
    subject_id: str | None
    holder: str | None  # "[erased]" once the subject was erased
    ip_masked: str | None
    created_at: datetime


class Erasure(msgspec.Struct):
    subject_id: str
    erased_at: datetime
    payments_affected: int
    replayed: bool
