"""Throwaway HA clusters on claimed free ports, and the API as a real server against one.

A private cluster has its own folder (`<state dir>/<name>-<pid>`) and ports, so
the cluster of `ha up` is left alone and two runs at once never collide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .cluster import Cluster
from .layout import Layout
from .processes import free_port, http_ok, pid_alive, port_free, wait_until
from .state import state_dir


def claims_dir() -> Path:
    return state_dir() / "ha-claims"


def claim_offset(start: int = 100, step: int = 100, tries: int = 40) -> int:
    """A port offset nobody else uses: every port free, and claimed by this process.

    Claims are files <state dir>/ha-claims/<offset> holding the owner's pid (created
    exclusively), so two test runs at once never pick the same ports.
    """
    claims = claims_dir()
    claims.mkdir(parents=True, exist_ok=True)
    for i in range(tries):
        offset = start + i * step
        claim = claims / str(offset)
        try:
            owner = int(claim.read_text() or 0)
        except (OSError, ValueError):
            owner = None
        if owner is not None and owner != os.getpid() and pid_alive(owner):
            continue
        if owner is not None:
            claim.unlink(missing_ok=True)
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        if all(port_free(p) for p in Layout(Path("/nonexistent"), offset).all_ports()):
            return offset
        claim.unlink(missing_ok=True)
    raise RuntimeError("no free port range for a private HA cluster")


def release_offset(offset: int) -> None:
    claim = claims_dir() / str(offset)
    try:
        if int(claim.read_text()) == os.getpid():
            claim.unlink()
    except (OSError, ValueError):
        pass


def _sweep(prefix: str) -> None:
    """Stop and delete private clusters left by runs that were killed before their cleanup."""
    for base in state_dir().glob(f"{prefix}-*"):
        if base.suffix == ".logs" or not base.name.rsplit("-", 1)[1].isdigit():
            continue
        if pid_alive(int(base.name.rsplit("-", 1)[1])):
            continue  # another run, still going
        try:
            offset = int((base / "offset").read_text())
        except (OSError, ValueError):
            offset = 0
        Cluster(Layout(base, offset)).down(purge=True)
        release_offset(offset)


@contextmanager
def private_cluster(name: str, say: Callable[[str], None] | None = None) -> Iterator[Cluster]:
    """A throwaway HA cluster in <state dir>/<name>-<pid> on claimed free ports; always stopped afterwards.

    Logs of the last run are kept in <state dir>/<name>.logs.
    """
    _sweep(name)
    offset = claim_offset()
    base = state_dir() / f"{name}-{os.getpid()}"
    layout = Layout(base, offset, scope=f"{name}-{os.getpid()}")
    base.mkdir(parents=True, exist_ok=True)
    (base / "offset").write_text(str(offset))
    cluster = Cluster(layout, say)
    try:
        cluster.up()
        yield cluster
    finally:
        try:
            cluster.down()
        finally:
            kept = state_dir() / f"{name}.logs"
            shutil.rmtree(kept, ignore_errors=True)
            if layout.log_dir.exists():
                shutil.copytree(layout.log_dir, kept)
            for node in layout.names:
                if (layout.data_dir(node) / "log").exists():
                    shutil.copytree(layout.data_dir(node) / "log", kept / f"postgres-{node}")
            cluster.down(purge=True)
            release_offset(offset)


@contextmanager
def api_server(
    database_url: str,
    log_path: Path,
    workers: int = 2,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[str]:
    """`python -m shieldx.cli.serve_main` on `port` (default: a free one); yields its base URL.

    Its output goes to a file: during an outage the pool and the breaker log a
    lot, and an unread pipe would block the server.
    """
    port = port or free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - the child process owns it for its whole life
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shieldx.cli.serve_main",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is None and http_ok(base + "/health/live"), 30, "the API to start")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def ready(base: str) -> bool:
    """Whether the API at `base` answers /health/ready with 200."""
    return http_ok(base + "/health/ready")
