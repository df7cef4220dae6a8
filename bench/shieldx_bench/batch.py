"""Batches: many ledger operations per call, against a bare UPDATE and the single operations.

sql.batch_consume_items_per_s           consumes/s through credits.apply_batch: 100-item non-atomic batches of
                                        random accounts, 8 pgbench clients (batches/s x 100)
sql.batch_consume_items_vs_bare_update  that / the TPS of a bare single-row UPDATE transaction (target >= 1.0)
sql.batch_consume_vs_consume            that / the TPS of single credits.consume calls
sql.consume_vs_bare_update_here         single consume and transfer against the bare UPDATE, in this same run
sql.transfer_vs_bare_update_here        (the credits suite measures them too; these pair with the batch figures)
api.batch_consume_items_per_s           consumes/s through POST .../batches (100 items, API key and rate limiter on;
                                        requests/s x 100) at the operating point: the wrk connection count of
                                        CONNECTIONS with the most throughput whose p99 stays within P99_TARGET_MS
api.batch_p99_ms                        p99 latency of batch requests at that same operating point
api.batch_connections                   the operating point's connection count
api.batch_items_per_s_c<N>              the load curve: items/s and p99 at each connection count N
api.batch_p99_ms_c<N>                   (closed loop: mean latency = N / throughput, so past the point where the
                                        cores are busy, more connections only queue: N=16 shows it)
api.consume_rps_here                    single POST .../consume requests/s, same server, same run
client.autobatch_consume_per_s          single consume calls through shieldx.client's auto-batcher (asyncio,
                                        CLIENT_CALLERS concurrent callers)
client.autobatch_vs_api_consume         that / api.consume_rps_here (target >= 3)
Each ratio's sides run back to back, alternating, twice within one run.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

from shieldx.client import AsyncClient
from shieldx_local.processes import free_port

from .harness import Harness, seed_ledger

ACCOUNTS = 10_000
BATCH = 100
CLIENT_CALLERS = 256
CONNECTIONS = (1, 2, 4, 8, 16)
P99_TARGET_MS = 50.0


async def _autobatch(base: str, key: str, seconds: float) -> float:
    """Consumes/s of CLIENT_CALLERS concurrent callers, each calling consume in a loop, auto-batched."""
    done = 0
    keys = itertools.count()
    prefix = f"auto-{random.randrange(10**9)}-"
    async with AsyncClient(base, key, "bench", autobatch=True, linger_s=0.002, max_batch=BATCH) as client:
        deadline = time.monotonic() + seconds

        async def caller() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await client.consume(random.randint(1, ACCOUNTS), 1, key=f"{prefix}{next(keys)}")
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(caller() for _ in range(CLIENT_CALLERS)))
        return done / (time.monotonic() - start)


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("batch")
    try:
        key = seed_ledger(url, ACCOUNTS)
        tps = h.alternate(
            url,
            [
                ("bare", "bare_update.sql"),
                ("batch", "batch_consume.sql"),
                ("consume", "consume.sql"),
                ("transfer", "transfer.sql"),
            ],
            defines={"naccounts": ACCOUNTS, "batch": BATCH},
        )
        items = tps["batch"] * BATCH
        out = {
            "sql.batch_consume_items_per_s": items,
            "sql.batch_consume_items_vs_bare_update": items / tps["bare"],
            "sql.batch_consume_vs_consume": items / tps["consume"],
            "sql.consume_vs_bare_update_here": tps["consume"] / tps["bare"],
            "sql.transfer_vs_bare_update_here": tps["transfer"] / tps["bare"],
        }
        h.progress("API batches under wrk")
        with h.api_server(url.replace("postgres@", "shieldx_app@", 1), port=free_port()) as base:
            env = {"NACCOUNTS": str(ACCOUNTS), "API_KEY": key, "BATCH": str(BATCH)}
            h.wrk(base + "/health/live", seconds=2)  # warm the workers
            h.wrk(base, "batch_consume.lua", seconds=3, env=env)
            single, auto = [], []
            curve: dict[int, list[dict[str, float]]] = {n: [] for n in CONNECTIONS}
            for _ in range(2):
                h.progress("API single consume")
                single.append(h.wrk(base, "auth_consume.lua", connections=16, env=env)["rps"])
                h.progress("client auto-batched consume")
                auto.append(asyncio.run(_autobatch(base, key, h.seconds)))
                for n in CONNECTIONS:
                    h.progress(f"API batches, {n} connections")
                    curve[n].append(h.wrk(base, "batch_consume.lua", connections=n, threads=min(n, 2), env=env))
        consume_rps = sum(single) / len(single)
        autobatch = sum(auto) / len(auto)
        points = {
            n: (sum(r["rps"] for r in runs) / len(runs) * BATCH, max(r["p99_ms"] for r in runs))
            for n, runs in curve.items()
        }
        within = [n for n, (_, p99) in points.items() if p99 <= P99_TARGET_MS]
        # The most throughput within the latency target; if no point meets it, the lowest latency.
        best = max(within, key=lambda n: points[n][0]) if within else min(points, key=lambda n: points[n][1])
        for n, (items_s, p99) in points.items():
            out[f"api.batch_items_per_s_c{n}"] = items_s
            out[f"api.batch_p99_ms_c{n}"] = p99
        out.update(
            {
                "api.batch_consume_items_per_s": points[best][0],
                "api.batch_p99_ms": points[best][1],
                "api.batch_connections": float(best),
                "api.consume_rps_here": consume_rps,
                "client.autobatch_consume_per_s": autobatch,
                "client.autobatch_vs_api_consume": autobatch / consume_rps,
            }
        )
        return out
    finally:
        h.drop_database(url)
