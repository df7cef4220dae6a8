"""HTTP routes. Each handler parses, calls one SQL function, and maps the row.

Every module in this package exports ROUTES, a list of handlers or
controllers; the app collects them all, so a new module needs no other edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def all_routes() -> list[Any]:
    found: list[Any] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "ROUTES", []))
    return found
