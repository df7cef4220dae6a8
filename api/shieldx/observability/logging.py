"""Logs as JSON lines on stderr (stdlib logging), with what they must never hold masked.

One line per request comes from the middleware (`shieldx.access`); every other
record (the API's, Litestar's, uvicorn's) goes through the same formatter, which
adds the request id of the request being served and scrubs free text as a second
line of defence: client addresses are truncated (IPv4 /24, IPv6 /48), card-like
numbers (Luhn-valid, 13-19 digits) and API key secrets are replaced. Request
bodies and headers other than the user agent's family are never logged.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import sys
import time
from functools import lru_cache
from typing import Any

import msgspec

from .context import current

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


# --- masking ---------------------------------------------------------------------
@lru_cache(maxsize=4096)
def mask_ip(host: str | None) -> str | None:
    """A client address reduced to its network: IPv4 /24, IPv6 /48 (an IPv4-mapped IPv6 as IPv4)."""
    if not host:
        return None
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None  # not an address (an in-process test client, a Unix socket)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


# First match wins; the family is the client library or "Mozilla" for browsers.
_UA_FAMILIES = (
    ("curl/", "curl"),
    ("python-httpx/", "python-httpx"),
    ("python-requests/", "python-requests"),
    ("python-urllib/", "python-urllib"),
    ("aiohttp/", "aiohttp"),
    ("go-http-client/", "Go-http-client"),
    ("prometheus/", "Prometheus"),
    ("kube-probe/", "kube-probe"),
    ("wrk", "wrk"),
    ("k6/", "k6"),
    ("schemathesis/", "schemathesis"),
    ("testclient", "testclient"),
    ("mozilla/", "Mozilla"),
)


@lru_cache(maxsize=1024)
def ua_family(agent: str | None) -> str | None:
    """The user agent reduced to its family (curl, python-httpx, Mozilla, ...; else "other")."""
    if not agent:
        return None
    lowered = agent.lower()
    for prefix, family in _UA_FAMILIES:
        if lowered.startswith(prefix):
            return family
    return "other"


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Card-like: 13-19 digits, single spaces or dashes allowed between them, not part of a longer token.
CARD_RE = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
KEY_RE = re.compile(r"sx_([0-9a-f]{12})_[0-9a-f]{64}")
IPV4_RE = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:\d{1,3}\.){3}\d{1,3})(?![\w:.])")
_SUSPECT = re.compile(r"\d{4}|sx_|\d\.\d|:[0-9A-Fa-f]*:")


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", m.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group(0)


def _ip(m: re.Match[str]) -> str:
    text = m.group(0)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return text
    # The server's own loopback or wildcard bind address names no client.
    if addr.is_loopback or addr.is_unspecified:
        return text
    return mask_ip(text) or text


def scrub(text: str) -> str:
    """Free text with card numbers, key secrets and full client addresses masked."""
    if not _SUSPECT.search(text):
        return text
    text = KEY_RE.sub(r"sx_\1_[secret]", text)
    text = CARD_RE.sub(_card, text)
    text = IPV4_RE.sub(_ip, text)
    return IPV6_RE.sub(_ip, text)


# --- formatting ----------------------------------------------------------------
_encode = msgspec.json.Encoder(enc_hook=str).encode
_stamp: list[Any] = [-1, ""]  # the second last formatted, and its text


def timestamp(created: float) -> str:
    """UTC, ISO 8601 with milliseconds: one strftime per second, not per line."""
    second = int(created)
    if second != _stamp[0]:
        _stamp[0], _stamp[1] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_stamp[1]}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request_id, and the
    record's `fields` (structured values, already masked by whoever logs them)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": scrub(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        elif (ctx := current.get()) is not None:
            out["request_id"] = ctx.request_id
        if record.exc_info:
            out["exception"] = scrub(self.formatException(record.exc_info))
        return _encode(out).decode()


class JsonStreamHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (like logging's last-resort handler)."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        logging.Handler.__init__(self, level)
        self.setFormatter(JsonFormatter())

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


ACCESS = "shieldx.access"


def only_json_handler(logger: logging.Logger) -> bool:
    """Whether every record of `logger` ends in exactly one JsonStreamHandler, unfiltered: then
    a line it would write can be written without going through `logging` (see middleware)."""
    found = 0
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters:
            return False
        for handler in node.handlers:
            if type(handler) is not JsonStreamHandler or handler.filters or handler.level > logging.INFO:
                return False
            found += 1
        if not node.propagate:
            break
        node = node.parent
    return found == 1


def access_fields(
    request_id: str,
    tenant: str | None,
    route: str,
    method: str,
    status: int,
    seconds: float,
    client: str | None,
    agent: bytes | None,
    replayed: bool,
) -> dict[str, Any]:
    """The fields of a request's access line, masked: tenant scrubbed, client /24 or /48, user agent family."""
    fields: dict[str, Any] = {
        "request_id": request_id,
        "tenant": scrub(tenant) if tenant is not None else None,  # as the caller wrote it in the path
        "route": route,
        "method": method,
        "status": status,
        "duration_ms": round(seconds * 1000.0, 3),
        "client": mask_ip(client),
        "user_agent": ua_family(agent.decode("latin-1")) if agent else None,
    }
    if replayed:
        fields["replayed"] = True
    return fields


def access_line(created: float, pid: int, fields: dict[str, Any]) -> bytes:
    """The JSON line JsonFormatter makes of the access record with these fields (method, route
    template and status in the message: nothing to scrub), without a LogRecord."""
    return _encode(
        {
            "time": timestamp(created),
            "level": "INFO",
            "logger": ACCESS,
            "pid": pid,
            "message": f"{fields['method']} {fields['route']} {fields['status']}",
            **fields,
        }
    )


def write_lines(lines: list[bytes]) -> None:
    """Write JSON lines to whatever sys.stderr is now, in one write."""
    if not lines:
        return
    lines.append(b"")
    with contextlib.suppress(OSError, ValueError):  # stderr closed: nowhere left to write
        stream = sys.stderr
        stream.write(b"\n".join(lines).decode())
        stream.flush()


def level_name(raw: str | None) -> str:
    name = (raw or "INFO").upper()
    return name if name in LEVELS else "INFO"


def configure(level: str = "INFO") -> None:
    """Send every log record, as JSON, to stderr (idempotent: one handler however often called)."""
    level = level_name(level)
    # A record need not know its source line, thread or process name: finding the caller's
    # frame and names is most of the cost of a log call, paid on every request.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    if not any(isinstance(h, JsonStreamHandler) for h in root.handlers):
        root.addHandler(JsonStreamHandler())
    root.setLevel(level)
    for name in ("litestar", "uvicorn", "uvicorn.error", "shieldx"):
        logger = logging.getLogger(name)
        logger.handlers = [h for h in logger.handlers if isinstance(h, JsonStreamHandler)]
        logger.propagate = not logger.handlers
        logger.setLevel(logging.NOTSET)


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's logging as a dictConfig: its error log in JSON on stderr, its access log off
    (the API writes its own, masked, one line per request)."""
    level = level_name(level)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"json": {"()": f"{__name__}.JsonStreamHandler"}},
        "root": {"handlers": ["json"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
