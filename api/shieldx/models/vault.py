"""Bodies of the card payment routes (vault.*).

No response carries more of a card number than its last four digits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from .bounds import Amount, documented

EXPIRY = r"^(0[1-9]|1[0-2])/[0-9]{2}$"  # vault.top_up


class CardTopUpIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: Amount
    # vault.top_up (SX201): 12 to 19 digits (spaces and dashes between them allowed) passing the Luhn check,
    # which JSON Schema cannot state; expiry MM/YY.
    card_number: Annotated[str, documented(pattern=r"^[ -]*([0-9][ -]*){12,19}$")]
    expiry: Annotated[str, documented(pattern=EXPIRY)]
    holder: str | None = None
    # The data subject (card holder) id, needed with holder.
    subject: Annotated[str, documented(minLength=1, maxLength=200)] | None = None


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
