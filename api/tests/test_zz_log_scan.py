"""The logs the suite produced hold no full client address, card number or key secret.

Named to run after the other API tests (pytest runs a directory's files in name
order). It scans:
  * every file in the session's log directory: the stderr of each API server a
    test started (JSON lines, uvicorn's own lines included) and every record
    logged in the test process itself (in-process apps, the schemathesis fuzzing);
  * the PostgreSQL server log, from where it stood when the API tests began,
    restricted to the entries of the API's role (shieldx_app) in this session's
    databases (named after its pid): what the API's requests made the server
    log. Entries of DBA sessions (psql-style calls in db/tests) are another
    matter (the server's own logging settings).

Exempt: loopback and unspecified addresses (127.0.0.0/8, ::1, 0.0.0.0, ::). They
name the server's own bind address and the test machine, never a client; the
tests that produce client traffic present a documentation address (203.0.113.77,
forwarded by a proxy on loopback), so a leaked client address would show as that.
Networks written as a prefix no longer than the masking rule's (/24, /48) are the
masked form and pass. A number written as an identifier (`"account_id": N`,
`account N not found`) is an id the request named, not a card number, even when its
digits pass the Luhn check (the conformance run draws ids up to 2^63 - 1, and one
in ten 16-digit ids passes it); a card number is never logged in those places.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

import pytest

from shieldx.observability.logging import luhn_ok

IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?![\w.])")
IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})(?:/\d{1,3})?(?![\w:.])"
)
CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
SECRET = re.compile(r"sx_[0-9a-f]{12}_[0-9a-f]{64}")
# What precedes a number written as an identifier: a JSON member or column named *_id, or the id's noun.
ID_CONTEXT = re.compile(r'(?:_id"?\s*[:=]\s*"?|\b(?:account|hold|entry|experiment|checkpoint)s?\s+)$', re.I)
PG_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] (?:(\S*)@(\S*) )?")
API_ROLE = "shieldx_app"


def _address_leak(text: str) -> str | None:
    address, _, prefix = text.partition("/")
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return None  # not an address (a time, a version)
    if addr.is_loopback or addr.is_unspecified:
        return None
    if prefix:
        limit = 24 if addr.version == 4 else 48
        try:
            ipaddress.ip_network(text, strict=True)
        except ValueError:
            return text  # host bits set: a full address with a suffix
        return None if int(prefix) <= limit else text
    return text


def findings(text: str) -> list[str]:
    found = []
    for m in IPV4.finditer(text):
        if leak := _address_leak(m.group(0)):
            found.append(f"IPv4 address {leak}")
    for m in IPV6.finditer(text):
        if leak := _address_leak(m.group(0)):
            found.append(f"IPv6 address {leak}")
    for m in CARD.finditer(text):
        if ID_CONTEXT.search(text, 0, m.start()):
            continue
        digits = re.sub(r"[ -]", "", m.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            found.append(f"card number {digits[:2]}…{digits[-2:]} ({len(digits)} digits)")
    for m in SECRET.finditer(text):
        found.append(f"API key secret of key {m.group(0)[3:15]}")
    return found


def api_entries_of_pg_log(path: Path, offset: int, db_suffix: str) -> list[str]:
    """The server log's entries (with their continuation lines) written since `offset` by the API's
    role in a database whose name ends with `db_suffix`."""
    with path.open("rb") as f:
        if f.seek(0, 2) < offset:
            offset = 0  # the log was truncated or replaced since: all of it is new
        f.seek(offset)
        text = f.read().decode("utf-8", "replace")
    entries: list[str] = []
    keep = False
    for line in text.splitlines():
        m = PG_ENTRY.match(line)
        if m:
            keep = m.group(1) == API_ROLE and (m.group(2) or "").endswith(db_suffix)
            if keep:
                entries.append(line)
        elif keep and entries:
            entries[-1] += "\n" + line
    return entries


def test_the_scanner_finds_what_it_looks_for():
    planted = (
        "from 203.0.113.77 and 2001:db8:1:2::3, card 4111 1111 1111 1111, "
        "key sx_0123456789ab_" + "ab" * 32 + " and 10.1.2.3/24"
    )
    assert len(findings(planted)) == 5, findings(planted)
    clean = (
        "client 203.0.113.0/24 and 2001:db8:1::/48 on 127.0.0.1:8000 and [::1] at 2026-12-01 23:50:16.204 UTC "
        "pid 12345 request 0af7651916cd43dd8448eb211c80319c card [card] key sx_0123456789ab_[secret] 4111111111111112 "
        'account 3697419361000577 not found {"account_id": 3697419361000577} hold 4111111111111111'
    )
    assert findings(clean) == []
    assert len(findings('card 4111111111111111 {"pan": "4111111111111111"}')) == 2


def test_no_address_card_or_secret_in_any_log(suite_logs):
    files = sorted(p for p in suite_logs.dir.iterdir() if p.is_file())
    if not any(p.name.startswith("api-server-") for p in files):
        pytest.skip("no API server ran in this session (run with test_observability_server.py)")
    found: list[str] = []
    scanned = 0
    for path in files:
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            scanned += 1
            found += [f"{path.name}:{n}: {what}" for what in findings(line)]
    assert scanned > 100, f"only {scanned} log lines: the suite did not log what it should have"
    assert suite_logs.pg_log is not None, "the PostgreSQL server log was not found (pg_current_logfile, server.log)"
    entries = api_entries_of_pg_log(suite_logs.pg_log, suite_logs.pg_offset, f"_{os.getpid()}")
    assert entries, "the API's requests left no entry in the PostgreSQL log (refusals are logged as errors)"
    for entry in entries:
        found += [f"postgresql log ({entry.splitlines()[0][:60]}…): {what}" for what in findings(entry)]
    assert not found, "\n".join(found[:50])
