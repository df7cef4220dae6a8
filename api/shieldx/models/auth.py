"""Bodies of the key administration routes (auth.*)."""

from __future__ import annotations

from datetime import datetime

import msgspec


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    roles: list[str]
    rate_per_s: float = 50.0
    burst: float = 100.0
    expires_at: datetime | None = None


class KeyCreated(msgspec.Struct):
    key_id: str
    tenant_id: str
    name: str
    roles: list[str]
    rate_per_s: float
    burst: float
    created_at: datetime
    expires_at: datetime | None
    # The whole key, shown once; null on a replay (only its hash is stored).
    api_key: str | None
    replayed: bool


class KeySummary(msgspec.Struct):
    key_id: str
    masked: str
    name: str
    roles: list[str]
    rate_per_s: float
    burst: float
    status: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None


class KeyPage(msgspec.Struct):
    items: list[KeySummary]
    next_cursor: str | None  # pass back as ?cursor= for the next page; null on the last one


class RotateKeyIn(msgspec.Struct, forbid_unknown_fields=True):
    # Seconds the old key keeps working, so clients can switch over.
    grace_s: int = 0


class KeyRotated(msgspec.Struct):
    key_id: str
    tenant_id: str
    name: str
    roles: list[str]
    rate_per_s: float
    burst: float
    created_at: datetime
    expires_at: datetime | None
    api_key: str | None
    replaced_key_id: str
    replaced_key_expires_at: datetime | None
    replayed: bool


class KeyRevoked(msgspec.Struct):
    key_id: str
    revoked_at: datetime
    changed: bool
