"""This tree against a baseline release, side by side in one cluster and one run.

The baseline is a git revision (`SHIELDX_BENCH_BASELINE`, default BASELINE_REV:
the release before batches, the statement-level ledger audit trigger and the
audit signer). Its own migrations and function files, taken from `git archive`
and applied by its own `shieldx.schema.migrate`, install it into a second
database of the same cluster, so both sides share the server, its settings and
the cores. Every pair of figures runs back to back, the order swapped each
round, and a ratio is the mean of the paired ratios.

baseline.consume_head_vs_base          pgbench credits.consume TPS, this tree / the baseline (target >= 0.95)
baseline.transfer_head_vs_base         the same for credits.transfer (target >= 0.95)
baseline.consume_head_vs_base_min/_max the lowest and highest of the rounds' ratios (and for transfer)
baseline.bare_head_vs_base             a bare single-row UPDATE in each database: the control (expect ~1.0)
baseline.consume_vs_bare_update_head   credits.consume / bare UPDATE, this tree (and _base: the baseline)
baseline.transfer_vs_bare_update_head  credits.transfer / bare UPDATE, this tree (and _base)
baseline.audit_with_vs_without_head    consume TPS with the ledger's audit trigger on / off, this tree (and _base)
baseline.audit_with_vs_without_head_vs_base  the two ratios' ratio (target >= 0.95)
baseline.verify_entries_per_s_head     audit.verify(false, true) on 1,000,000 entries, this tree (and _base)
baseline.verify_head_vs_base           the two rates' ratio (target >= 0.95)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from shieldx_local.state import ROOT

from .audit import _audit, _fill, _timed
from .harness import Harness, seed_ledger

BASELINE_REV = "7b07906"
ACCOUNTS = 10_000
ROUNDS = 3  # verification rounds
PAIRED_ROUNDS = 6  # pgbench rounds per script: one round's ratio moves by a few percent on a shared machine


def _install_baseline(h: Harness, rev: str, suite: str) -> str:
    """A database of the local cluster migrated by the baseline revision's own code; returns its superuser URL."""
    url = h.empty_database(suite)
    with tempfile.TemporaryDirectory(prefix="shieldx-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev, "api", "db"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHIELDX_ROOT")}
        env["SHIELDX_ROOT"] = tmp
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, sys.argv[1]); from shieldx import schema; schema.migrate(sys.argv[2])",
                str(Path(tmp) / "api"),
                url,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
    return url


def _paired(h: Harness, urls: dict[str, str], script: str, defines: dict[str, object]) -> dict[str, float]:
    """TPS of one script in each database, PAIRED_ROUNDS times, the order swapped each round; mean per side,
    the mean of the per-round head/base ratios, and the lowest and highest of them."""
    tps: dict[str, list[float]] = {"head": [], "base": []}
    for r in range(PAIRED_ROUNDS):
        for side in ("head", "base") if r % 2 == 0 else ("base", "head"):
            h.progress(f"pgbench {script} on {side} (round {r + 1})")
            tps[side].append(h.pgbench(urls[side], script, defines=defines))
    ratios = [a / b for a, b in zip(tps["head"], tps["base"], strict=True)]
    return {
        "head": sum(tps["head"]) / PAIRED_ROUNDS,
        "base": sum(tps["base"]) / PAIRED_ROUNDS,
        "ratio": sum(ratios) / PAIRED_ROUNDS,
        "min": min(ratios),
        "max": max(ratios),
    }


def run(h: Harness) -> dict[str, float]:
    rev = os.environ.get("SHIELDX_BENCH_BASELINE", BASELINE_REV)
    out: dict[str, float] = {}
    h.progress(f"installing the baseline {rev}")
    urls = {"head": h.fresh_database("baseline_head"), "base": _install_baseline(h, rev, "baseline_base")}
    try:
        h.progress("seeding both")
        for url in urls.values():
            seed_ledger(url, ACCOUNTS)
        d: dict[str, object] = {"naccounts": ACCOUNTS}
        bare = _paired(h, urls, "bare_update.sql", d)
        consume = _paired(h, urls, "consume.sql", d)
        transfer = _paired(h, urls, "transfer.sql", d)
        out.update(
            {
                "baseline.bare_head_vs_base": bare["ratio"],
                "baseline.consume_head_vs_base": consume["ratio"],
                "baseline.transfer_head_vs_base": transfer["ratio"],
                "baseline.consume_head_vs_base_min": consume["min"],
                "baseline.consume_head_vs_base_max": consume["max"],
                "baseline.transfer_head_vs_base_min": transfer["min"],
                "baseline.transfer_head_vs_base_max": transfer["max"],
                "baseline.consume_vs_bare_update_head": consume["head"] / bare["head"],
                "baseline.consume_vs_bare_update_base": consume["base"] / bare["base"],
                "baseline.transfer_vs_bare_update_head": transfer["head"] / bare["head"],
                "baseline.transfer_vs_bare_update_base": transfer["base"] / bare["base"],
            }
        )
        # Auditing's cost to a consume in each: trigger off, then on again (the on side is the consume above).
        off: dict[str, list[float]] = {"head": [], "base": []}
        on: dict[str, list[float]] = {"head": [], "base": []}
        for r in range(2):
            for side in ("head", "base") if r == 0 else ("base", "head"):
                for enabled in (False, True) if r == 0 else (True, False):
                    h.progress(f"consume on {side}, audit {'on' if enabled else 'off'} (round {r + 1})")
                    _audit(urls[side], enabled)
                    (on if enabled else off)[side].append(h.pgbench(urls[side], "consume.sql", defines=d))
                _audit(urls[side], True)
        with_vs_without = {s: sum(on[s]) / sum(off[s]) for s in ("head", "base")}
        out.update(
            {
                "baseline.audit_with_vs_without_head": with_vs_without["head"],
                "baseline.audit_with_vs_without_base": with_vs_without["base"],
                "baseline.audit_with_vs_without_head_vs_base": with_vs_without["head"] / with_vs_without["base"],
            }
        )
    finally:
        for url in urls.values():
            h.drop_database(url)
    # Verification: a database each, the same million entries, timed warm, alternating.
    urls = {"head": h.fresh_database("baseline_vhead"), "base": _install_baseline(h, rev, "baseline_vbase")}
    try:
        for side, url in urls.items():
            h.progress(f"filling the {side} log")
            _fill(url, h)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT * FROM audit.checkpoint('manual')")
        rates: dict[str, list[float]] = {"head": [], "base": []}
        entries = 0
        for r in range(ROUNDS):
            for side in ("head", "base") if r % 2 == 0 else ("base", "head"):
                h.progress(f"audit.verify() on {side} (round {r + 1})")
                with psycopg.connect(urls[side], autocommit=True) as conn:
                    seconds, row = _timed(conn, "SELECT entries_checked, ok, problem FROM audit.verify(false, true)")
                if not row[1]:
                    raise RuntimeError(f"verification failed on an untouched {side} log: {row}")
                entries = row[0]
                rates[side].append(row[0] / seconds)
        ratios = [a / b for a, b in zip(rates["head"], rates["base"], strict=True)]
        out.update(
            {
                "baseline.verify_entries": float(entries),
                "baseline.verify_entries_per_s_head": sum(rates["head"]) / ROUNDS,
                "baseline.verify_entries_per_s_base": sum(rates["base"]) / ROUNDS,
                "baseline.verify_head_vs_base": sum(ratios) / ROUNDS,
            }
        )
    finally:
        for url in urls.values():
            h.drop_database(url)
    return out
