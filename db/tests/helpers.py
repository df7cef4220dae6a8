"""Calling the SQL API the way a DBA does, and checking named errors."""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest


def call(conn: psycopg.Connection, fn: str, *args: Any) -> dict[str, Any]:
    """SELECT * FROM fn(args...) -> the single row."""
    placeholders = ", ".join(["%s"] * len(args))
    row = conn.execute(f"SELECT * FROM {fn}({placeholders})", args).fetchone()
    assert row is not None
    return row


def rows(conn: psycopg.Connection, fn: str, *args: Any) -> list[dict[str, Any]]:
    placeholders = ", ".join(["%s"] * len(args))
    return conn.execute(f"SELECT * FROM {fn}({placeholders})", args).fetchall()


@contextmanager
def raises(sqlstate: str):
    """Expect a named error; yields the exception info."""
    with pytest.raises(psycopg.Error) as info:
        yield info
    assert info.value.sqlstate == sqlstate, f"expected {sqlstate}, got {info.value.sqlstate}: {info.value}"


def snapshot(conn: psycopg.Connection) -> tuple:
    """Everything the ledger holds, to prove a refused call changed nothing."""
    accounts = conn.execute("SELECT * FROM credits.accounts ORDER BY account_id").fetchall()
    entries = conn.execute("SELECT * FROM credits.entries ORDER BY entry_id").fetchall()
    return (tuple(tuple(r.values()) for r in accounts), tuple(tuple(r.values()) for r in entries))


def setup_accounts(conn: psycopg.Connection, tenant: str = "acme", n: int = 2, grant: int = 100) -> list[int]:
    call(conn, "credits.create_tenant", tenant, tenant.title())
    ids = []
    for i in range(n):
        acc = call(conn, "credits.create_account", tenant, f"acc{i}", f"open-{tenant}-{i}")["account_id"]
        if grant:
            call(conn, "credits.grant_credits", tenant, acc, grant, f"seed-{tenant}-{i}")
        ids.append(acc)
    return ids


def run_threads(n: int, target) -> list[BaseException]:
    """Start n threads at once (a barrier), run target(i) in each, return what they raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def wrapper(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:  # collected and asserted by the test
            errors.append(exc)

    threads = [threading.Thread(target=wrapper, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return errors


SIGNER_STATE = Path(tempfile.gettempdir()) / f"shieldx-signer-{os.getpid()}.state"


def signer_key() -> Path:
    """The local cluster's audit signer key (root-only; made by deploy/local/cluster.sh)."""
    from shieldx.cli.audit import default_key_path

    return default_key_path()


def sign(conn: psycopg.Connection, retention_min_days: float = 0) -> Any:
    """Run the audit signer over this connection's database, as `shieldx audit sign` does."""
    from shieldx.signer import Signer

    return Signer(signer_key(), state_path=SIGNER_STATE, retention_min_days=retention_min_days).run(conn)


def pubkey() -> bytes:
    """The signer's public key, as a verifier pins it."""
    from shieldx.signer import load_public_key

    return load_public_key(str(signer_key()) + ".pub")
