"""Shared request parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Response
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter

from ..db import Database
from ..models.bounds import BIGINT_MAX, param

# Required: every keyed SQL function refuses a missing key (SX006), so the handler passes
# None on and SQL answers it; 1 to 255 characters, as SQL checks (models/bounds.py).
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Names this call; a retry with the same key is answered "
        "with the original result and changes nothing. 1 to 255 characters.",
        required=True,
        **param(oneOf=None, type="string", minLength=1, maxLength=255),
    ),
]

# credits._check_limit (SX007).
Limit = Annotated[
    int, QueryParameter(name="limit", description="Page size, 1 to 1000", **param(minimum=1, maximum=1000))
]

# shadow.list_experiments and shadow.list_events clamp instead of refusing: any int is answered.
ClampedLimit = Annotated[
    int,
    QueryParameter(
        name="limit",
        description="Page size: below 1 counts as 1, above 1000 as 1000",
        **param(minimum=-(2**31), maximum=2**31 - 1),
    ),
]

# Keyset pagination, one name on every list: a page's `next_cursor`, passed back as ?cursor=.
CURSOR = "The previous page's next_cursor (omit for the first page)"
Cursor = Annotated[
    int | None,
    QueryParameter(
        name="cursor", description=CURSOR, required=False, **param(minimum=-BIGINT_MAX - 1, maximum=BIGINT_MAX)
    ),
]
KeyCursor = Annotated[str | None, QueryParameter(name="cursor", description=CURSOR, required=False)]

# The pooled database, injected by name.
DB = NamedDependency[Database]


REPLAYED = "Idempotent-Replayed"

# Documented headers (documentation_only: the handlers set them).
LOCATION = [ResponseHeader(name="Location", description="The created resource", documentation_only=True)]
REPLAY = [
    ResponseHeader(
        name=REPLAYED,
        description="`true` when this answer replays an earlier call with the same idempotency key "
        "(same status code and body as the original; nothing changed)",
        documentation_only=True,
    )
]


def answer(model: type, row: dict, status: int = 200, location: str | None = None) -> Response:
    """The answer of a keyed call: the same status code for the call and its replays, a replay
    marked by `Idempotent-Replayed: true`; `Location` for the resource a 201 created."""
    headers = {"Location": location} if location else {}
    if row.get("replayed"):
        headers[REPLAYED] = "true"
    return Response(model(**row), status_code=status, headers=headers)


def created(model: type, row: dict, location: str | None = None) -> Response:
    """201 for a call that created something, and for its replays (see `answer`)."""
    return answer(model, row, 201, location)


def next_cursor(items: Sequence[Any], limit: int, field: str) -> Any:
    """Keyset pagination: the last item's `field` when the page is full (more may follow), else None."""
    return getattr(items[-1], field) if items and len(items) >= limit else None
