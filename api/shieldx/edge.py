"""What a request body must be before any handler sees it: the checks at the edge.

Run as the app's `before_request` hook, after the guard (an unauthenticated
caller's body is never parsed) and before Litestar decodes the handler's
`data`. For a route that takes a JSON body, a non-empty body must

  * be sent as `application/json` (or a `+json` type): else 415 unsupported_media_type;
  * be JSON: no syntax error, no NaN/Infinity, no object with a member twice,
    at most MAX_DEPTH levels of arrays and objects: else 400 invalid_json;
  * match the documented schema with strict types: no number as a string
    (`{"amount": "5"}`), no float for an integer (`1e3`): else 422 invalid_request.

Litestar itself converts the body leniently (msgspec's strict=False: the
same conversion it applies to query strings), so the strict decode here is
the one that decides. Body size is limited before this (413 too_large).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException

from .auth import ApiProblem

MAX_DEPTH = 32  # levels of nested arrays/objects in a request body
JSON_TYPES = ("application/json",)


class _Duplicate(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        name = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _Duplicate(f"member {name!r} appears twice in one object")
    return obj


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def depth(value: Any) -> int:
    """Levels of nested arrays and objects (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def invalid_json(detail: str) -> ApiProblem:
    return ApiProblem("SX309", detail)


async def check_body(request: Request) -> None:
    """before_request: refuse a body the handler's `data` could not be strictly decoded from."""
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    if field is None:
        return
    body = await request.body()
    if not body.strip():
        return  # no body: an optional one (commit) is fine; Litestar answers a missing one
    if not _is_json(request.headers.get("content-type")):
        raise ApiProblem("SX310", "send the body as Content-Type: application/json")
    try:
        doc = json.loads(body, object_pairs_hook=_object, parse_constant=_constant)
    except RecursionError:
        raise invalid_json(f"the body nests deeper than {MAX_DEPTH} levels") from None
    except _Duplicate as exc:
        raise invalid_json(str(exc)) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity
        raise invalid_json(f"the body is not JSON: {exc}") from None
    if depth(doc) > MAX_DEPTH:
        raise invalid_json(f"the body nests deeper than {MAX_DEPTH} levels")
    try:
        msgspec.json.decode(body, type=field.annotation, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationException(detail=str(exc)) from None
