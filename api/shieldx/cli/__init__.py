"""The `shieldx` operator command: one verb per module."""
from __future__ import annotations

import importlib

import click

# verb -> module; each module defines a click command or group named `cli`.
VERBS = ["db", "serve", "bench"]


@click.group(help="ShieldX Credits & Shadow operator commands.")
def main() -> None:
    pass


for _verb in VERBS:
    main.add_command(importlib.import_module(f"{__name__}.{_verb}").cli, _verb)
