"""`shieldx shadow`: simulate the real decision rule.

The statistics live in one file, db/functions/shadow/stats.py. PostgreSQL runs
it from db/functions/shadow/stats.sql, which embeds that exact text (written by
`python db/embed_python.py`; a test fails when the two differ). `simulate`
imports the same file, so the simulated decision function is the job's.
"""

from __future__ import annotations

import importlib.util
import math
import time
from types import ModuleType

import click

from ..paths import FUNCTIONS_DIR
from .common import LOCAL_PORT

STATS_PY = FUNCTIONS_DIR / "shadow" / "stats.py"


def load_stats() -> ModuleType:
    """db/functions/shadow/stats.py as a module (the code PL/Python runs)."""
    spec = importlib.util.spec_from_file_location("shadow_stats", STATS_PY)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- simulation ---------------------------------------------------------------
# A/A grid: baselines x challenger allocations x look spacings. A look comes every
# `look_every` new CHALLENGER observations (the champion's in proportion to the
# split); fixed splits run until the challenger has AA_HORIZON observations. The
# canary plans follow the experiments' defaults: steps 1, 5, 25, 50, 100% of
# traffic, each advancing after CANARY_MIN_OBS_PER_STEP challenger observations
# ("canary"), or 20 times as many ("canary-slow", 100,000 challenger observations);
# the plan ends after its last step.
AA_BASELINES = (0.001, 0.01, 0.10, 0.50)
AA_SHARES = ("1%", "5%", "50%", "50%-coin", "canary", "canary-slow")
AA_LOOK_EVERY = (10, 100)
AA_HORIZON = 100_000
CANARY_STEPS = (1, 5, 25, 50, 100)
CANARY_MIN_OBS_PER_STEP = 1000
# Power: equal arms, a look every `look_every` observations per arm, up to the horizon.
POWER_CASES = (
    ("shadow.power_10pct_to_12pct_at_10k", 0.10, 0.12, 10_000, 1),
    ("shadow.power_1pct_to_1p2pct_at_200k", 0.01, 0.012, 200_000, 1),
    ("shadow.power_50pct_to_52pct_at_20k", 0.50, 0.52, 20_000, 1),
    ("shadow.rollback_10pct_to_8pct_at_10k", 0.10, 0.08, 10_000, -1),
)


