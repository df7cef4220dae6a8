"""Access control's cost: consume through the API with key check + rate limiting on vs off.

auth.consume_rps_on          wrk (16 connections) POST .../consume with a consumer key, limiter active
auth.consume_rps_off         the same with SHIELDX_AUTH=false (no key check, no limiter)
auth.consume_on_vs_off       on / off (1.0 = access control costs nothing; the budget is >= 0.90)
auth.api_consume_vs_sql_consume_on / _off   each side over pgbench consume TPS measured in the same run,
                             i.e. api.consume_vs_sql_consume with and without access control
auth.leases_per_request      limiter round trips per request (one worker's /metrics, whole run)
Both servers run side by side on the same database; the sides alternate, four rounds.
"""

from __future__ import annotations

import re
import urllib.request

from .harness import Harness, seed_ledger

ACCOUNTS = 1_000


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([\d.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("auth")
    try:
        key = seed_ledger(url, ACCOUNTS)
        app_url = url.replace("postgres@", "shieldx_app@", 1)
        env = {"NACCOUNTS": str(ACCOUNTS), "API_KEY": key}
        rps: dict[str, list[float]] = {"on": [], "off": []}
        with (
            h.api_server(app_url, port=8771) as on,
            h.api_server(app_url, port=8772, env={"SHIELDX_AUTH": "false"}) as off,
        ):
            bases = {"on": on, "off": off}
            for side in ("on", "off"):  # warm both
                h.wrk(bases[side], "auth_consume.lua", seconds=3, env=env)
            for round_no in range(4):  # on-off, off-on, ...: drift in the machine's speed hits both sides alike
                for side in ("on", "off") if round_no % 2 == 0 else ("off", "on"):
                    h.progress(f"wrk consume, auth {side} (round {round_no + 1})")
                    rps[side].append(h.wrk(bases[side], "auth_consume.lua", connections=16, env=env)["rps"])
            # Counters are per worker process: read one worker's, as a ratio.
            text = urllib.request.urlopen(on + "/metrics", timeout=5).read().decode()
            requests = _metric(text, "shieldx_auth_cache_hits_total") + _metric(
                text, "shieldx_auth_verifications_total"
            )
            leases = _metric(text, "shieldx_auth_leases_total")
        h.progress("pgbench consume (the SQL baseline)")
        sql = h.pgbench(url, "consume.sql", defines={"naccounts": ACCOUNTS})
        rps_on, rps_off = sum(rps["on"]) / len(rps["on"]), sum(rps["off"]) / len(rps["off"])
        return {
            "auth.consume_rps_on": rps_on,
            "auth.consume_rps_off": rps_off,
            "auth.consume_on_vs_off": rps_on / rps_off,
            "auth.api_consume_vs_sql_consume_on": rps_on / sql,
            "auth.api_consume_vs_sql_consume_off": rps_off / sql,
            "auth.leases_per_request": leases / requests if requests else 0.0,
        }
    finally:
        h.drop_database(url)
