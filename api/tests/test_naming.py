"""docs/naming.md is the app's own naming: every route is in it, named after its SQL function.

For each row of the table: the handler of its HTTP route is named after the
SQL function (without the schema), its request and response bodies are the
models the row names, and its CLI command exists.
"""

from __future__ import annotations

import inspect
import re

import click
import pytest

from shieldx.app import create_app
from shieldx.cli import main
from shieldx.config import Settings
from shieldx.paths import ROOT

NAMING = ROOT / "docs" / "naming.md"
TENANT = "/v1/tenants/{tenant_id}"
# Schemas whose functions are served one route each (ops.health is readiness, several routes' worth).
SERVED = ("credits.", "auth.", "audit.", "vault.", "privacy.", "shadow.")


def _rows() -> list[list[str]]:
    rows = []
    for line in NAMING.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 5 and cells[0] != "concept" and not cells[0].startswith("---"):
            rows.append(cells)
    return rows


def _code(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _route(cell: str) -> tuple[str, str] | None:
    found = re.match(r"`(GET|POST|PUT|DELETE|PATCH) ([^`]+)`", cell)
    if not found:
        return None
    return found.group(1), found.group(2).replace("…", TENANT)


@pytest.fixture(scope="module")
def handlers() -> dict[tuple[str, str], object]:
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))  # never started
    found = {}
    for route in app.routes:
        path = re.sub(r"\{(\w+):[^}]+\}", r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method not in ("HEAD", "OPTIONS") and not path.startswith("/docs"):
                    found[(method, path)] = handler
    return found


def test_every_route_is_in_the_table(handlers):
    documented = {_route(row[2]) for row in _rows()}
    missing = sorted(set(handlers) - documented)
    assert not missing, f"routes missing from docs/naming.md: {missing}"


@pytest.mark.parametrize("row", _rows(), ids=lambda row: row[0])
def test_each_layer_uses_the_sql_word(row, handlers):
    concept, sql, http, model, cli = row
    route = _route(http)
    if route is not None:
        assert route in handlers, f"{concept}: no route {route}"
        fn = handlers[route].fn
        functions = [f for f in _code(sql) if f.startswith(SERVED)]
        if functions:
            assert fn.__name__ == functions[0].split(".", 1)[1], f"{concept}: handler {fn.__name__} for {functions[0]}"
        models = _code(model)
        if models:
            signature = inspect.signature(fn)
            params = " ".join(str(p.annotation) for p in signature.parameters.values())
            request, response = (models[0], models[1]) if "→" in model else (None, models[0])
            assert re.search(rf"\b{response}\b", str(signature.return_annotation)), f"{concept}: answers {response}?"
            if request:
                assert re.search(rf"\b{request}\b", params), f"{concept}: takes {request}?"
    for command in _code(cli):
        group: click.Command = main
        for word in command.split()[1:]:
            if word.startswith("-") or word.isupper():
                break
            assert isinstance(group, click.Group) and word in group.commands, f"{concept}: no command {command}"
            group = group.commands[word]
