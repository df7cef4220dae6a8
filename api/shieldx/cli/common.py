"""What every verb shares: where the databases are."""

from __future__ import annotations

import os
import subprocess

from ..config import local_url
from ..paths import ROOT

CLUSTER = ROOT / "deploy" / "local" / "cluster.sh"
LOCAL_PORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))


def admin_url(dbname: str = "shieldx") -> str:
    """A superuser URL for migrations and maintenance (the local cluster by default)."""
    return os.environ.get("SHIELDX_ADMIN_URL", local_url("postgres", dbname))


def app_url(dbname: str = "shieldx") -> str:
    return os.environ.get("DATABASE_URL", local_url("shieldx_app", dbname))


def cluster(action: str) -> None:
    subprocess.run([str(CLUSTER), action], check=True)
