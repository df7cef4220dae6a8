"""`shieldx shadow`: simulate the real decision rule; regenerate stats.sql.

The statistics live in one file, db/functions/shadow/stats.py. PostgreSQL runs
it from db/functions/shadow/stats.sql, which embeds that exact text (written by
`shieldx shadow gen-sql`; a test fails when the two differ). `simulate`
imports the same file, so the simulated decision function is the job's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import statistics
import time
from types import ModuleType

import click

from ..paths import FUNCTIONS_DIR
from .common import LOCAL_PORT

STATS_PY = FUNCTIONS_DIR / "shadow" / "stats.py"
STATS_SQL = FUNCTIONS_DIR / "shadow" / "stats.sql"


def load_stats() -> ModuleType:
    """db/functions/shadow/stats.py as a module (the code PL/Python runs)."""
    spec = importlib.util.spec_from_file_location("shadow_stats", STATS_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stats_version(source: str | None = None) -> str:
    src = STATS_PY.read_text() if source is None else source
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def stats_sql(source: str | None = None) -> str:
    """The text of stats.sql for the current stats.py."""
    src = STATS_PY.read_text() if source is None else source
    if "$py$" in src or "$fn$" in src:
        raise ValueError("stats.py must not contain $py$ or $fn$ (they quote it in SQL)")
    version = stats_version(src)
    return (
        "-- GENERATED from stats.py by `shieldx shadow gen-sql`: edit stats.py, then regenerate.\n"
        "-- (db/tests/test_shadow_math.py fails when this file and stats.py differ.)\n"
        "-- PL/Python functions exec _stats_source() once per backend and reload it\n"
        "-- when _stats_version() changes.\n"
        "CREATE OR REPLACE FUNCTION shadow._stats_version()\n"
        "RETURNS text LANGUAGE sql IMMUTABLE\n"
        f"AS $fn$ SELECT '{version}'::text $fn$;\n\n"
        "CREATE OR REPLACE FUNCTION shadow._stats_source()\n"
        "RETURNS text LANGUAGE sql IMMUTABLE\n"
        f"AS $fn$ SELECT $py${src}$py$::text $fn$;\n"
    )


# --- simulation ---------------------------------------------------------------
def _run_experiments(
    decide, rng, p_a: float, p_b: float, experiments: int, looks: int, per_look, on_experiment=None
) -> list[tuple[str, int]]:
    """Monitor `experiments` simulated experiments, calling the real decision at every look.

    per_look(k) -> (new champion observations, new challenger observations) at look k.
    Returns per experiment (decision, challenger observations at the decision or at the end).
    """
    sizes = [per_look(k) for k in range(looks)]
    inc_a = rng.binomial([s[0] for s in sizes], p_a, size=(experiments, looks)).cumsum(axis=1)
    inc_b = rng.binomial([s[1] for s in sizes], p_b, size=(experiments, looks)).cumsum(axis=1)
    n_a, n_b = [], []
    ta = tb = 0
    for s in sizes:
        ta += s[0]
        tb += s[1]
        n_a.append(ta)
        n_b.append(tb)
    out = []
    for i in range(experiments):
        sa, sb = inc_a[i].tolist(), inc_b[i].tolist()
        result = ("continue", n_b[-1])
        for k in range(looks):
            d = decide(n_a[k], sa[k], n_b[k], sb[k])["decision"]
            if d != "continue":
                result = (d, n_b[k])
                break
        out.append(result)
        if on_experiment:
            on_experiment()
    return out


def simulate(
    aa_experiments: int = 4000,
    looks: int = 100,
    look_every: int = 100,
    power_experiments: int = 4000,
    seed: int = 20261129,
    progress=None,
) -> dict[str, float]:
    import numpy as np

    stats = load_stats()
    rng = np.random.default_rng(seed)
    tick = progress or (lambda name, total: lambda: None)
    # A/A, balanced: 10% vs 10%, a look every `look_every` observations per arm.
    aa = _run_experiments(
        stats.sequential_decision,
        rng,
        0.10,
        0.10,
        aa_experiments,
        looks,
        lambda k: (look_every, look_every),
        tick("A/A 10% vs 10%", aa_experiments),
    )
    # A/A as the canary sees it: 1000 requests a look, challenger at 1, 5, 25, 50% in turn.
    plan = [1, 5, 25, 50]

    def canary(k: int) -> tuple[int, int]:
        w = plan[min(k * len(plan) // looks, len(plan) - 1)]
        return 1000 - 10 * w, 10 * w

    aa_canary = _run_experiments(
        stats.sequential_decision,
        rng,
        0.10,
        0.10,
        aa_experiments,
        looks,
        canary,
        tick("A/A canary allocation", aa_experiments),
    )
    # Power: 10% -> 12%, within 10,000 observations per arm.
    horizon_looks = 10_000 // look_every
    power = _run_experiments(
        stats.sequential_decision,
        rng,
        0.10,
        0.12,
        power_experiments,
        horizon_looks,
        lambda k: (look_every, look_every),
        tick("10% -> 12%", power_experiments),
    )
    wins = [n for d, n in power if d == "challenger_better"]
    decided = sorted(n if d != "continue" else float("inf") for d, n in power)
    return {
        "shadow.aa_false_positive_rate": sum(d != "continue" for d, _ in aa) / len(aa),
        "shadow.aa_false_better_rate": sum(d == "challenger_better" for d, _ in aa) / len(aa),
        "shadow.aa_false_positive_rate_canary": sum(d != "continue" for d, _ in aa_canary) / len(aa_canary),
        "shadow.aa_experiments": float(aa_experiments),
        "shadow.aa_looks": float(looks),
        "shadow.power_10pct_to_12pct_at_10k": len(wins) / len(power),
        "shadow.median_samples_to_decision": float(statistics.median(decided)),
        "shadow.median_samples_to_win": float(statistics.median(wins)) if wins else float("nan"),
    }


def time_p_win(dsn: str, calls: int = 200) -> float:
    """Milliseconds per P(B > A) at a million observations per arm, in PostgreSQL (warm backend)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT shadow.prob_challenger_better(100001, 900001, 100201, 899801)")  # load + import
        row = conn.execute(
            """
            WITH t0 AS (SELECT clock_timestamp() AS t),
                 run AS (SELECT sum(shadow.prob_challenger_better(100001, 900001, 100001 + g, 900001 - g)) AS s
                           FROM generate_series(1, %s) g)
            SELECT extract(epoch FROM clock_timestamp() - t0.t) * 1000 / %s FROM t0, run WHERE run.s IS NOT NULL
        """,
            (calls, calls),
        ).fetchone()
    assert row is not None  # an aggregate always returns one row
    return float(row[0])


