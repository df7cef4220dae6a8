"""Python modules that PL/Python runs, embedded in generated SQL.

A module is db/functions/<schema>/<name>.py: plain Python that tests and tools
import as is. Its sibling <name>.sql is GENERATED from it (never edited by
hand) and defines two functions:

    <schema>._<name>_source()   the module's exact text
    <schema>._<name>_version()  a hash of that text

ops._py_load('<schema>.<name>') (db/functions/ops/py_load.sql) execs the source
into GD['<schema>.<name>'] once per backend, and again only when the version
changes; the PL/Python functions that use a module call it first.

    python db/embed_python.py           regenerate every module's .sql
    python db/embed_python.py --check   exit 1 when one is stale

db/tests/test_embed_python.py fails when a generated file is stale.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FUNCTIONS_DIR = Path(__file__).resolve().parent / "functions"

# Who else writes a module's .sql, with the same text (and which test names it).
WRITERS = {"shadow/stats.py": ("shieldx shadow gen-sql", "db/tests/test_shadow_math.py")}
DEFAULT_WRITER = ("python db/embed_python.py", "db/tests/test_embed_python.py")


def modules(root: Path = FUNCTIONS_DIR) -> list[Path]:
    """Every embedded module, in a stable order."""
    return sorted(root.glob("*/*.py"))


def version(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def generated_sql(py: Path, source: str | None = None) -> str:
    """The text of the .sql beside `py` for its current source."""
    src = py.read_text() if source is None else source
    if "$py$" in src or "$fn$" in src:
        raise ValueError(f"{py.name} must not contain $py$ or $fn$ (they quote it in SQL)")
    schema, name = py.parent.name, py.stem
    command, test = WRITERS.get(f"{schema}/{py.name}", DEFAULT_WRITER)
    return (
        f"-- GENERATED from {name}.py by `{command}`: edit {name}.py, then regenerate.\n"
        f"-- ({test} fails when this file and {name}.py differ.)\n"
        f"-- PL/Python functions exec _{name}_source() once per backend and reload it\n"
        f"-- when _{name}_version() changes.\n"
        f"CREATE OR REPLACE FUNCTION {schema}._{name}_version()\n"
        "RETURNS text LANGUAGE sql IMMUTABLE\n"
        f"AS $fn$ SELECT '{version(src)}'::text $fn$;\n\n"
        f"CREATE OR REPLACE FUNCTION {schema}._{name}_source()\n"
        "RETURNS text LANGUAGE sql IMMUTABLE\n"
        f"AS $fn$ SELECT $py${src}$py$::text $fn$;\n"
    )


def load(py: Path) -> ModuleType:
    """A module as Python imports it (the text PL/Python runs)."""
    spec = importlib.util.spec_from_file_location(f"{py.parent.name}_{py.stem}", py)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stale(root: Path = FUNCTIONS_DIR) -> list[Path]:
    """Generated files that differ from their module."""
    return [py.with_suffix(".sql") for py in modules(root) if _read(py.with_suffix(".sql")) != generated_sql(py)]


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        old = stale()
        for path in old:
            print(f"stale: {path.relative_to(FUNCTIONS_DIR.parent.parent)} (run python db/embed_python.py)")
        return 1 if old else 0
    if argv[1:]:
        print(__doc__)
        return 2
    for py in modules():
        sql = py.with_suffix(".sql")
        if _read(sql) != generated_sql(py):
            sql.write_text(generated_sql(py))
            print(f"wrote {sql.relative_to(FUNCTIONS_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
