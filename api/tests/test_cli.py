"""The `shieldx` command as a user runs it: `python -m shieldx`, and `shieldx examples run`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from shieldx.cli import examples, main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_python_dash_m_is_the_console_script():
    script = Path(sys.executable).with_name("shieldx")
    assert script.exists(), "the console script is installed beside the interpreter (pip install -e .)"
    as_module = _run(sys.executable, "-m", "shieldx", "--help")
    as_script = _run(str(script), "--help")
    assert as_module.returncode == as_script.returncode == 0, as_module.stderr
    assert as_module.stdout == as_script.stdout
    assert as_module.stdout.startswith("Usage: shieldx ")
    for verb in ("audit", "db", "examples", "prepared", "serve", "shadow"):
        assert f"  {verb} " in as_module.stdout, verb


def _scratch_databases(db) -> list[str]:
    rows = db.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (examples.PREFIX + "%",))
    return [r["datname"] for r in rows]


def test_examples_run_in_a_scratch_database_and_match(dsn, db):
    before = _scratch_databases(db)
    r = _run(sys.executable, "-m", "shieldx", "examples", "run", "01_open_accounts", "--url", dsn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == ["ok    01_open_accounts", "1 of 1 example(s) printed their .out file"]
    assert _scratch_databases(db) == before, "every scratch database is dropped"
    # The example ran elsewhere: this test's database (like `shieldx`) was not touched.
    assert db.execute("SELECT count(*) AS n FROM credits.tenants").fetchone()["n"] == 0


def test_an_example_that_differs_prints_a_diff_and_fails(dsn, db, tmp_path, monkeypatch):
    shutil.copy(examples.EXAMPLES_DIR / "01_open_accounts.sql", tmp_path)
    expected = (examples.EXAMPLES_DIR / "01_open_accounts.out").read_text()
    first = expected.splitlines()[0]
    (tmp_path / "01_open_accounts.out").write_text(expected.replace(first, first + " (not what psql prints)", 1))
    monkeypatch.setattr(examples, "EXAMPLES_DIR", tmp_path)
    r = CliRunner().invoke(main, ["examples", "run", "--url", dsn])
    assert r.exit_code == 1, r.output
    assert "DIFF  01_open_accounts" in r.output
    assert f"-{first} (not what psql prints)\n+{first}\n" in r.output
    assert "0 of 1 example(s)" in r.output
    assert _scratch_databases(db) == []


def test_examples_refuse_unknown_names(dsn):
    r = CliRunner().invoke(main, ["examples", "run", "no_such_example", "--url", dsn])
    assert r.exit_code == 2 and "no such example: no_such_example" in r.output


def test_examples_want_a_url():
    r = CliRunner().invoke(main, ["examples", "run", "01_open_accounts", "--url", "host=127.0.0.1 dbname=postgres"])
    assert r.exit_code == 2 and "not a postgresql:// URL" in r.output
