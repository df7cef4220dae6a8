"""High availability on a real Patroni cluster: failover, switchover, point-in-time recovery, restore drill.

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
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from alerting import (
    NEEDS_PATRONI,
    active,
    evaluated_since,
    firing,
    in_alertmanager,
    query,
    shortened_rules,
    wait_all_up,
)
from ha_marks import HA
from shieldx_local.cluster import Cluster
from shieldx_local.drill import ScratchNode, restore_drill, scratch_dirs
from shieldx_local.observe import Stack, missing_packages, write_patroni_targets
from shieldx_local.private import api_server, private_cluster, ready
from shieldx_local.processes import PGBIN, as_postgres, free_port, pg_env, pg_ids, wait_until
from shieldx_local.workload import failover, freeze, switchover

PAN = "4111111111111111"
PAN2 = "5555555555554444"
KEY_JOBS = ("shieldx-audit-checkpoint", "shieldx-vault-reencrypt")
LOG_PRIVACY = {
    "log_min_error_statement": "panic",
    "log_statement": "none",
    "log_min_duration_statement": "-1",
    "log_parameter_max_length": "0",
    "log_parameter_max_length_on_error": "0",
}

pytestmark = HA


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
    # Readiness does not follow the database: the API stayed in service, answering 503 itself.
    assert 503 not in result["ready_statuses_during_outage"]
    assert result["ready_final"] == 200
    # pg_cron: the same jobs, now run by the new primary's launcher only.
    assert _cron_jobs(cluster) == jobs_before
    with node_conn(cluster, result["new_leader"]) as conn:
        assert (
            conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cron launcher'").fetchone()[0]
            == 1
        )
    # The new primary holds the keys: it signs checkpoints, takes card top-ups, runs the key jobs.
    _keys_work_on_primary(cluster, result["new_leader"], "failover")


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
    _keys_work_on_primary(cluster, result["new_leader"], "switchover")


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


def test_ha_restore_drill(cluster: Cluster) -> None:
    """The latest backup, restored to a scratch node up to the end of the archive, reconciles and verifies."""
    with psycopg.connect(cluster.layout.url(), autocommit=True) as conn:
        # A signed checkpoint in the chain: verify() on the scratch node needs the audit key to check it.
        conn.execute("SELECT * FROM audit.checkpoint('manual')")
        checkpoints = conn.execute("SELECT count(*) FROM audit.checkpoints").fetchone()[0]
        entries = conn.execute("SELECT count(*) FROM credits.entries").fetchone()[0]
    result = restore_drill(cluster, switch_wal=True)
    print({k: v for k, v in result.items() if k not in ("reconcile",)})
    assert result["reconcile"] == []
    assert result["verify"]["ok"] is True, result["verify"]
    assert result["verify"]["entries_checked"] > 0
    assert result["ok"] is True
    # Recovery reached the end of the archive: the row written (and archived) just before the restore is there.
    assert result["probe_restored"] is True
    assert result["restored_counts"]["checkpoints"] >= checkpoints
    assert result["restored_counts"]["entries"] >= entries
    assert result["rpo_s"] is not None
    # The scratch node is gone; the cluster is untouched.
    assert scratch_dirs(cluster) == []
    assert cluster.healthy()


def test_ha_restored_node_without_the_keyring_cannot_verify(cluster: Cluster) -> None:
    """The keys travel apart from the backup: restored on a host without the keyring, audit.verify()
    cannot check the checkpoints' signatures (SX202) and card data stays unreadable."""
    node = ScratchNode(cluster, "restore-nokeys")
    try:
        node.restore(keys=False)
        node.start()
        with psycopg.connect(node.url(), autocommit=True, connect_timeout=5) as conn:
            assert conn.execute("SELECT count(*) FROM audit.checkpoints").fetchone()[0] > 0
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("SELECT * FROM audit.verify()")
            assert refused.value.sqlstate == "SX202"
            entry = conn.execute("SELECT entry_id FROM vault.payments LIMIT 1").fetchone()[0]
            with pytest.raises(psycopg.Error) as unreadable:
                conn.execute("SELECT vault._reveal(%s)", (entry,))
            assert unreadable.value.sqlstate == "SX202"
    finally:
        node.stop_and_delete()
    assert not node.dir.exists()


