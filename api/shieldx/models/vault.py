"""Bodies of the card payment routes (vault.*).

No response carries more of a card number than its last four digits.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


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