def _time_p_win_somewhere(dsn: str, port: int) -> float:
    """Time in `dsn` if its functions are current, else in a scratch database migrated from this tree."""
    import os

    import psycopg

    from .. import schema

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            current = conn.execute("SELECT shadow._stats_version() = %s", (stats_version(),)).fetchone() == (True,)
    except psycopg.Error:
        current = False
    if current:
        return time_p_win(dsn)
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    name = f"shieldx_simulate_{os.getpid()}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        schema.migrate(url)
        return time_p_win(url)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@click.group(help="Shadow evaluation: simulate the decision rule, regenerate stats.sql.")
def cli() -> None:
    pass


@cli.command("gen-sql", help="Write db/functions/shadow/stats.sql from stats.py.")
def gen_sql() -> None:
    STATS_SQL.write_text(stats_sql())
    click.echo(f"wrote {STATS_SQL}")


@cli.command(
    "simulate",
    help="Simulate the real decision rule (A/A false positives, power, samples to decision) "
    "and time P(B > A) at 10^6 per arm. `make bench` records the same figures in bench/results.json.",
)
@click.option("--aa-experiments", default=10000, show_default=True)
@click.option("--looks", default=100, show_default=True, help="Looks per A/A experiment.")
@click.option("--look-every", default=100, show_default=True, help="Observations per arm between looks.")
@click.option("--power-experiments", default=4000, show_default=True)
@click.option("--seed", default=20261129, show_default=True)
@click.option("--dsn", default=None, help="Database for timing P(B > A) (default: the local shieldx database).")
@click.option("--port", default=LOCAL_PORT, show_default=True, help="Local cluster port (for a scratch database).")
def simulate_cmd(
    aa_experiments: int,
    looks: int,
    look_every: int,
    power_experiments: int,
    seed: int,
    dsn: str | None,
    port: int,
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from .common import admin_url

    console = Console()
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:

        def tick(name: str, total: int):
            task = bar.add_task(name, total=total)
            return lambda: bar.advance(task)

        metrics = simulate(aa_experiments, looks, look_every, power_experiments, seed, tick)
        task = bar.add_task("P(B > A) at 10^6 per arm, in PostgreSQL", total=1)
        metrics["shadow.p_win_ms_at_1e6"] = _time_p_win_somewhere(dsn or admin_url(), port)
        bar.advance(task)
    metrics["shadow.simulate_seconds"] = time.monotonic() - started
    table = Table(title="shadow simulate")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(metrics.items()):
        table.add_row(k, f"{v:,.5g}")
    console.print(table)
