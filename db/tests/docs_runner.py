"""Run the documentation's code blocks: harvest fenced blocks from Markdown, run them for real.

A page's blocks are classified by their info string:
  ```sql   run with psql (ON_ERROR_STOP) in the page's database, as a DBA (the superuser);
  ```sh    run with `bash -e` against a real API server over that same database;
  ```text / json / yaml / promql / ...   shown, never run (diagrams, responses, configuration).
A runnable block preceded by `<!-- not-runnable: reason -->` is skipped (the reason is required).
A sql block preceded by `<!-- expect-errors: SX004, SX008 -->` must raise exactly those
SQLSTATEs, in that order, and nothing else (psql then goes on after each error).

The blocks of one page run in document order, like one reader with one psql session and one
terminal: psql variables (`\\gset`) set by a sql block are seen by the page's later sql blocks,
shell variables and functions set by a sh block by its later sh blocks; psql and bash share one
scratch working directory.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PSQL = "/usr/lib/postgresql/15/bin/psql"
RUNNABLE = {"sql", "sh"}
DISPLAY = {"text", "json", "yaml", "promql", "ini", "svg", "python"}
MARKER = re.compile(r"^<!--\s*(not-runnable|expect-errors)\s*(?::\s*(.*?))?\s*-->$")
FENCE = re.compile(r"^```([\w-]*)\s*$")
VARS_MARK = "--- psql variables ---"
SQLSTATE = re.compile(r"ERROR:\s+([0-9A-Z]{5}):")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None = None  # "not-runnable" | "expect-errors"
    reason: str | None = None  # the marker's argument

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUNNABLE and self.marker != "not-runnable"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the marker on the last non-blank line before it."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m[1]
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path.relative_to(ROOT)}:{start + 1}: unclosed code block")
        block = Block(path, start + 1, lang, "\n".join(lines[start + 1 : j]) + "\n")
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        if k >= 0 and (mk := MARKER.match(lines[k].strip())):
            block.marker, block.reason = mk[1], (mk[2] or "").strip() or None
        found.append(block)
        i = j + 1
    return found


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def own_keyring(dsn: str) -> Iterator[Path]:
    """Give the database a keyring of its own, so key rotation and retirement in examples touch no other."""
    d = Path(tempfile.gettempdir()) / f"shieldx-docs-keys-{uuid.uuid4().hex[:8]}"
    for purpose in ("audit", "payment", "subject"):
        (d / purpose).mkdir(parents=True)
        kid = "k" + secrets.token_hex(6)
        (d / purpose / f"{kid}.key").write_text(secrets.token_hex(32))
        (d / purpose / "CURRENT").write_text(kid + "\n")
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "postgres:postgres", str(d)], check=True)
    subprocess.run(["chmod", "-R", "go-rwx", str(d)], check=True)
    dbname = dsn.rsplit("/", 1)[1]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{dbname}\" SET shieldx.key_dir = '{d}'")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextmanager
def api_server(app_dsn: str, log: Path) -> Iterator[str]:
    """The real API (`python -m shieldx.cli.serve_main`, uvicorn) on a free port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": app_dsn, "SHIELDX_POOL_MIN": "1", "SHIELDX_POOL_MAX": "4"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shieldx.cli.serve_main", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the API exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the API did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def shell_env(api: str, dsn: str) -> dict[str, str]:
    """What a reader's terminal has after `make run`, pointed at the test's server and database."""
    path = os.pathsep.join([str(ROOT / ".venv" / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {
        **os.environ,
        "PATH": path,
        "API": api,
        "SHIELDX_ADMIN_URL": dsn,
        "DATABASE_URL": dsn.replace("postgres@", "shieldx_app@", 1),
    }


def run_sql(block: Block, dsn: str, cwd: Path, variables: dict[str, str]) -> dict[str, str]:
    """Run a sql block with psql after the page's earlier ones; return the psql variables it leaves.

    Lower-case psql variables (set by \\set or \\gset) carry over to the page's next sql
    blocks, as in one psql session.
    """
    script = cwd / f"block-{block.line}.sql"
    carried = "".join(f"\\set {k} '{_psql_quote(v)}'\n" for k, v in variables.items())
    script.write_text(carried + block.text + f"\n\\echo {VARS_MARK}\n\\set\n")
    expected = [s.strip() for s in (block.reason or "").split(",") if s.strip()]
    stop = "0" if block.marker == "expect-errors" else "1"
    done = subprocess.run(
        [PSQL, "-X", "-q", "-v", f"ON_ERROR_STOP={stop}", "-v", "VERBOSITY=verbose", "-d", dsn, "-f", script.name],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
    )
    raised = SQLSTATE.findall(done.stderr)
    if block.marker == "expect-errors":
        assert raised == expected, f"{block.where}: expected errors {expected}, got {raised}:\n{done.stderr}"
    else:
        assert done.returncode == 0 and "ERROR:" not in done.stderr, f"{block.where} failed:\n{done.stderr}"
    listing = done.stdout.rpartition(VARS_MARK + "\n")[2]
    return {m[1]: m[2] for m in re.finditer(r"^([a-z_][a-z0-9_]*) = '(.*)'$", listing, re.M)}


def _psql_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def run_sh(block: Block, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Run a sh block with bash -e after the page's earlier ones; return the environment it leaves."""
    script = cwd / f"block-{block.line}.sh"
    script.write_text(block.text)
    state, funcs = cwd / ".env", cwd / ".functions"
    funcs.touch()
    # `set -a` exports every variable the block sets, so `env -0` hands them to the next block.
    wrapper = f'set -a; source "{funcs}"; source "{script}"; env -0 > "{state}"; declare -f > "{funcs}"'
    done = subprocess.run(["bash", "-e", "-c", wrapper], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{block.where} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr}"
    pairs = (item.split("=", 1) for item in state.read_text().split("\0") if "=" in item)
    return dict(pairs)
