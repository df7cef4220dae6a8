"""Bodies of the key administration routes (auth.*)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from .bounds import TENANT_ROLES, Name, documented


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    # auth._check_key_args: a non-empty set of tenant roles (SX305), rate in (0, 10^6] and burst in [1, 10^7] (SX306).
    roles: Annotated[list[str], documented(minItems=1, items={"type": "string", "enum": TENANT_ROLES})]
    rate_per_s: Annotated[float, documented(exclusiveMinimum=0, maximum=1_000_000)] = 50.0
    burst: Annotated[float, documented(minimum=1, maximum=10_000_000)] = 100.0
    # auth.create_key: in the future and before 9999-01-01T00:00:00Z (SX007), which JSON Schema cannot state.
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
    grace_s: Annotated[int, documented(minimum=0, maximum=604_800)] = 0  # auth.rotate_key (SX007)


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
