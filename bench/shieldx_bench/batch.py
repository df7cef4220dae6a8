"""Batches: many ledger operations per call, against a bare UPDATE and the single operations.

sql.batch_consume_items_per_s           consumes/s through credits.apply_batch: 100-item non-atomic batches of
                                        random accounts, 8 pgbench clients (batches/s x 100)
sql.batch_consume_items_vs_bare_update  that / the TPS of a bare single-row UPDATE transaction (target >= 1.0)
sql.batch_consume_vs_consume            that / the TPS of single credits.consume calls
sql.consume_vs_bare_update_here         single consume and transfer against the bare UPDATE, in this same run
sql.transfer_vs_bare_update_here        (the credits suite measures them too; these pair with the batch figures)
Each ratio's sides run back to back, alternating, twice within one run.
"""

from __future__ import annotations

from .harness import Harness, seed_ledger

ACCOUNTS = 10_000
BATCH = 100


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("batch")
    try:
        seed_ledger(url, ACCOUNTS)
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
        return {
            "sql.batch_consume_items_per_s": items,
            "sql.batch_consume_items_vs_bare_update": items / tps["bare"],
            "sql.batch_consume_vs_consume": items / tps["consume"],
            "sql.consume_vs_bare_update_here": tps["consume"] / tps["bare"],
            "sql.transfer_vs_bare_update_here": tps["transfer"] / tps["bare"],
        }
    finally:
        h.drop_database(url)
