"""Bodies of the audit routes (audit.*): verification and signed checkpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from .bounds import documented


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

    format: Annotated[str, documented(enum=["shieldx-audit-checkpoint/1"])]  # audit.verify_export (SX206)
    checkpoint_id: int
    heads: dict[str, Any]
    root: str
    sig: str
    key_id: str
