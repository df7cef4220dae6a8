"""Schemathesis hooks for the conformance run (api/tests/test_schemathesis_cli.py, api/tests/schemathesis.toml).

Whole numbers as integers: JSON Schema counts `1.0` and `1e3` as integers, so
schemathesis sends them for integer fields; the API refuses a float literal
for an integer (`422 invalid_request`, docs/http-api.md: strict types at the
edge), which no schema keyword can state. The hook spells such values as JSON
integers, the same value to JSON Schema, so a valid case stays valid.
"""

from __future__ import annotations

from typing import Any

import schemathesis


def whole_as_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_as_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_as_int(v) for v in value]
    return value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if isinstance(case.body, (dict, list, float)):
        case.body = whole_as_int(case.body)
