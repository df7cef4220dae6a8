"""Benchmarks behind `python -m shieldx_bench` (`make bench`). Not tests: nothing here asserts a time.

Every module in this package that defines `run(h: Harness) -> dict[str, float]`
is a suite; its metrics are recorded in bench/results.json with the facts of the
run (see harness.save_results). Ratios are measured pair by pair within one run.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

Suite = Callable[[Any], dict[str, float]]


def suites() -> dict[str, Suite]:
    found: dict[str, Suite] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "harness":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "run"):
            found[info.name] = module.run
    return found
