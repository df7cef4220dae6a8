"""`shieldx audit verify` and `shieldx audit checkpoint export` on a real database."""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
from click.testing import CliRunner

from shieldx.cli import main


def _history(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT credits.create_tenant('acme', 'Acme')")
        for i in range(3):
            conn.execute("SELECT credits.create_account('acme', %s, %s)", (f"a{i}", f"o{i}"))
            conn.execute("SELECT credits.grant_credits('acme', %s, 10, %s)", (i + 1, f"g{i}"))


def test_export_then_verify_then_truncate(dsn, tmp_path):
    _history(dsn)
    runner = CliRunner()
    out = tmp_path / "cp.json"
    r = runner.invoke(main, ["audit", "checkpoint", "export", "--new", "-o", str(out), "--url", dsn])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["format"] == "shieldx-audit-checkpoint/1" and (out.stat().st_mode & 0o077) == 0
    r = runner.invoke(main, ["audit", "verify", "--against", str(out), "--url", dsn])
    assert r.exit_code == 0, r.output
    assert "verified" in r.output and "matches" in r.output
    # An altered file is refused without asking the database.
    bad = tmp_path / "bad.json"
    doc2 = dict(doc, heads={**doc["heads"], "ledger/1": [9, "00" * 32]})
    bad.write_text(json.dumps(doc2))
    r = runner.invoke(main, ["audit", "verify", "--against", str(bad), "--url", dsn])
    assert r.exit_code == 1 and "altered" in r.output
    # Truncate a chain and every checkpoint: only the export still knows.
    with psycopg.connect(dsn, autocommit=True) as conn:
        for t in ("audit.checkpoint_heads", "audit.checkpoints", "audit.log"):
            conn.execute(f"ALTER TABLE {t} DISABLE TRIGGER append_only")
        conn.execute("DELETE FROM audit.checkpoint_heads")
        conn.execute("DELETE FROM audit.checkpoints")
        conn.execute("DELETE FROM audit.log WHERE stream = 'credits.tenants/' || (abs(hashtext('acme')) % 16)")
        for t in ("audit.checkpoint_heads", "audit.checkpoints", "audit.log"):
            conn.execute(f"ALTER TABLE {t} ENABLE ALWAYS TRIGGER append_only")
    r = runner.invoke(main, ["audit", "verify", "--against", str(out), "--url", dsn])
    assert r.exit_code == 1, r.output
    assert "differs from exported checkpoint" in r.output and "truncated" in r.output


def test_verify_names_the_first_broken_entry(dsn):
    _history(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE audit.log DISABLE TRIGGER append_only")
        conn.execute("UPDATE audit.log SET payload = payload || ' ' WHERE stream = 'ledger/2' AND seq = 1")
        conn.execute("ALTER TABLE audit.log ENABLE ALWAYS TRIGGER append_only")
    r = CliRunner().invoke(main, ["audit", "verify", "--url", dsn])
    assert r.exit_code == 1
    assert "stream ledger/2 seq 1: entry altered" in r.output


def test_export_to_a_missing_directory_is_a_one_line_error(dsn, db, tmp_path):
    """Run as a user would (`python -m shieldx`): one `Error:` line, exit 1, no traceback, no checkpoint."""
    target = tmp_path / "missing" / "dir" / "x.json"
    before = db.execute("SELECT count(*) AS n FROM audit.checkpoints").fetchone()["n"]
    r = subprocess.run(
        [sys.executable, "-m", "shieldx", "audit", "checkpoint", "export", "--new", "-o", str(target), "--url", dsn],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr == f"Error: cannot write {target}: directory {target.parent} does not exist\n"
    assert r.stdout == ""
    assert db.execute("SELECT count(*) AS n FROM audit.checkpoints").fetchone()["n"] == before
    assert not target.parent.exists()
