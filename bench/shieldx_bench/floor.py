"""The floor under the ledger's ratios: the same writes with everything but the
bare minimum stripped away, next to the same bare UPDATE the other suites use.

floor.debit_vs_bare_update           a guarded debit UPDATE and its journal row in one
                                     statement (floor_debit.sql): no function, no foreign
                                     key, no CHECK, no idempotency check, no audit
floor.audited_debit_vs_bare_update   the same plus a minimal hash-chained audit row (one
                                     index probe for the previous link, one SHA-256)
floor.reserve_commit_vs_bare_update  a hold row + available balance, then its capture,
                                     debit and journal row (two statements, as the real
                                     pair): no function, no foreign key, no CHECK, no audit
These bound sql.consume_vs_bare_update, audit.consume_with_audit_vs_bare_update and
sql.reserve_commit_vs_bare_update from above: no design that writes a journal row
(and a chained audit entry) in the debit's own transaction can beat them on the
same machine and cluster. Each side runs twice, alternating, within one run.
"""

from __future__ import annotations

import psycopg

from .credits import ACCOUNTS
from .harness import Harness, seed_ledger

TABLES = """
CREATE TABLE public.floor_accounts (account_id bigint PRIMARY KEY, balance bigint NOT NULL,
                                    held bigint NOT NULL DEFAULT 0, entry_seq bigint NOT NULL DEFAULT 0)
  WITH (fillfactor = 80);
CREATE TABLE public.floor_entries (entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                   account_id bigint NOT NULL, seq bigint NOT NULL, amount bigint NOT NULL,
                                   balance_after bigint NOT NULL, idem_key text NOT NULL UNIQUE,
                                   UNIQUE (account_id, seq));
CREATE TABLE public.floor_log (account_id bigint, seq bigint, prev_hash bytea NOT NULL, hash bytea NOT NULL,
                               PRIMARY KEY (account_id, seq));
CREATE TABLE public.floor_holds (hold_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                 account_id bigint NOT NULL, amount bigint NOT NULL, idem_key text NOT NULL UNIQUE,
                                 status text NOT NULL DEFAULT 'active', expires_at timestamptz NOT NULL,
                                 resolved_at timestamptz);
"""


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("floor")
    try:
        seed_ledger(url, ACCOUNTS)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLES)
            conn.execute(
                "INSERT INTO public.floor_accounts (account_id, balance) "
                "SELECT g, 1000000000000 FROM generate_series(1, %s) g",
                (ACCOUNTS,),
            )
        d = {"naccounts": ACCOUNTS}
        names = {
            "bare": "bare_update.sql",
            "debit": "floor_debit.sql",
            "audited": "floor_audited_debit.sql",
            "reserve_commit": "floor_reserve_commit.sql",
        }
        # Some history in every table, then statistics: the steady state.
        h.progress("warming up")
        for name in ("audited", "reserve_commit"):
            h.pgbench(url, names[name], seconds=2, defines=d)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            conn.execute("CHECKPOINT")
        avg = h.alternate(
            url, [(n, names[n]) for n in ["bare", "debit", "audited", "bare", "reserve_commit"]], defines=d
        )
        return {
            "floor.bare_update_tps": avg["bare"],
            "floor.debit_vs_bare_update": avg["debit"] / avg["bare"],
            "floor.audited_debit_vs_bare_update": avg["audited"] / avg["bare"],
            "floor.reserve_commit_vs_bare_update": avg["reserve_commit"] / avg["bare"],
        }
    finally:
        h.drop_database(url)
