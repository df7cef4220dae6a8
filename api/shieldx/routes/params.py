"""Shared request parameters."""
from __future__ import annotations

from typing import Annotated

from litestar.di import NamedDependency
from litestar.params import HeaderParameter, QueryParameter

from ..db import Database

IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", description="Names this call; a retry with the same key is answered "
              "with the original result and changes nothing.", required=False),
]

Limit = Annotated[int, QueryParameter(name="limit", description="Page size, 1 to 1000")]

# The pooled database, injected by name.
DB = NamedDependency[Database]