def _keys_work_on_primary(cluster: Cluster, leader: str, tag: str) -> None:
    """On `leader`: audit.checkpoint() signs with the cluster's audit key, a card top-up encrypts, the key
    jobs' commands (as pg_cron runs them on the primary) succeed, and a failing top-up typed in psql leaves
    no card number in any node's log."""
    port = cluster.layout.pg_port(leader)
    audit_key = (cluster.layout.keyring / "audit" / "CURRENT").read_text().strip()
    payment_key = (cluster.layout.keyring / "payment" / "CURRENT").read_text().strip()
    with node_conn(cluster, leader) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
        cp = conn.execute("SELECT checkpoint_id, key_id FROM audit.checkpoint('manual')").fetchone()
        assert cp[1] == audit_key
        conn.execute("SELECT credits.create_tenant(%s, %s)", (f"keys-{tag}", "Keys"))
        (acc,) = conn.execute(
            "SELECT account_id FROM credits.create_account(%s, 'card', %s)", (f"keys-{tag}", f"open-{tag}")
        ).fetchone()
        jobs = dict(conn.execute("SELECT jobname, command FROM cron.job WHERE jobname = ANY(%s)", (list(KEY_JOBS),)))
    assert set(jobs) == set(KEY_JOBS)
    app_url = f"postgresql://shieldx_app@127.0.0.1:{port}/shieldx"
    with psycopg.connect(app_url, autocommit=True, connect_timeout=3) as app:
        card = app.execute(
            "SELECT card FROM vault.top_up(%s, %s, 50, %s, %s, '12/29')", (f"keys-{tag}", acc, f"pay-{tag}", PAN)
        ).fetchone()[0]
        assert card.endswith("1111")
    with node_conn(cluster, leader) as conn:
        assert conn.execute("SELECT key_id FROM vault.payments WHERE account_id = %s", (acc,)).fetchone()[0] == (
            payment_key
        )
        for name in KEY_JOBS:  # the command text as pg_cron runs it (several statements, simple protocol)
            conn.execute(jobs[name])
        assert (
            conn.execute("SELECT count(*) FROM audit.checkpoints WHERE checkpoint_id > %s", (cp[0],)).fetchone()[0] == 1
        )
    # A failing top-up typed in psql (idempotency key reused with another card): no number in any node's log.
    typed = f"SELECT * FROM vault.top_up('keys-{tag}', {acc}, 50, 'pay-{tag}', '{PAN2}', '12/29');"
    done = subprocess.run(
        [str(PGBIN / "psql"), "-X", "-q", "-c", typed, app_url], capture_output=True, text=True, timeout=30
    )
    assert "ERROR" in done.stderr
    logs = [f for n in cluster.layout.names for f in (cluster.layout.data_dir(n) / "log").glob("*")]
    assert logs
    refusal = f"idempotency key 'pay-{tag}' was used"  # the SX005 message, as the server logs it
    wait_until(lambda: any(refusal in f.read_text(errors="replace") for f in logs), 10, "the error in a node's log")
    for f in logs:
        text = f.read_text(errors="replace")
        assert PAN not in text and PAN2 not in text, f


