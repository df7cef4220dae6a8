"""Credits ledger: consume and transfer against a bare UPDATE, and the API's cost.

sql.consume_vs_bare_update   pgbench TPS of credits.consume / a bare single-row UPDATE
sql.transfer_vs_bare_update  the same for credits.transfer between two random accounts
api.consume_vs_sql_consume   wrk (16 connections) on POST .../consume / pgbench consume TPS
                             (through the whole production path: API key check and rate limiter on)
api.balance_p50_ms           GET an account at low load (1 connection)
api.consume_p99_ms           POST consume at 16 connections
Each ratio's two sides run back to back, twice, alternating, within one run.
"""

from __future__ import annotations

from .harness import Harness, seed_ledger

ACCOUNTS = 10_000


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("credits")
    try:
        key = seed_ledger(url, ACCOUNTS)
        d = {"naccounts": ACCOUNTS}
        tps = h.alternate(
            url,
            [
                ("bare", "bare_update.sql"),
                ("consume", "consume.sql"),
                ("bare", "bare_update.sql"),
                ("transfer", "transfer.sql"),
            ],
            defines=d,
        )
        bare, consume, transfer = tps["bare"], tps["consume"], tps["transfer"]
        out = {
            "sql.bare_update_tps": bare,
            "sql.consume_tps": consume,
            "sql.transfer_tps": transfer,
            "sql.consume_vs_bare_update": consume / bare,
            "sql.transfer_vs_bare_update": transfer / bare,
        }
        h.progress("API consume under wrk")
        with h.api_server(url.replace("postgres@", "shieldx_app@", 1)) as base:
            env = {"NACCOUNTS": str(ACCOUNTS), "API_KEY": key}
            h.wrk(base + "/health/live", seconds=2)  # warm the workers
            h.wrk(base, "auth_consume.lua", seconds=3, env=env)
            api = h.wrk(base, "auth_consume.lua", connections=16, env=env)
            h.progress("pgbench consume (pair for the API ratio)")
            sql_now = h.pgbench(url, "consume.sql", defines=d)
            h.progress("API balance at low load")
            low = h.wrk(
                base + "/v1/tenants/bench/accounts/1",
                connections=1,
                threads=1,
                headers={"Authorization": f"Bearer {key}"},
            )
        out.update(
            {
                "api.consume_rps": api["rps"],
                "api.consume_vs_sql_consume": api["rps"] / sql_now,
                "api.consume_p99_ms": api["p99_ms"],
                "api.consume_p50_ms": api["p50_ms"],
                "api.balance_p50_ms": low["p50_ms"],
            }
        )
        return out
    finally:
        h.drop_database(url)
