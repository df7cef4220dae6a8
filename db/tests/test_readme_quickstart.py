"""The README's Quickstart block, verbatim, with `bash -e` against a real API server and a fresh database.

It must print the balances the README says it prints, and a second run (every movement
replayed by its idempotency key) must print them again.
"""

from __future__ import annotations

import subprocess

from docs_runner import ROOT, api_server, blocks, own_keyring, shell_env


def _quickstart() -> tuple[str, str]:
    """The Quickstart section's sh block and the text block that shows its last line."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    start = text.index("\n## Quickstart\n")
    end = text.find("\n## ", start + 1)
    first_line = text[:start].count("\n") + 2
    last_line = text[:end].count("\n") + 1 if end > 0 else len(text.splitlines())
    section = [b for b in blocks(readme) if first_line <= b.line <= last_line]
    sh = [b for b in section if b.lang == "sh"]
    shown = [b for b in section if b.lang == "text"]
    assert len(sh) == 1, "the Quickstart has exactly one sh block"
    assert shown and shown[0].line > sh[0].line, "the Quickstart shows what its block prints last"
    return sh[0].text, shown[0].text.strip()


def test_readme_quickstart_runs_as_written(dsn, tmp_path):
    script, last_line = _quickstart()
    (tmp_path / "quickstart.sh").write_text(script)
    with own_keyring(dsn), api_server(dsn.replace("postgres@", "shieldx_app@", 1), tmp_path / "api.log") as api:
        env = shell_env(api, dsn)
        for run in (1, 2):
            done = subprocess.run(
                ["bash", "-e", "quickstart.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, f"run {run}:\n{done.stdout}\n{done.stderr}"
            lines = done.stdout.strip().splitlines()
            assert lines[-1] == last_line, f"run {run} printed:\n{done.stdout}"
            replayed = [line for line in lines[:-1] if '"replayed"' in line]
            assert len(replayed) == 3
            assert all(('"replayed":true' in line) == (run == 2) for line in replayed), done.stdout


def test_readme_is_a_front_page():
    """At most 200 lines: the rest lives in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