def test_ha_every_node_has_the_keyring_and_log_settings(cluster: Cluster) -> None:
    """One keyring per cluster, a copy on every node: the same files, postgres-owned, 700/600; the app role
    cannot read them; every node's shieldx.key_dir names its copy and its log keeps statements out."""
    source = cluster.layout.keyring

    def files(d: Path) -> dict[str, str]:
        return {str(f.relative_to(d)): f.read_text() for f in sorted(d.rglob("*")) if f.is_file()}

    expected = files(source)
    assert {k.split("/")[0] for k in expected} == {"audit", "payment", "subject"}
    uid, gid = pg_ids()
    for name in cluster.layout.names:
        keys = cluster.layout.key_dir(name)
        assert files(keys) == expected, name
        for path in [keys, *keys.rglob("*")]:
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (uid, gid), path
            assert stat.S_IMODE(st.st_mode) == (0o700 if path.is_dir() else 0o600), path
        with node_conn(cluster, name) as conn:
            assert conn.execute("SHOW shieldx.key_dir").fetchone()[0] == str(keys)
            settings = dict(
                conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(LOG_PRIVACY),))
            )
            assert settings == LOG_PRIVACY, name
        key_file = next((keys / "audit").glob("*.key"))
        app_url = f"postgresql://shieldx_app@127.0.0.1:{cluster.layout.pg_port(name)}/shieldx"
        with (
            psycopg.connect(app_url, autocommit=True, connect_timeout=3) as app,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            app.execute("SELECT pg_read_file(%s)", (str(key_file),))


def _cron_jobs(cluster: Cluster) -> list[tuple]:
    with psycopg.connect(cluster.layout.url(), connect_timeout=3) as conn:
        return conn.execute("SELECT jobname, schedule, command FROM cron.job ORDER BY jobname").fetchall()


def test_ha_rolling_restart_under_load_loses_nothing(cluster: Cluster, api: str) -> None:
    """Replicas restarted first, a switchover, then the old primary (shieldx_local.rolling), under the workload."""
    from shieldx_local.rolling import rehearse

    result = rehearse(cluster, api, before_s=2.0, after_s=2.0, clients=16)
    print({k: v for k, v in result.items() if k != "problems"})
    assert result["problems"] == []
    assert result["lost_acked_ops"] == 0
    assert result["unexpected"] == []
    assert set(result["counts"]) <= {"acked", "refused"}, result["counts"]
    assert result["counts"]["acked"] > 0
    # Every node restarted, the old primary last, after one switchover to the synchronous standby.
    assert result["restarted"] == sorted(cluster.layout.names)
    assert result["order"][-1] == result["old_leader"] and result["new_leader"] != result["old_leader"]
    before, after = result["timelines_before"], result["timelines_after"]
    assert len(set(after.values())) == 1 and min(after.values()) == max(before.values()) + 1
    # The API stayed ready throughout (readiness does not follow the database).
    assert result["ready_statuses"] == [200]


def test_ha_standbys_stopped_fire_alerts_and_resolve(cluster: Cluster, api: str, tmp_path) -> None:
    """The monitoring stack (shieldx_local.observe, 1-second intervals, the real rules with every `for:`
    shortened to alerting.FOR_IN_TESTS) watching this cluster: the exporter on the primary through
    HAProxy, Patroni's /metrics on every node. Every target is up and the Patroni dashboard queries
    return data; once `ha backup` recorded a backup, no alert is pending or firing; stopping both
    standbys fires ShieldxPatroniMemberDown for each and ShieldxNoSynchronousStandby, in Prometheus and
    in Alertmanager; starting them again resolves all."""
    if missing_packages():
        pytest.fail(f"missing Debian packages {missing_packages()}: apt-get install {' '.join(missing_packages())}")
    wait_until(cluster.healthy, 120, "a leader and two streaming standbys", 1)
    observe = Stack(
        base=tmp_path / "observe",
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        exporter_port=free_port(),
        api_port=int(api.rsplit(":", 1)[1]),
        dsn=cluster.layout.url(user="shieldx_monitor") + "?sslmode=disable",
        scrape_interval="1s",
        evaluation_interval="1s",
        rule_files=shortened_rules(tmp_path / "rules"),
    )
    write_patroni_targets([(n, cluster.layout.rest_port(n)) for n in cluster.layout.names], observe.patroni_targets)
    leader = cluster.leader()
    standbys = [n for n in cluster.layout.names if n != leader]
    stopped: list[str] = []
    observe.up(say=lambda _m: None)
    try:
        wait_all_up(observe)
        assert len([t for t in observe.targets() if t["job"] == "patroni"]) == len(cluster.layout.names)
        for expr in NEEDS_PATRONI:
            wait_until(lambda expr=expr: query(observe, expr)["data"]["result"], 30, f"data for {expr}")
        wait_until(
            lambda: query(observe, "shieldx_replication_sync_standbys >= 1")["data"]["result"], 30, "a sync standby"
        )
        # `ha backup` records what it did: the freshness alert (+Inf while nothing is recorded) resolves.
        done = cluster.backup("full")
        assert done["outcome"] == "succeeded", done
        wait_until(lambda: not active(observe, "ShieldxBackupStale", None), 30, "ShieldxBackupStale to resolve", 0.5)
        settled = time.time() + 3
        wait_until(lambda: time.time() > settled and evaluated_since(observe, settled), 30, "an evaluation")
        others = sorted(
            {(a["labels"]["alertname"], a["labels"].get("cron_job", "")) for a in active(observe, None, None)}
        )
        assert others == [], f"alerts active on the HA stack with a backup recorded and every node up: {others}"
        for alert in ("ShieldxPatroniMemberDown", "ShieldxNoSynchronousStandby", "ShieldxPatroniNoLeader"):
            assert not active(observe, alert, None), active(observe, alert, None)

        started = time.monotonic()
        for name in standbys:
            cluster.stop_node(name)
            stopped.append(name)
        expected = [("ShieldxNoSynchronousStandby", {}, "page")] + [
            ("ShieldxPatroniMemberDown", {"node": n, "instance": f"127.0.0.1:{cluster.layout.rest_port(n)}"}, "ticket")
            for n in standbys
        ]
        for alert, labels, severity in expected:
            wait_until(lambda a=alert, lb=labels: firing(observe, a, **lb), 60, f"{alert} {labels} to fire", 0.5)
            (fired,) = firing(observe, alert, **labels)
            assert fired["labels"]["severity"] == severity
            assert fired["annotations"]["runbook_url"] == f"docs/runbooks.md#{alert.lower()}"
            wait_until(lambda a=alert, lb=labels: in_alertmanager(observe, a, **lb), 30, f"Alertmanager: {alert}", 0.5)
            (received,) = in_alertmanager(observe, alert, **labels)
            assert received["receivers"] == [{"name": severity}]
            print(f"{alert} {labels}: firing and in Alertmanager {time.monotonic() - started:.1f}s after the stop")
        assert not active(observe, "ShieldxPatroniNoLeader", None)  # the primary kept its lock

        repaired = time.monotonic()
        for name in standbys:
            cluster.start_node(name)
            stopped.remove(name)
        wait_until(cluster.healthy, 120, "both standbys streaming again", 1)
        for alert, labels, _ in expected:
            wait_until(lambda a=alert, lb=labels: not active(observe, a, None, **lb), 60, f"{alert} to resolve", 0.5)
            wait_until(
                lambda a=alert, lb=labels: not in_alertmanager(observe, a, **lb), 60, f"Alertmanager: {alert}", 0.5
            )
            print(f"{alert} {labels}: resolved in both {time.monotonic() - repaired:.1f}s after the restart")
    finally:
        for name in stopped:
            cluster.start_node(name)
        observe.down(say=lambda _m: None)
        wait_until(cluster.healthy, 120, "a healthy cluster after the test", 1)
