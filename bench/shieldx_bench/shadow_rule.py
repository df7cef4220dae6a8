"""Shadow evaluation's decision rule: simulated error rates and the cost of P(B > A).

The decision rule simulated with the job's own statistics module (shieldx.cli.shadow.simulate),
10,000 experiments per A/A cell, seed in shadow.seed (each cell seeded by [seed, cell number]):

shadow.aa_fpr.<baseline>.<share>.every<L>  A/A false positives (better + worse) per cell: baselines
                               0.1/1/10/50%, challenger share 1/5/50% or a canary plan, a look every
                               L challenger observations (fixed shares up to 100,000 of them)
shadow.aa_false_better.<cell>  the "better" part of the same
shadow.aa_fpr_max              the worst cell; shadow.aa_fpr_max_upper95 its Clopper-Pearson 95% bound
shadow.power_*, shadow.rollback_10pct_to_8pct_at_10k   the right decision within the horizon, equal
                               arms, a look every 10 observations per arm (".every100": every 100)
shadow.median_n_*              challenger observations at the decision (median; inf when most never decide)
shadow.wrong_*                 the opposite decision
shadow.p_win_ms_at_1e6         ms per P(B > A) at a million observations per arm, in PostgreSQL
shadow.simulate_seconds        wall time of the simulation
`shieldx shadow simulate` prints the same figures without recording them.
"""

from __future__ import annotations

import time

from shieldx.cli.shadow import simulate, time_p_win, worst_aa_cell

from .harness import Harness


def run(h: Harness) -> dict[str, float]:
    started = time.monotonic()

    def tick(name: str, total: int):
        h.progress(name)
        return lambda: None

    metrics = simulate(aa_experiments=10000, power_experiments=4000, progress=tick)
    metrics["shadow.simulate_seconds"] = time.monotonic() - started
    h.progress(f"worst A/A cell: {worst_aa_cell(metrics)} = {metrics['shadow.aa_fpr_max']:.4f}")
    h.progress("P(B > A) at 10^6 per arm, in PostgreSQL")
    url = h.fresh_database("shadow_rule")
    try:
        metrics["shadow.p_win_ms_at_1e6"] = time_p_win(url)
    finally:
        h.drop_database(url)
    return metrics
