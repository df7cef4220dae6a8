"""Where the repository's database files live."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("SHIELDX_ROOT", Path(__file__).resolve().parents[2]))
DB_DIR = ROOT / "db"
MIGRATIONS_DIR = DB_DIR / "migrations"
FUNCTIONS_DIR = DB_DIR / "functions"
