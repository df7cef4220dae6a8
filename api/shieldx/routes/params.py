"""Shared request parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Response
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter

from ..db import Database

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        description="Names this call; a retry with the same key is answered "
        "with the original result and changes nothing.",
        required=False,
    ),
]

Limit = Annotated[int, QueryParameter(name="limit", description="Page size, 1 to 1000")]

# Keyset pagination, one name on every list: a page's `next_cursor`, passed back as ?cursor=.
CURSOR = "The previous page's next_cursor (omit for the first page)"
Cursor = Annotated[int | None, QueryParameter(name="cursor", description=CURSOR, required=False)]
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
