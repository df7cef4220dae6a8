"""What every verb shares: where the databases are."""

from __future__ import annotations

import os
import subprocess

from ..paths import ROOT

CLUSTER = ROOT / "deploy" / "local" / "cluster.sh"
LOCAL_PORT = int(os.environ.get("SHIELDX_PGPORT", "55432"))


def admin_url(dbname: str = "shieldx") -> str:
    """A superuser URL for migrations and maintenance (the local cluster by default)."""
    return os.environ.get("SHIELDX_ADMIN_URL", f"postgresql://postgres@127.0.0.1:{LOCAL_PORT}/{dbname}")


def app_url(dbname: str = "shieldx") -> str:
    return os.environ.get("DATABASE_URL", f"postgresql://shieldx_app@127.0.0.1:{LOCAL_PORT}/{dbname}")


def cluster(action: str) -> None:
    subprocess.run([str(CLUSTER), action], check=True)
