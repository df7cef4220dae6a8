"""Shadow evaluation's decision rule: simulated error rates and the cost of P(B > A).

shadow.aa_*, shadow.power_*, shadow.median_*  the decision rule simulated with the
                               job's own statistics module (shieldx.cli.shadow.simulate):
                               A/A false positives, power, samples to a decision
shadow.p_win_ms_at_1e6         ms per P(B > A) at a million observations per arm, in PostgreSQL
shadow.simulate_seconds        wall time of the simulation
`shieldx shadow simulate` prints the same figures without recording them.
"""

from __future__ import annotations

import time

from shieldx.cli.shadow import simulate, time_p_win

from .harness import Harness


def run(h: Harness) -> dict[str, float]:
    started = time.monotonic()

    def tick(name: str, total: int):
        h.progress(f"{name} ({total:,})")
        return lambda: None

    metrics = simulate(aa_experiments=10000, looks=100, look_every=100, power_experiments=4000, progress=tick)
    metrics["shadow.simulate_seconds"] = time.monotonic() - started
    h.progress("P(B > A) at 10^6 per arm, in PostgreSQL")
    url = h.fresh_database("shadow_rule")
    try:
        metrics["shadow.p_win_ms_at_1e6"] = time_p_win(url)
    finally:
        h.drop_database(url)
    return metrics