def _schedule(share: str, look_every: int) -> list[tuple[int, int]]:
    """(new champion, new challenger) observations per look for an allocation of the A/A grid."""

    def split(pct: int) -> tuple[int, int]:
        return look_every * (100 - pct) // pct, look_every

    if share.endswith("%"):
        return [split(int(share[:-1]))] * (AA_HORIZON // look_every)
    if share.endswith("%-coin"):  # the same totals per look; run_experiments splits them by coin flips
        return _schedule(share.removesuffix("-coin"), look_every)
    per_step = CANARY_MIN_OBS_PER_STEP * (20 if share == "canary-slow" else 1)
    return [split(pct) for pct in CANARY_STEPS for _ in range(per_step // look_every)]


def run_experiments(
    decide_vec, rng, p_a: float, p_b: float, experiments: int, schedule, coin: float | None = None, chunk: int = 200
):
    """Monitor simulated experiments with the real decision at every look (vectorised over experiments).

    schedule: [(new champion, new challenger observations)] per look. With `coin`, each look's
    observations are assigned one by one, to the challenger with probability `coin` (the split then
    varies by look and by experiment). Returns numpy arrays: decision code per experiment (1 better,
    -1 worse, 0 none) and challenger observations at the decision (at the end when none).
    """
    import numpy as np

    sizes = np.array(schedule, dtype=np.int64)
    code = np.zeros(experiments, dtype=np.int64)
    at = np.zeros(experiments, dtype=np.int64)
    active = np.arange(experiments)
    counts = np.zeros((4, experiments), dtype=np.int64)  # n_a, s_a, n_b, s_b
    for lo in range(0, len(sizes), chunk):
        hi = min(lo + chunk, len(sizes))
        if active.size == 0:
            break
        shape = (active.size, hi - lo)
        if coin is None:
            d_a, d_b = np.broadcast_to(sizes[lo:hi, 0], shape), np.broadcast_to(sizes[lo:hi, 1], shape)
        else:
            d_b = rng.binomial(sizes[lo:hi].sum(axis=1), coin, size=shape)
            d_a = sizes[lo:hi].sum(axis=1) - d_b
        n_a = d_a.cumsum(axis=1) + counts[0, active, None]
        s_a = rng.binomial(d_a, p_a, size=shape).cumsum(axis=1) + counts[1, active, None]
        n_b = d_b.cumsum(axis=1) + counts[2, active, None]
        s_b = rng.binomial(d_b, p_b, size=shape).cumsum(axis=1) + counts[3, active, None]
        open_ = np.ones(active.size, dtype=bool)
        for j in range(hi - lo):
            if coin is None:  # the same counts in every experiment: pass scalars (cheaper, same values)
                d = decide_vec(float(n_a[0, j]), s_a[:, j], float(n_b[0, j]), s_b[:, j])
            else:
                d = decide_vec(n_a[:, j], s_a[:, j], n_b[:, j], s_b[:, j])
            hit = open_ & (d != 0)
            code[active[hit]] = d[hit]
            at[active[hit]] = n_b[hit, j]
            open_ &= ~hit
        counts[:, active] = n_a[:, -1], s_a[:, -1], n_b[:, -1], s_b[:, -1]
        at[active[open_]] = n_b[open_, -1]
        active = active[open_]
    return code, at


def clopper_pearson_upper(k: int, n: int, level: float = 0.95) -> float:
    """One end of the two-sided Clopper-Pearson interval: p with P(Binomial(n, p) <= k) = (1 - level) / 2."""
    if k >= n:
        return 1.0
    target = (1.0 - level) / 2.0

    def cdf(p: float) -> float:
        lp, lq = math.log(p), math.log1p(-p)
        return math.fsum(
            math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
            for i in range(k + 1)
        )

    lo, hi = k / n, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > target else (lo, mid)
    return hi


def _pct(x: float) -> str:
    return f"{x * 100:g}".replace(".", "p") + "pct"  # 0.001 -> 0p1pct


def _share_key(share: str) -> str:
    return share.replace("%", "pct")


def _rng(seed: int, name: str):
    """The generator of one simulated cell: seeded by (seed, CRC-32 of the cell's name), so a cell's
    figures do not depend on which other cells run."""
    import zlib

    import numpy as np

    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def simulate(
    aa_experiments: int = 10_000,
    power_experiments: int = 4000,
    seed: int = 20261129,
    baselines=AA_BASELINES,
    shares=AA_SHARES,
    look_every=AA_LOOK_EVERY,
    power_look_every=(10, 100),
    progress=None,
) -> dict[str, float]:
    """The A/A grid and the power cases, with the job's decision function."""
    import numpy as np

    stats = load_stats()
    tick = progress or (lambda name, total: lambda: None)
    out: dict[str, float] = {"shadow.seed": float(seed), "shadow.aa_experiments": float(aa_experiments)}
    worst = (-1, "")
    for p in baselines:
        for share in shares:
            for every in look_every:
                key = f"shadow.aa_fpr.b{_pct(p)}.{_share_key(share)}.every{every}"
                done = tick(f"A/A {p:.1%}, {share}, a look every {every}", 1)
                coin = int(share.removesuffix("%-coin")) / 100 if share.endswith("%-coin") else None
                code, _ = run_experiments(
                    stats.sequential_decision_vec, _rng(seed, key), p, p, aa_experiments, _schedule(share, every), coin
                )
                k = int(np.count_nonzero(code))
                out[key] = k / aa_experiments
                out[key.replace("aa_fpr", "aa_false_better")] = int(np.count_nonzero(code == 1)) / aa_experiments
                if k > worst[0]:
                    worst = (k, key)
                done()
    if worst[0] >= 0:
        out["shadow.aa_fpr_max"] = worst[0] / aa_experiments
        out["shadow.aa_fpr_max_upper95"] = clopper_pearson_upper(worst[0], aa_experiments)
    for every in power_look_every:
        suffix = "" if every == power_look_every[0] else f".every{every}"
        for key, p_a, p_b, horizon, want in POWER_CASES:
            done = tick(f"{key}, a look every {every}", 1)
            code, at = run_experiments(
                stats.sequential_decision_vec,
                _rng(seed, key + suffix),
                p_a,
                p_b,
                power_experiments,
                [(every, every)] * (horizon // every),
            )
            name = key.removeprefix("shadow.power_").removeprefix("shadow.")
            out[key + suffix] = float(np.mean(code == want))
            med = float(np.median(np.where(code != 0, at, np.iinfo(np.int64).max)))
            out[f"shadow.median_n_{name}{suffix}"] = med if med <= horizon else float("inf")
            out[f"shadow.wrong_{name}{suffix}"] = float(np.mean(code == -want))
            done()
    # Reference: the likelihood ratio of the exact alternative alone (all the prior on it), same bound.
    for key, p_a, p_b, horizon, want in POWER_CASES[:3:2]:
        every = power_look_every[0] if power_look_every else 100
        done = tick(f"{key}: the exact alternative alone", 1)

        def alone(n_a, s_a, n_b, s_b, p_a=p_a, p_b=p_b):
            e = stats.log_e_value(n_a, s_a, n_b, s_b, ((1.0, p_a, p_b),), np.log, np.exp, np.maximum)
            return np.where(e >= stats.LOG_BOUND_BETTER, 1, 0)

        code, _ = run_experiments(
            alone, _rng(seed, key + ".alone"), p_a, p_b, power_experiments, [(every, every)] * (horizon // every)
        )
        out[key.replace("power_", "power_alone_")] = float(np.mean(code == want))
        done()
    out["shadow.power_experiments"] = float(power_experiments)
    return out


def worst_aa_cell(metrics: dict[str, float]) -> str:
    """The A/A cell with the most false positives (the first such cell of the grid)."""
    cells = [k for k in metrics if k.startswith("shadow.aa_fpr.")]
    return max(cells, key=lambda k: metrics[k]) if cells else ""


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
            # The database runs this very stats.py (db/embed_python.py embeds it verbatim).
            current = conn.execute("SELECT shadow._stats_source() = %s", (STATS_PY.read_text(),)).fetchone() == (True,)
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


@click.group(help="Shadow evaluation: simulate the decision rule.")
def cli() -> None:
    pass


@cli.command(
    "simulate",
    help="Simulate the real decision rule (A/A false positives over baselines, allocations and look spacings; "
    "power and samples to a decision) and time P(B > A) at 10^6 per arm. "
    "`make bench` records the same figures in bench/results.json.",
)
@click.option("--aa-experiments", default=10000, show_default=True, help="Experiments per A/A cell.")
@click.option("--power-experiments", default=4000, show_default=True)
@click.option("--seed", default=20261129, show_default=True)
@click.option("--dsn", default=None, help="Database for timing P(B > A) (default: the local shieldx database).")
@click.option("--port", default=LOCAL_PORT, show_default=True, help="Local cluster port (for a scratch database).")
def simulate_cmd(aa_experiments: int, power_experiments: int, seed: int, dsn: str | None, port: int) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .common import admin_url

    console = Console()
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:

        def tick(name: str, total: int):
            task = bar.add_task(name, total=total)
            return lambda: bar.advance(task)

        metrics = simulate(aa_experiments, power_experiments, seed, progress=tick)
        task = bar.add_task("P(B > A) at 10^6 per arm, in PostgreSQL", total=1)
        metrics["shadow.p_win_ms_at_1e6"] = _time_p_win_somewhere(dsn or admin_url(), port)
        bar.advance(task)
    metrics["shadow.simulate_seconds"] = time.monotonic() - started
    print_tables(console, metrics)


def print_tables(console, metrics: dict[str, float]) -> None:
    """The A/A grid (false positives per cell, better + worse) and the other figures."""
    from rich.table import Table

    grid = Table(title=f"A/A false positives ({metrics['shadow.aa_experiments']:,.0f} experiments per cell)")
    grid.add_column("baseline")
    grid.add_column("challenger share")
    for every in AA_LOOK_EVERY:
        grid.add_column(f"look every {every}", justify="right")
    for p in AA_BASELINES:
        for share in AA_SHARES:
            keys = [f"shadow.aa_fpr.b{_pct(p)}.{_share_key(share)}.every{e}" for e in AA_LOOK_EVERY]
            if all(k in metrics for k in keys):
                grid.add_row(f"{p:.1%}", share, *(f"{metrics[k]:.2%}" for k in keys))
    console.print(grid)
    table = Table(title="shadow simulate")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in sorted(metrics.items()):
        if not k.startswith(("shadow.aa_fpr.", "shadow.aa_false_better.")):
            table.add_row(k, f"{v:,.5g}")
    table.add_row("worst A/A cell", worst_aa_cell(metrics).removeprefix("shadow.aa_fpr."))
    console.print(table)
