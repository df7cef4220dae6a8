"""Shared machinery for benchmarks: fresh databases, pgbench, an API server, wrk, and the results file.

bench/results.json holds, per suite, the metrics of its latest run next to the
facts of that run: when, the machine (cores, memory) and the measured
PostgreSQL cluster (version and the settings that bound the figures).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from shieldx import schema
from shieldx_local.private import api_server as private_api_server
from shieldx_local.sql import scalar
from shieldx_local.state import ROOT

PGBIN = Path("/usr/lib/postgresql/15/bin")
RESULTS = ROOT / "bench" / "results.json"
PGBENCH_DIR = ROOT / "bench" / "pgbench"
WRK_DIR = ROOT / "bench" / "wrk"


# The settings that bound what a run can measure; recorded with every suite's figures.
SETTINGS = (
    "shared_buffers",
    "work_mem",
    "max_connections",
    "synchronous_commit",
    "synchronous_standby_names",
    "fsync",
    "full_page_writes",
    "wal_level",
    "wal_sync_method",
    "max_wal_size",
    "checkpoint_timeout",
    "shared_preload_libraries",
    "max_prepared_transactions",
)


def default_port() -> int:
    return int(os.environ.get("SHIELDX_PGPORT", "55432"))


class Harness:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        seconds: float = 10.0,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.host, self.port, self.seconds = host, port or default_port(), seconds
        self.progress = progress or (lambda message: None)
        self.cluster: dict[str, Any] | None = None

    def record_cluster(self, url: str) -> dict[str, Any]:
        """Remember the facts of the cluster a suite measures (by default: the local cluster)."""
        self.cluster = cluster_facts(url)
        return self.cluster

    # --- databases -------------------------------------------------------
    def admin_url(self, dbname: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{dbname}"

    def app_url(self, dbname: str) -> str:
        return f"postgresql://shieldx_app@{self.host}:{self.port}/{dbname}"

    def empty_database(self, suite: str) -> str:
        """A new, empty database for one suite; returns its superuser URL."""
        name = f"shieldx_bench_{suite}_{os.getpid()}"
        with psycopg.connect(self.admin_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url(name)

    def fresh_database(self, suite: str) -> str:
        """A new database migrated by this tree, for one suite; returns its superuser URL."""
        url = self.empty_database(suite)
        schema.migrate(url)
        return url

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # --- load generators -------------------------------------------------
    def pgbench(
        self,
        url: str,
        script: str | Path,
        clients: int = 8,
        seconds: float | None = None,
        defines: Mapping[str, object] | None = None,
    ) -> float:
        """TPS of a pgbench script (prepared statements, 2 threads)."""
        path = Path(script)
        if not path.is_absolute():
            path = PGBENCH_DIR / path
        cmd = [
            str(PGBIN / "pgbench"),
            "-n",
            "-M",
            "prepared",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(int(seconds or self.seconds)),
            "-f",
            str(path),
        ]
        for k, v in (defines or {}).items():
            cmd += ["-D", f"{k}={v}"]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
        failed = re.search(r"number of failed transactions: (\d+)", out)
        if failed and int(failed.group(1)):
            raise RuntimeError(f"pgbench {path.name}: {failed.group(1)} failed transactions\n{out}")
        tps = re.search(r"tps = ([\d.]+)", out)
        if tps is None:
            raise RuntimeError(f"pgbench {path.name}: no tps in its output\n{out}")
        return float(tps.group(1))

    def alternate(
        self,
        url: str,
        plan: list[tuple[str, str]],
        rounds: int = 2,
        clients: int = 8,
        defines: Mapping[str, object] | None = None,
    ) -> dict[str, float]:
        """Mean TPS per name of the pgbench scripts in plan, run in that order
        `rounds` times over, so drift on a shared machine hits every side alike."""
        tps: dict[str, list[float]] = {}
        for round_no in range(rounds):
            for name, script in plan:
                self.progress(f"pgbench {name} (round {round_no + 1})")
                tps.setdefault(name, []).append(self.pgbench(url, script, clients=clients, defines=defines))
        return {name: sum(v) / len(v) for name, v in tps.items()}

    @contextmanager
    def api_server(
        self, database_url: str, port: int = 8765, workers: int = 2, env: dict[str, str] | None = None
    ) -> Iterator[str]:
        """Run `shieldx serve` against a database; yields its base URL."""
        log_path = ROOT / ".local" / f"bench-api-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")  # one run's log per port, not an ever-growing file
        with private_api_server(database_url, log_path, workers=workers, env=env, port=port) as base:
            yield base

    def wrk(
        self,
        url: str,
        script: str | None = None,
        connections: int = 16,
        threads: int = 2,
        seconds: float | None = None,
        env: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, float]:
        """Requests/s and latency percentiles (ms) from wrk --latency."""
        cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds or self.seconds)}s", "--latency"]
        for name, value in (headers or {}).items():
            cmd += ["-H", f"{name}: {value}"]
        if script:
            cmd += ["-s", str(WRK_DIR / script)]
        out = subprocess.run(
            [*cmd, url], capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
        ).stdout
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise RuntimeError(f"wrk saw {non2xx.group(1)} error responses\n{out}")
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if rps is None:
            raise RuntimeError(f"wrk: no Requests/sec in its output\n{out}")
        result = {"rps": float(rps.group(1))}
        for pct in ("50", "90", "99"):
            m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
            if m:
                scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
                result[f"p{pct}_ms"] = float(m.group(1)) * scale
        return result


def seed_ledger(url: str, accounts: int) -> str:
    """Tenant `bench` with `accounts` funded accounts (ids 1..accounts), the
    baseline table `bench_bare` of the same size, updated the same way, and a
    consumer API key whose limits never refuse (a limiter's cost is measured,
    not its refusals). Returns the key."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT credits.create_tenant('bench', 'Bench')")
        conn.execute(
            """SELECT count(*) FROM generate_series(1, %s) g,
                        LATERAL credits.create_account('bench', 'a' || g, 'open-' || g) a,
                        LATERAL credits.grant_credits('bench', a.account_id, 1000000000000, 'seed-' || g) s""",
            (accounts,),
        )
        conn.execute(
            "CREATE TABLE public.bench_bare (id int PRIMARY KEY, balance bigint NOT NULL) WITH (fillfactor = 80)"
        )
        conn.execute("INSERT INTO public.bench_bare SELECT g, 1000000000000 FROM generate_series(1, %s) g", (accounts,))
        key: str = scalar(
            conn,
            "SELECT api_key FROM auth.create_key('bench', 'bench', ARRAY['consumer'], 'bench-key', 1000000, 1000000)",
        )
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return key


