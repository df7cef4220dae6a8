"""The `shieldx` operator command: one verb per module.

Every module in this package that defines `cli` (a click command or group)
becomes the verb named after the module, so a new verb needs no other edit.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


@click.group(help="ShieldX Credits & Shadow operator commands.")
def main() -> None:
    pass


for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    if hasattr(_module, "cli"):
        main.add_command(_module.cli, _info.name)
