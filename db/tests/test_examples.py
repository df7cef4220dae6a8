"""The DBA examples in db/examples run in psql and print exactly their .out file.

Set UPDATE_EXAMPLES=1 to rewrite the .out files after a deliberate change.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PSQL = "/usr/lib/postgresql/15/bin/psql"


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("*.sql")))
def test_example_output_is_as_documented(dsn, script):
    result = subprocess.run(
        [PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=0", "-P", "pager=off", "-d", dsn, "-f", script],
        cwd=EXAMPLES,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
    )
    # LOCATION names a line of PostgreSQL's C source: it changes between builds.
    got = "".join(line for line in result.stdout.splitlines(keepends=True) if not line.startswith("LOCATION:"))
    expected = EXAMPLES / (Path(script).stem + ".out")
    if os.environ.get("UPDATE_EXAMPLES"):
        expected.write_text(got)
    assert got == expected.read_text()
