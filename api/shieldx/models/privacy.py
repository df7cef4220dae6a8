"""Bodies of the privacy routes (privacy.*): erasure of a data subject."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Erasure(msgspec.Struct):
    subject_id: str
    erased_at: datetime
    payments_affected: int
    replayed: bool
