"""The cost of observability: consume through the API with metrics, access log and request ids on vs off.

obs.consume_rps_metrics_on    wrk (16 connections) POST .../consume; Prometheus metrics, the JSON access line
                              and the request id in application_name all on (the defaults)
obs.consume_rps_metrics_off   the same with SHIELDX_METRICS, SHIELDX_REQUEST_LOG and SHIELDX_SQL_REQUEST_ID false
obs.consume_rps_metrics_on_vs_off   on / off (the budget is >= 0.95: instrumentation costs at most 5 %)

Throughput on a machine shared with other work moves with that work; the processor time spent per
request moves far less, so it is recorded too, from /proc/<pid>/stat (user + system time) over each
wrk run, divided by the requests it made:
obs.api_cpu_us_per_request_on / _off      the API server's processes (supervisor and workers)
obs.api_cpu_per_request_on_vs_off         on / off (1.05 = instrumentation costs 5 % of the API's time)
obs.pg_cpu_us_per_request_on / _off       the PostgreSQL backends serving the API's connections
obs.pg_cpu_per_request_on_vs_off          on / off
Both servers run side by side on the same database; the sides alternate (on-off, off-on, ...), six
rounds, so drift in the machine's speed hits both sides alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

from .harness import Harness, seed_ledger

ACCOUNTS = 1_000
ROUNDS = 6
OFF = {"SHIELDX_METRICS": "false", "SHIELDX_REQUEST_LOG": "false", "SHIELDX_SQL_REQUEST_ID": "false"}
PORTS = {"on": 8781, "off": 8782}
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # gone meanwhile


def server_processes(port: int) -> list[int]:
    """The `shieldx serve` listening on `port` and all its descendants (workers)."""
    children: dict[int, list[int]] = {}
    root = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat(pid)
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(pid)
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"shieldx.cli.serve_main" in argv and str(port).encode() in argv:
            root = pid
    if root is None:
        raise RuntimeError(f"no shieldx server on port {port}")
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of these processes so far."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("obs")
    dbname = url.rsplit("/", 1)[1]
    try:
        key = seed_ledger(url, ACCOUNTS)
        app_url = url.replace("postgres@", "shieldx_app@", 1)
        env = {"NACCOUNTS": str(ACCOUNTS), "API_KEY": key}
        rps: dict[str, list[float]] = {"on": [], "off": []}
        api_us: dict[str, list[float]] = {"on": [], "off": []}
        pg_us: dict[str, list[float]] = {"on": [], "off": []}
        with (
            psycopg.connect(url, autocommit=True) as watcher,
            h.api_server(app_url, port=PORTS["on"]) as on,
            h.api_server(app_url, port=PORTS["off"], env=OFF) as off,
        ):
            bases = {"on": on, "off": off}
            servers = {side: server_processes(port) for side, port in PORTS.items()}
            for side in ("on", "off"):  # warm both
                h.wrk(bases[side], "auth_consume.lua", seconds=3, env=env)
            for round_no in range(ROUNDS):
                for side in ("on", "off") if round_no % 2 == 0 else ("off", "on"):
                    h.progress(f"wrk consume, observability {side} (round {round_no + 1})")
                    backends = [
                        pid
                        for (pid,) in watcher.execute(
                            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND usename = 'shieldx_app'",
                            (dbname,),
                        )
                    ]
                    api0, pg0 = cpu_seconds(servers[side]), cpu_seconds(backends)
                    result = h.wrk(bases[side], "auth_consume.lua", connections=16, env=env)
                    api1, pg1 = cpu_seconds(servers[side]), cpu_seconds(backends)
                    requests = result["rps"] * h.seconds
                    rps[side].append(result["rps"])
                    api_us[side].append((api1 - api0) / requests * 1e6)
                    pg_us[side].append((pg1 - pg0) / requests * 1e6)

        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        out: dict[str, float] = {}
        for name, series in (("consume_rps_metrics", rps), ("api_cpu_us_per_request", api_us)):
            out[f"obs.{name}_on"], out[f"obs.{name}_off"] = mean(series["on"]), mean(series["off"])
        out["obs.pg_cpu_us_per_request_on"], out["obs.pg_cpu_us_per_request_off"] = (
            mean(pg_us["on"]),
            mean(pg_us["off"]),
        )
        out["obs.consume_rps_metrics_on_vs_off"] = (
            out["obs.consume_rps_metrics_on"] / out["obs.consume_rps_metrics_off"]
        )
        out["obs.api_cpu_per_request_on_vs_off"] = (
            out["obs.api_cpu_us_per_request_on"] / out["obs.api_cpu_us_per_request_off"]
        )
        out["obs.pg_cpu_per_request_on_vs_off"] = (
            out["obs.pg_cpu_us_per_request_on"] / out["obs.pg_cpu_us_per_request_off"]
        )
        return out
    finally:
        h.drop_database(url)
