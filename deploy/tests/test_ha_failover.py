"""High availability on a real Patroni cluster: failover, switchover, point-in-time recovery.

One private three-node cluster (etcd, Patroni, HAProxy, pgBackRest from Debian's
packages; its own folder in the state directory and free ports) serves the whole
module and is stopped and deleted afterwards, even when a test fails. The API
runs as a real server (`python -m shieldx.cli.serve_main`) against HAProxy. The
cluster, the workload and its checks are the harness's (deploy/local/shieldx_local).
These tests assert correctness only; `make bench` (the ha suite) measures the failover.

Run alone: `.venv/bin/pytest -m ha`. Part of `make test`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from shieldx_local.cluster import Cluster
from shieldx_local.private import api_server, private_cluster, ready
from shieldx_local.processes import PGBIN, as_postgres, free_port, missing_binaries, pg_env, wait_until
from shieldx_local.workload import failover, freeze, switchover

pytestmark = [
    pytest.mark.ha,
    pytest.mark.skipif(
        bool(missing_binaries()), reason=f"needs Debian packages {missing_binaries()} (installed by `make deps`)"
    ),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with private_cluster("ha-test") as c:
        yield c


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[str]:
    # The real server, API keys checked (the workload makes a tenant key with a high rate limit).
    with api_server(cluster.layout.app_url(), cluster.layout.log_dir / "api.log") as base:
        wait_until(lambda: ready(base), 30, "API readiness")
        yield base


def node_conn(cluster: Cluster, name: str, dbname: str = "shieldx") -> psycopg.Connection:
    return psycopg.connect(
        cluster.layout.url(dbname, port=cluster.layout.pg_port(name)), autocommit=True, connect_timeout=3
    )


def test_ha_cluster_shape(cluster: Cluster) -> None:
    """Three nodes, one primary, a synchronous standby; every node has pg_cron & co."""
    leader = cluster.leader()
    roles = sorted(m["role"] for m in cluster.members())
    assert roles == ["leader", "replica", "sync_standby"]
    assert cluster.writable_nodes() == [leader]
    status, config = cluster.rest(leader, "/config")
    assert status == 200 and config["synchronous_mode"] and config["synchronous_mode_strict"]
    for name in cluster.layout.names:
        with node_conn(cluster, name) as conn:
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN ('shared_preload_libraries', "
                    "'cron.use_background_workers', 'cron.database_name', 'max_prepared_transactions', "
                    "'wal_log_hints', 'archive_mode')"
                ).fetchall()
            )
            assert settings == {
                "shared_preload_libraries": "pg_cron",
                "cron.use_background_workers": "on",
                "cron.database_name": "shieldx",
                "max_prepared_transactions": "64",
                "wal_log_hints": "on",
                "archive_mode": "on",
            }, name
            exts = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
            assert {"pg_cron", "pgcrypto", "plpython3u"} <= exts, name
            # Migrations ran once, on the primary; the standbys have them by replication.
            assert conn.execute("SELECT count(*) FROM public._yoyo_migration").fetchone()[0] > 0
            launcher = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'"
            ).fetchone()[0]
            assert launcher == (1 if name == leader else 0), f"pg_cron runs jobs on the primary only ({name})"
            if name != leader:
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    conn.execute("SELECT credits.create_tenant('nope', 'written on a standby')")
    # HAProxy: the write port reaches the primary, the read port a standby.
    with psycopg.connect(cluster.layout.url(), connect_timeout=3) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    with psycopg.connect(cluster.layout.url(port=cluster.layout.reads_port), connect_timeout=3) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True


def test_ha_app_url_never_reaches_a_standby(cluster: Cluster) -> None:
    """target_session_attrs=read-write: libpq refuses a standby; the app's URL (HAProxy) lands on the primary.

    (A multi-host URL without HAProxy is not offered: libpq cannot tell a deposed
    primary that has not yet been demoted; see docs/operations/ha.md.)"""
    leader = cluster.leader()
    standby = next(n for n in cluster.layout.names if n != leader)
    direct = (
        f"postgresql://shieldx_app@127.0.0.1:{cluster.layout.pg_port(standby)}/shieldx"
        "?target_session_attrs=read-write&connect_timeout=3"
    )
    with pytest.raises(psycopg.OperationalError, match=r"read-only|read-write"):
        psycopg.connect(direct).close()
    with psycopg.connect(cluster.layout.app_url(), autocommit=True) as conn:
        assert conn.execute("SELECT * FROM ops.health()").fetchone()[0] is True
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False


def test_ha_failover_kill9_primary_loses_no_acknowledged_operation(cluster: Cluster, api: str) -> None:
    jobs_before = _cron_jobs(cluster)
    result = failover(cluster, api, before_s=4.0, after_s=3.0, clients=16)
    print({k: v for k, v in result.items() if k != "problems"})
    assert result["problems"] == []
    assert result["lost_acked_ops"] == 0
    assert result["unexpected"] == []
    assert result["acked_before_kill"] > 0 and result["counts"]["acked"] > result["acked_before_kill"]
    assert all(result["acked_by_kind"].values()), result["acked_by_kind"]  # grant, consume, transfer, hold
    assert result["audit_ok"] in (True, None)  # None: no audit schema in this build
    assert result["new_leader"] != result["old_leader"]
    # Timelines only increase, and every node (the old primary too, rewound) follows the new one.
    before, after = result["timelines_before"], result["timelines_after"]
    assert len(set(after.values())) == 1 and min(after.values()) > max(before.values())
    # Readiness said "not ready" while no primary was reachable, and "ready" afterwards.
    assert 503 in result["ready_statuses_during_outage"]
    assert result["ready_final"] == 200
    # pg_cron: the same jobs, now run by the new primary's launcher only.
    assert _cron_jobs(cluster) == jobs_before
    with node_conn(cluster, result["new_leader"]) as conn:
        assert (
            conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'").fetchone()[0]
            == 1
        )


def test_ha_switchover_under_load_fails_no_operation(cluster: Cluster, api: str) -> None:
    result = switchover(cluster, api, before_s=3.0, after_s=3.0, clients=16)
    print({k: v for k, v in result.items() if k != "problems"})
    assert result["problems"] == []
    assert result["unexpected"] == []
    # Once retries are counted, every operation got a definite answer.
    assert set(result["counts"]) <= {"acked", "refused"}, result["counts"]
    assert result["counts"]["acked"] > 0
    assert result["new_leader"] != result["old_leader"]
    before, after = result["timelines_before"], result["timelines_after"]
    assert len(set(after.values())) == 1 and min(after.values()) == max(before.values()) + 1


@pytest.mark.parametrize("target", ["leader", "sync"])
def test_ha_frozen_node_gives_no_stale_or_lost_answer(cluster: Cluster, api: str, target: str) -> None:
    """SIGSTOP for 20 s of the primary (it wakes up deposed) or of the synchronous standby, under load,
    through the API's only offered path (HAProxy with Patroni's /primary check): every acknowledged
    operation is in the ledger once, and no definite answer (a refusal, a "not found") is wrong."""
    result = freeze(cluster, api, target=target, frozen_s=20.0)
    print({k: v for k, v in result.items() if k != "problems"})
    assert result["problems"] == []
    assert result["lost_acked_ops"] == 0
    assert result["unexpected"] == []  # e.g. a 404 unknown_hold answered by a deposed primary
    assert result["counts"]["acked"] > result["acked_before_freeze"] > 0
    assert all(result["acked_by_kind"].values()), result["acked_by_kind"]
    assert result["audit_ok"] in (True, None)
    if target == "leader":
        assert result["new_leader"] != result["old_leader"]


def test_ha_pgbackrest_point_in_time_restore(cluster: Cluster, tmp_path_factory) -> None:
    """Back up, write, mark a restore point, write more; restore to the point: exactly the first writes."""
    cluster.pgbackrest("backup", "--type=full")
    url = cluster.layout.url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT credits.create_tenant('pitr', 'PITR')")
        (acc,) = conn.execute("SELECT account_id FROM credits.create_account('pitr', 'a', 'open-a')").fetchone()
        for i in range(20):
            conn.execute("SELECT credits.grant_credits('pitr', %s, %s, %s)", (acc, i + 1, f"before-{i}"))
        conn.execute("SELECT pg_create_restore_point('shieldx-pitr-test')")
        for i in range(15):
            conn.execute("SELECT credits.grant_credits('pitr', %s, 1000, %s)", (acc, f"after-{i}"))
    cluster.pgbackrest("check")  # switches WAL and waits until it is archived
    scratch = cluster.layout.base / "pitr-restore"
    port = free_port()
    pg_ctl = [str(PGBIN / "pg_ctl"), "-D", str(scratch)]
    try:
        cluster.restore(scratch, "--type=name", "--target=shieldx-pitr-test", "--target-action=promote")
        opts = (
            f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={cluster.layout.run_dir}"
            " -c archive_mode=off -c shared_preload_libraries='' -c synchronous_standby_names=''"
            f" -c hba_file={scratch}/pg_hba.conf -c ident_file={scratch}/pg_ident.conf"
        )
        subprocess.run(
            [*pg_ctl, "-o", opts, "-l", str(cluster.layout.log_dir / "pitr.log"), "-w", "-t", "120", "start"],
            check=True,
            env=pg_env(),
            capture_output=True,
            **as_postgres(),
        )
        scratch_url = f"postgresql://postgres@127.0.0.1:{port}/shieldx"

        def promoted() -> bool:
            with psycopg.connect(scratch_url, connect_timeout=2) as c:
                return c.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]

        wait_until(promoted, 60, "the restored instance to finish recovery")
        with psycopg.connect(scratch_url, autocommit=True) as conn:
            keys = {r[0] for r in conn.execute("SELECT idem_key FROM credits.entries WHERE tenant_id = 'pitr'")}
            balance = conn.execute("SELECT balance FROM credits.accounts WHERE account_id = %s", (acc,)).fetchone()
            reconcile = conn.execute("SELECT * FROM credits.reconcile()").fetchall()
        assert keys == {f"before-{i}" for i in range(20)}
        assert balance == (sum(range(1, 21)),)
        assert reconcile == []
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], env=pg_env(), capture_output=True, **as_postgres())
        shutil.rmtree(scratch, ignore_errors=True)
    # The live cluster has everything.
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM credits.entries WHERE tenant_id = 'pitr'").fetchone()[0] == 35


def _cron_jobs(cluster: Cluster) -> list[tuple]:
    with psycopg.connect(cluster.layout.url(), connect_timeout=3) as conn:
        return conn.execute("SELECT jobname, schedule, command FROM cron.job ORDER BY jobname").fetchall()
