"""Holds: reserve + commit against a bare UPDATE, and through the API.

sql.reserve_commit_vs_bare_update   pgbench TPS of one script = credits.reserve then credits.commit_hold
                                    of that hold (two autocommit statements, as a client really calls
                                    them), over a bare single-row UPDATE's TPS in the same run
sql.reserve_commit_one_tx_vs_bare_update  the same two calls inside one BEGIN/COMMIT
api.reserve_commit_p50_ms           POST .../holds then POST .../holds/{id}/commit with a consumer key,
                                    one client, keep-alive, median of the pair's wall time (p90 too)
sql.reserve_commit_pair_p50_ms      the same pair called directly over one psycopg connection (no HTTP), for
                                    attribution of api.reserve_commit_p50_ms
api.get_account_p50_ms              GET one account over the same client, the API's floor at this moment
Each ratio's sides run back to back, twice, alternating, within one run. A
machine's speed drifts: compare figures of one run, not across runs.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics
import time
from urllib.parse import urlparse

import psycopg

from shieldx_local.sql import scalar

from .credits import ACCOUNTS
from .harness import Harness, seed_ledger


def _api_pairs(base: str, key: str, seconds: float) -> list[float]:
    """Latency (ms) of reserve + commit pairs over one keep-alive connection."""
    u = urlparse(base)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    headers = {"content-type": "application/json", "Authorization": f"Bearer {key}"}
    body = json.dumps({"amount": 1, "ttl_seconds": 60}).encode()
    out: list[float] = []
    rnd = random.Random(7)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        acc = rnd.randint(1, ACCOUNTS)
        t0 = time.perf_counter()
        conn.request(
            "POST",
            f"/v1/tenants/bench/accounts/{acc}/holds",
            body=body,
            headers={**headers, "Idempotency-Key": f"api-{time.time_ns()}-{n}"},
        )
        r = conn.getresponse()
        hold = json.loads(r.read())
        if r.status != 201:
            raise RuntimeError(f"reserve: {r.status} {hold}")
        conn.request("POST", f"/v1/tenants/bench/holds/{hold['hold_id']}/commit", body=b"{}", headers=headers)
        r = conn.getresponse()
        done = r.read()
        if r.status != 200:
            raise RuntimeError(f"commit: {r.status} {done!r}")
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out


def _sql_pairs(url: str, seconds: float) -> list[float]:
    """Latency (ms) of reserve + commit called directly, one autocommit connection."""
    out: list[float] = []
    rnd = random.Random(11)
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as conn:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            n += 1
            t0 = time.perf_counter()
            hold = scalar(
                conn,
                "SELECT hold_id FROM credits.reserve('bench', %s::bigint, 1, %s)",
                (rnd.randint(1, ACCOUNTS), f"sql-{time.time_ns()}-{n}"),
            )
            conn.execute("SELECT entry_id FROM credits.commit_hold('bench', %s::bigint)", (hold,)).fetchone()
            out.append((time.perf_counter() - t0) * 1000)
    return out


def _api_gets(base: str, key: str, seconds: float) -> list[float]:
    u = urlparse(base)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        conn.request("GET", "/v1/tenants/bench/accounts/1", headers={"Authorization": f"Bearer {key}"})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"get: {r.status}")
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("holds")
    try:
        key = seed_ledger(url, ACCOUNTS)
        d = {"naccounts": ACCOUNTS}
        # Measure the steady state, not a fresh table's first minute: until
        # autovacuum first analyzes credits.holds the planner believes it
        # empty, and plans cached then may walk the active-holds index.
        h.progress("warming up (a history of holds, then ANALYZE)")
        h.pgbench(url, "reserve_commit.sql", seconds=3, defines=d)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE credits.holds, credits.accounts, credits.entries, audit.log")
        tps = h.alternate(
            url,
            [
                ("bare", "bare_update.sql"),
                ("rc", "reserve_commit.sql"),
                ("bare", "bare_update.sql"),
                ("rc1", "reserve_commit_one_tx.sql"),
            ],
            defines=d,
        )
        bare, rc, rc1 = tps["bare"], tps["rc"], tps["rc1"]
        out = {
            "sql.holds_bare_update_tps": bare,
            "sql.reserve_commit_tps": rc,
            "sql.reserve_commit_vs_bare_update": rc / bare,
            "sql.reserve_commit_one_tx_tps": rc1,
            "sql.reserve_commit_one_tx_vs_bare_update": rc1 / bare,
        }
        h.progress("API reserve + commit at low load")
        with h.api_server(url.replace("postgres@", "shieldx_app@", 1)) as base:
            _api_pairs(base, key, 2)  # warm the workers' pools, key caches and prepared statements
            lat = _api_pairs(base, key, h.seconds)
            gets = _api_gets(base, key, 3)
        sql_lat = _sql_pairs(url, 3)
        lat.sort()
        out.update(
            {
                "api.reserve_commit_p50_ms": statistics.median(lat),
                "api.reserve_commit_p90_ms": lat[int(len(lat) * 0.9)],
                "api.reserve_commit_pairs": float(len(lat)),
                "api.get_account_p50_ms": statistics.median(gets),
                "sql.reserve_commit_pair_p50_ms": statistics.median(sql_lat),
            }
        )
        return out
    finally:
        h.drop_database(url)
