"""Shadow evaluation test helpers: an experiment, observations, the job."""

from __future__ import annotations

import itertools
import time
from typing import Any

import psycopg

_keys = itertools.count(1)


def setup_experiment(db: psycopg.Connection, name: str = "exp", **kw: Any) -> int:
    """A rule with two versions and a running experiment (min step duration 0 unless given)."""
    db.execute("SELECT shadow.create_rule('waf', 'WAF rules')")
    for v in (1, 2):
        db.execute("SELECT shadow.add_rule_version('waf', %s::jsonb, %s)", (f'{{"v": {v}}}', f"waf-v{v}"))
    kw.setdefault("p_min_step_duration", "0")
    named = "".join(f", {k} => %s" for k in kw)
    return db.execute(
        f"SELECT experiment_id FROM shadow.create_experiment(%s, 'waf', 1, 2, %s, 'alice'{named})",
        (name, f"create-{name}", *kw.values()),
    ).fetchone()["experiment_id"]


def send(
    db: psycopg.Connection,
    exp: int,
    arm: str,
    n: int,
    successes: int = 0,
    errors: int = 0,
    latency_ms: float | list[float] = 10.0,
    key: str | None = None,
) -> dict:
    """n observations of one arm: the first `successes` succeed, the first `errors` are errors."""
    lat = latency_ms if isinstance(latency_ms, list) else [latency_ms] * n
    return db.execute(
        "SELECT * FROM shadow.record_observation_arrays(%s, %s::text[], %s::boolean[], %s::boolean[], "
        "%s::float8[], %s)",
        (
            exp,
            [arm] * n,
            [i < successes for i in range(n)],
            [i < errors for i in range(n)],
            lat,
            key or f"batch-{next(_keys)}",
        ),
    ).fetchone()


def settle(db: psycopg.Connection, timeout: float = 60.0) -> None:
    """Fold until every committed observation is folded.

    The fold's horizon is the cluster's oldest running transaction, and other
    databases of the shared cluster run transactions too: wait them out.
    """
    deadline = time.monotonic() + timeout
    while True:
        db.execute("SELECT shadow._fold()")
        got = db.execute("""SELECT (SELECT count(*) FROM shadow.observations) AS raw,
                                   (SELECT coalesce(sum(n), 0) FROM shadow.arm_stats) AS folded""").fetchone()
        if got["raw"] == got["folded"]:
            return
        assert got["folded"] < got["raw"], got
        assert time.monotonic() < deadline, f"fold did not catch up: {got}"
        time.sleep(0.05)


def run_job(db: psycopg.Connection) -> dict:
    """Settle the fold, then run the job once (as pg_cron would)."""
    settle(db)
    return db.execute("SELECT shadow._job_evaluate() AS r").fetchone()["r"]


def experiment(db: psycopg.Connection, exp: int) -> dict:
    return db.execute("SELECT * FROM shadow.get_experiment(%s)", (exp,)).fetchone()


def events(db: psycopg.Connection, exp: int) -> list[dict]:
    return db.execute("SELECT * FROM shadow.list_events(%s)", (exp,)).fetchall()
