"""The README's shadow error table is the catalog's SX4xx codes."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import rows

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_sx4xx_code_as_registered(db):
    text = README.read_text()
    section = text[text.index("## Shadow evaluation") :]
    end = section.find("\n## ", 1)
    section = section[:end] if end > 0 else section
    documented = {(m[1], m[2], int(m[3])) for m in re.finditer(r"^\| (SX4\d\d) \| (\w+) \| (\d{3}) \|", section, re.M)}
    registered = {
        (r["sqlstate"], r["name"], r["http_status"])
        for r in rows(db, "ops.error_codes")
        if r["sqlstate"].startswith("SX4")
    }
    assert registered and documented == registered
