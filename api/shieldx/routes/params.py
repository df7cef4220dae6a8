"""Shared request parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from litestar import Response
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
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

# The pooled database, injected by name.
DB = NamedDependency[Database]


def created(model: type, row: dict) -> Response:
    """201 for a call that created something, 200 when the SQL function says it replayed."""
    return Response(model(**row), status_code=200 if row["replayed"] else 201)


def replayed(model: type, what: str = "the original result") -> dict[int, ResponseSpec]:
    """OpenAPI for the 200 a replayed create answers with (see `created`)."""
    return {200: ResponseSpec(model, description=f"Replayed: {what}")}


def next_cursor(items: Sequence[Any], limit: int, field: str) -> Any:
    """Keyset pagination: the last item's `field` when the page is full (more may follow), else None."""
    return getattr(items[-1], field) if items and len(items) >= limit else None
