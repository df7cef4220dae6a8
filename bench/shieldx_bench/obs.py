"""The cost of observability: consume through the API with metrics, access log and request ids on vs off.

obs.consume_rps_metrics_on    wrk (16 connections) POST .../consume; Prometheus metrics, the JSON access line
                              and the request id in application_name all on (the defaults)
obs.consume_rps_metrics_off   the same with SHIELDX_METRICS, SHIELDX_REQUEST_LOG and SHIELDX_SQL_REQUEST_ID false
obs.consume_rps_metrics_on_vs_off   on / off (the budget is >= 0.95: instrumentation costs at most 5 %)
Both servers run side by side on the same database; the sides alternate, four rounds.
"""

from __future__ import annotations

from .harness import Harness, seed_ledger

ACCOUNTS = 1_000
OFF = {"SHIELDX_METRICS": "false", "SHIELDX_REQUEST_LOG": "false", "SHIELDX_SQL_REQUEST_ID": "false"}


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("obs")
    try:
        key = seed_ledger(url, ACCOUNTS)
        app_url = url.replace("postgres@", "shieldx_app@", 1)
        env = {"NACCOUNTS": str(ACCOUNTS), "API_KEY": key}
        rps: dict[str, list[float]] = {"on": [], "off": []}
        with h.api_server(app_url, port=8781) as on, h.api_server(app_url, port=8782, env=OFF) as off:
            bases = {"on": on, "off": off}
            for side in ("on", "off"):  # warm both
                h.wrk(bases[side], "auth_consume.lua", seconds=3, env=env)
            for round_no in range(4):  # on-off, off-on, ...: drift in the machine's speed hits both sides alike
                for side in ("on", "off") if round_no % 2 == 0 else ("off", "on"):
                    h.progress(f"wrk consume, observability {side} (round {round_no + 1})")
                    rps[side].append(h.wrk(bases[side], "auth_consume.lua", connections=16, env=env)["rps"])
        rps_on, rps_off = sum(rps["on"]) / len(rps["on"]), sum(rps["off"]) / len(rps["off"])
        return {
            "obs.consume_rps_metrics_on": rps_on,
            "obs.consume_rps_metrics_off": rps_off,
            "obs.consume_rps_metrics_on_vs_off": rps_on / rps_off,
        }
    finally:
        h.drop_database(url)
