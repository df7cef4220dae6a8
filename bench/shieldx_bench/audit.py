"""Audit log: what auditing costs a consume, and how fast verification runs.

audit.consume_with_audit_tps         pgbench credits.consume, audit trigger enabled
audit.consume_without_audit_tps      the same, trigger disabled (same database, same run)
audit.consume_with_audit_vs_without  the ratio of the two
audit.bare_update_tps                a bare single-row UPDATE (as in the credits suite)
audit.consume_with_audit_vs_bare_update  sql.consume_vs_bare_update, measured WITH auditing on
audit.verify_entries               entries in the log when verification was timed (>= 1,000,000)
audit.verify_entries_per_s         audit.verify(): every chain, checkpoint, anchor, and the journal cross-check
audit.verify_chain_entries_per_s   audit.verify() without the journal cross-check (p_ledger = false)
audit.verify_journal_entries_per_s audit.verify() with the journal's content compared too (p_journal = true: the CLI's,
                                   the API's and the verify job's default)
audit.verify_incremental_s         audit.verify(incremental) after a checkpoint and 10,000 new entries
The three consume runs alternate (bare, on, off, off, on, bare), so drift on a
shared machine hits both sides alike. Verification is timed warm (second run).
"""

from __future__ import annotations

import time

import psycopg

from shieldx_local.sql import one

from .harness import Harness, seed_ledger

ACCOUNTS = 10_000
VERIFY_ACCOUNTS = 1_000
VERIFY_PER_ACCOUNT = 1_000


def _audit(url: str, on: bool) -> None:
    """Switch the ledger's audit triggers (audit_log, and audit_log_bulk where it exists) on or off."""
    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'credits.entries'::regclass AND tgname LIKE 'audit_log%'"
            )
        ]
        for name in names:
            conn.execute(f"ALTER TABLE credits.entries {'ENABLE ALWAYS' if on else 'DISABLE'} TRIGGER {name}")


def _fill(url: str, h: Harness) -> None:
    """VERIFY_ACCOUNTS x VERIFY_PER_ACCOUNT journal entries, each audited by the trigger."""
    with psycopg.connect(url, autocommit=True) as conn:
        # Bulk statements: one audit trigger call each (a baseline release ignores the setting).
        conn.execute("SET shieldx.ledger_bulk = 'on'")
        conn.execute("SELECT credits.create_tenant('vfy', 'Verify')")
        conn.execute(
            "SELECT count(*) FROM generate_series(1, %s) g, LATERAL credits.create_account('vfy', 'v' || g, "
            "'vo-' || g) a",
            (VERIFY_ACCOUNTS,),
        )
        ids = [
            r[0]
            for r in conn.execute("SELECT account_id FROM credits.accounts WHERE tenant_id = 'vfy' ORDER BY account_id")
        ]
        for i in range(0, len(ids), 50):
            h.progress(f"filling the log for verification ({i * VERIFY_PER_ACCOUNT:,} entries)")
            batch = ids[i : i + 50]
            conn.execute(
                """
                INSERT INTO credits.entries (account_id, tenant_id, seq, kind, amount, balance_after, idem_key, reason)
                SELECT a, 'vfy', s, 'grant', 1, s, 'v-' || a || '-' || s, 'bulk fill'
                  FROM unnest(%s::bigint[]) a, generate_series(1, %s) s ORDER BY a, s""",
                (batch, VERIFY_PER_ACCOUNT),
            )
            conn.execute(
                "UPDATE credits.accounts SET balance = %s, entry_seq = %s WHERE account_id = ANY(%s)",
                (VERIFY_PER_ACCOUNT, VERIFY_PER_ACCOUNT, batch),
            )
        conn.execute("VACUUM ANALYZE audit.log")
        conn.execute("VACUUM ANALYZE credits.entries")


def _timed(conn: psycopg.Connection, sql: str) -> tuple[float, tuple]:
    one(conn, sql)  # warm
    t = time.perf_counter()
    row = one(conn, sql)
    return time.perf_counter() - t, row


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("audit")
    try:
        seed_ledger(url, ACCOUNTS)
        d = {"naccounts": ACCOUNTS}
        tps: dict[str, list[float]] = {"bare": [], "on": [], "off": []}
        for name in ["bare", "on", "off", "off", "on", "bare"]:
            h.progress(f"pgbench {name}")
            if name != "bare":
                _audit(url, name == "on")
                tps[name].append(h.pgbench(url, "consume.sql", defines=d))
            else:
                tps[name].append(h.pgbench(url, "bare_update.sql", defines=d))
        _audit(url, True)
        bare, on, off = (sum(v) / len(v) for v in (tps["bare"], tps["on"], tps["off"]))
        out = {
            "audit.bare_update_tps": bare,
            "audit.consume_with_audit_tps": on,
            "audit.consume_without_audit_tps": off,
            "audit.consume_with_audit_vs_without": on / off,
            "audit.consume_with_audit_vs_bare_update": on / bare,
        }
    finally:
        h.drop_database(url)
    # Verification gets a database of its own: the unaudited half of the pgbench
    # runs above left journal entries without audit entries, which verify() reports.
    h.progress("seeding the verification database")
    url = h.fresh_database("audit_verify")
    try:
        _fill(url, h)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT * FROM audit.checkpoint('manual')")
            h.progress("timing audit.verify()")
            full_s, full = _timed(conn, "SELECT entries_checked, ok, problem FROM audit.verify(false, true)")
            chain_s, chain = _timed(conn, "SELECT entries_checked, ok, problem FROM audit.verify(false, false)")
            journal_s, journal = _timed(
                conn, "SELECT entries_checked, ok, problem FROM audit.verify(false, true, true)"
            )
            if not (full[1] and chain[1] and journal[1]):
                raise RuntimeError(f"verification failed on an untouched log: {full} {chain} {journal}")
            conn.execute("""INSERT INTO credits.entries
                                   (account_id, tenant_id, seq, kind, amount, balance_after, idem_key)
                            SELECT a.account_id, 'vfy', a.entry_seq + s, 'grant', 1, a.entry_seq + s,
                                   'inc-' || a.account_id || '-' || s
                              FROM credits.accounts a, generate_series(1, 10) s
                             WHERE a.tenant_id = 'vfy' ORDER BY a.account_id, s""")
            conn.execute(
                "UPDATE credits.accounts SET entry_seq = entry_seq + 10, balance = balance + 10 WHERE tenant_id = 'vfy'"
            )
            inc_s, _inc = _timed(conn, "SELECT entries_checked, ok FROM audit.verify(true, true)")
        out.update(
            {
                "audit.verify_entries": full[0],
                "audit.verify_entries_per_s": full[0] / full_s,
                "audit.verify_chain_entries_per_s": chain[0] / chain_s,
                "audit.verify_journal_entries_per_s": journal[0] / journal_s,
                "audit.verify_incremental_s": inc_s,
            }
        )
        return out
    finally:
        h.drop_database(url)
