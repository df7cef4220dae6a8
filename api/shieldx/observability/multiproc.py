"""The directory prometheus-client's multiprocess mode shares between workers.

Kept apart from `metrics` on purpose: it must run, in the serving process,
before prometheus-client is first imported (the library chooses between
in-process and file-backed values at import time).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare() -> Path | None:
    """Point ENV at an empty directory for this server start; return it if it is ours to remove.

    An operator-chosen directory (ENV already set) is emptied of metric files, so a
    restart never adds the previous run's counts; otherwise a fresh private temporary
    directory is made (mode 0700) and the caller removes it when the server stops.
    """
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    path = Path(tempfile.mkdtemp(prefix="shieldx-metrics-"))
    os.environ[ENV] = str(path)
    return path


def cleanup(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        if os.environ.get(ENV) == str(path):
            del os.environ[ENV]