def machine_facts() -> dict[str, Any]:
    """Cores, memory and processor of the machine the benchmarks run on."""
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "cores": os.cpu_count(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "cpu": cpu,
        "kernel": platform.release(),
    }


def cluster_facts(url: str) -> dict[str, Any]:
    """Version and key settings of the PostgreSQL cluster behind `url`."""
    with psycopg.connect(url, autocommit=True) as conn:
        version = scalar(conn, "SELECT current_setting('server_version')")
        settings = conn.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s) ORDER BY name", (list(SETTINGS),)
        ).fetchall()
    return {"version": version, "settings": dict(settings)}


def load_results() -> dict[str, Any]:
    """bench/results.json as {"suites": {suite: {recorded_at, machine, postgresql, metrics}}}.

    A file in the older flat form (metric -> number) is read as one entry named
    "without_run_facts": figures measured before the facts of a run were kept."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if data and "suites" not in data:
        data = {"suites": {"without_run_facts": {"metrics": data}}}
    data.setdefault("suites", {})
    return data


def save_results(
    suite: str, metrics: dict[str, float], cluster: dict[str, Any] | None, seconds: float | None = None
) -> dict[str, Any]:
    """Record one suite's run in bench/results.json (atomic replace).

    The suite's entry is replaced as a whole; a metric it reports is dropped from
    any other entry (one metric, one place)."""
    data = load_results()
    suites: dict[str, Any] = data["suites"]
    for name, entry in list(suites.items()):
        entry["metrics"] = {k: v for k, v in entry.get("metrics", {}).items() if k not in metrics}
        if not entry["metrics"]:
            del suites[name]
    suites[suite] = {
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "seconds_per_run": seconds,
        "machine": machine_facts(),
        "postgresql": cluster,
        "metrics": {k: round(v, 4) for k, v in sorted(metrics.items())},
    }
    data["suites"] = dict(sorted(suites.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=RESULTS.parent, delete=False) as tmp:
        json.dump(data, tmp, indent=2)
        tmp.write("\n")
    os.replace(tmp.name, RESULTS)
    return data
