"""Shadow evaluation: batch ingestion, folding, the job, the picture.

shadow.ingest_obs_per_s        observations/s through shadow.record_observation_arrays (pgbench, batches of 500)
shadow.ingest_vs_bare_insert   ... relative to INSERT ... SELECT of the same rows into a bare table
                               (same batch size, one index): the price of validation, idempotency, FKs, the xid8 index
shadow.fold_obs_per_s          observations/s folded by one shadow._fold() over the whole backlog
shadow.job_cold_ms             shadow._job_evaluate() over 20 running experiments (one holds the whole backlog)
                               in a new backend, so it pays the scipy import
shadow.job_warm_ms             the same again in the same backend
shadow.svg_ms                  shadow.posterior_svg() on a warm backend (the API's request path)
The decision rule's error rates and P(B > A) timing come from the shadow_rule suite.
"""

from __future__ import annotations

import time

import psycopg

from shieldx_local.sql import scalar

from .harness import Harness

BATCH = 500
EXPERIMENTS = 20


def _seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT shadow.create_rule('bench', 'Bench rule')")
        conn.execute("SELECT shadow.add_rule_version('bench', '{\"v\": 1}', 'v1')")
        conn.execute("SELECT shadow.add_rule_version('bench', '{\"v\": 2}', 'v2')")
        for i in range(1, EXPERIMENTS + 1):
            conn.execute(
                "SELECT shadow.create_experiment(%s, 'bench', 1, 2, %s, 'bench', p_min_obs_per_step => 10000000)",
                (f"bench-{i}", f"exp-{i}"),
            )
        conn.execute("CREATE SEQUENCE public.bench_keys")
        conn.execute("""CREATE TABLE public.bench_obs (obs_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                          experiment_id bigint NOT NULL, arm text NOT NULL, success boolean NOT NULL,
                          error boolean NOT NULL, latency_ms float8 NOT NULL)""")
        conn.execute("VACUUM ANALYZE")


def run(h: Harness) -> dict[str, float]:
    h.progress("seeding")
    url = h.fresh_database("shadow")
    try:
        _seed(url)
        d = {"batch": BATCH}
        tps = h.alternate(
            url, [("bare", "shadow_bare_insert.sql"), ("shadow", "shadow_ingest.sql")], clients=4, defines=d
        )
        bare = tps["bare"] * BATCH
        ingest = tps["shadow"] * BATCH
        out = {"shadow.ingest_obs_per_s": ingest, "shadow.ingest_vs_bare_insert": ingest / bare}
        with psycopg.connect(url, autocommit=True) as conn:
            backlog = scalar(conn, "SELECT count(*) FROM shadow.observations")
            h.progress(f"folding {backlog:,} observations")
            t = time.perf_counter()
            folded = scalar(conn, "SELECT shadow._fold()")
            out["shadow.fold_obs_per_s"] = folded / (time.perf_counter() - t)
        with psycopg.connect(url, autocommit=True) as conn:
            h.progress("the job, cold and warm")
            t = time.perf_counter()
            conn.execute("SELECT shadow._job_evaluate()")
            out["shadow.job_cold_ms"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            conn.execute("SELECT shadow._job_evaluate()")
            out["shadow.job_warm_ms"] = (time.perf_counter() - t) * 1000
        with psycopg.connect(url.replace("postgres@", "shieldx_app@", 1), autocommit=True) as conn:
            h.progress("posterior.svg")
            conn.execute("SELECT shadow.posterior_svg(1)")
            t = time.perf_counter()
            for _ in range(50):
                conn.execute("SELECT shadow.posterior_svg(1)")
            out["shadow.svg_ms"] = (time.perf_counter() - t) * 1000 / 50
        return out
    finally:
        h.drop_database(url)
