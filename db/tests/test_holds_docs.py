"""The README's error table for holds and distributed transactions is the catalog's."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import rows

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_sx1xx_code_as_registered(db):
    text = README.read_text()
    section = text[text.index("## Reservations and distributed transactions") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    documented = {(m[1], m[2], int(m[3])) for m in re.finditer(r"^\| (SX1\d\d) \| (\w+) \| (\d{3}) \|", section, re.M)}
    registered = {
        (r["sqlstate"], r["name"], r["http_status"])
        for r in rows(db, "ops.error_codes")
        if r["sqlstate"].startswith("SX1")
    }
    assert registered and documented == registered
