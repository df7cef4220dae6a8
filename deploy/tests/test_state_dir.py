"""The state directory rule: one rule, in cluster.sh and in the harness alike.

$SHIELDX_STATE_DIR if set; else <repo>/.local if the postgres OS user can
traverse the repository; else /var/lib/shieldx/<repo name>-<8 hex of sha256(repo path)>.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shieldx_local.state import ROOT, SHARED_BASE, state_dir, traversable_by

CLUSTER_SH = ROOT / "deploy" / "local" / "cluster.sh"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user can traverse (pytest's tmp_path is mode 700)."""
    path = Path(tempfile.mkdtemp(prefix="shieldx-state-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_state_dir_override_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHIELDX_STATE_DIR", str(tmp_path / "elsewhere"))
    assert state_dir(tmp_path) == tmp_path / "elsewhere"


def test_state_dir_in_a_traversable_clone_is_its_dot_local(monkeypatch: pytest.MonkeyPatch, open_dir: Path) -> None:
    monkeypatch.delenv("SHIELDX_STATE_DIR", raising=False)
    repo = open_dir / "clone"
    repo.mkdir(mode=0o755)
    assert traversable_by(repo)
    assert state_dir(repo) == repo / ".local"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a folder the postgres user cannot enter")
def test_state_dir_of_a_closed_clone_is_shared_and_named_after_it(
    monkeypatch: pytest.MonkeyPatch, open_dir: Path
) -> None:
    monkeypatch.delenv("SHIELDX_STATE_DIR", raising=False)
    closed = open_dir / "home"
    closed.mkdir(mode=0o700)
    repo = closed / "clone"
    repo.mkdir(mode=0o755)
    assert not traversable_by(repo)
    digest = hashlib.sha256(str(repo).encode()).hexdigest()[:8]
    assert state_dir(repo) == SHARED_BASE / f"clone-{digest}"


@pytest.mark.skipif(
    "state-dir" not in CLUSTER_SH.read_text() or os.geteuid() != 0,
    reason="cluster.sh without a state-dir command, or not root",
)
@pytest.mark.parametrize("closed", [False, True], ids=["traversable", "closed"])
def test_state_dir_agrees_with_cluster_sh(monkeypatch: pytest.MonkeyPatch, open_dir: Path, closed: bool) -> None:
    """A copy of cluster.sh in a clone computes the same folder as state_dir() for that clone."""
    monkeypatch.delenv("SHIELDX_STATE_DIR", raising=False)
    parent = open_dir / "home"
    parent.mkdir(mode=0o700 if closed else 0o755)
    repo = parent / "clone"
    (repo / "deploy" / "local").mkdir(parents=True)
    repo.chmod(0o755)
    script = repo / "deploy" / "local" / "cluster.sh"
    shutil.copy2(CLUSTER_SH, script)
    env = {k: v for k, v in os.environ.items() if k != "SHIELDX_STATE_DIR"}
    out = subprocess.run([str(script), "state-dir"], capture_output=True, text=True, check=True, env=env).stdout
    assert Path(out.strip()) == state_dir(repo)
