"""Keys after a rotation, on a real Patroni cluster: every node holds the current payment key and follows the
subject master keys' ratchet, so a failover or a switchover leaves the new primary able to decrypt, take
top-ups and re-encrypt, and an erasure is final on every node once each has ratcheted.

One private three-node cluster (the harness's, deploy/local/shieldx_local) serves the module and is deleted
afterwards. Rotation goes through `python -m shieldx_local ha keys rotate` (shieldx_local.keys.rotate): the key
is made outside the database, installed on every node, then activated through HAProxy's write port.
Single-node versions: db/tests/test_vault_key_distribution.py.

Run alone: `.venv/bin/pytest deploy/tests/test_ha_keys.py`. Part of `make test` (marker ha).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from ha_marks import HA
from shieldx_local.cluster import Cluster
from shieldx_local.keys import rotate, sync
from shieldx_local.private import private_cluster
from shieldx_local.processes import pg_ids, wait_until

PAN = "4111111111111111"
PAN2 = "5555555555554444"

pytestmark = HA


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with private_cluster("ha-keys") as c:
        with psycopg.connect(c.layout.url(), autocommit=True) as conn:
            conn.execute("SELECT credits.create_tenant('keys', 'Keys')")
        yield c


def node_conn(cluster: Cluster, name: str, role: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(
        cluster.layout.url(user=role, port=cluster.layout.pg_port(name)),
        autocommit=True,
        connect_timeout=3,
        row_factory=dict_row,
    )


def writes(cluster: Cluster, role: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(cluster.layout.url(user=role), autocommit=True, connect_timeout=5, row_factory=dict_row)


def account(cluster: Cluster, tag: str) -> int:
    with writes(cluster) as conn:
        return conn.execute("SELECT account_id FROM credits.create_account('keys', %s, %s)", (tag, tag)).fetchone()[
            "account_id"
        ]


def top_up(conn: psycopg.Connection, acc: int, key: str, pan: str = PAN, subject: str = "s", holder: str = "A B"):
    return conn.execute(
        "SELECT * FROM vault.top_up('keys', %s, 50, %s, %s, '12/29', %s, %s, '203.0.113.9', 'ua')",
        (acc, key, pan, holder, subject),
    ).fetchone()


def kill_primary(cluster: Cluster) -> tuple[str, str]:
    """kill -9 the primary, wait for another node to lead and HAProxy to route writes to it, then bring the
    old primary back as a standby. Returns (old, new)."""
    old = cluster.leader()
    assert old
    cluster.kill_node(old)
    wait_until(lambda: cluster.leader() not in (None, old), 60, "a new leader", 0.3)
    new = cluster.leader()
    assert new and new != old
    wait_until(lambda: cluster.writable_nodes() == [new], 30, "only the new primary writable", 0.3)
    # HAProxy's Patroni check runs on its own interval: its write port follows a beat later.
    wait_until(cluster.writes_reach_primary, 30, "HAProxy to route writes to the new primary", 0.3)
    return old, new


def rejoin(cluster: Cluster, old: str) -> None:
    cluster.start_node(old)
    wait_until(cluster.healthy, 180, "the old primary to rejoin as a standby", 0.5)


def replayed(cluster: Cluster, query: str, expected: object) -> None:
    """Wait until every running node answers `query` with `expected` (streaming replication is asynchronous
    for all but the synchronous standby)."""

    def everywhere() -> bool:
        for name in cluster.layout.names:
            with node_conn(cluster, name) as conn:
                if next(iter(conn.execute(query).fetchone().values())) != expected:
                    return False
        return True

    wait_until(everywhere, 30, f"every node to replay {query}", 0.2)


def key_files(d: Path, purpose: str) -> list[str]:
    return sorted(p.stem for p in (d / purpose).glob("*.key"))


def test_payment_rotation_through_the_harness_survives_failover_and_switchover(cluster: Cluster) -> None:
    acc = account(cluster, "rotate")
    with writes(cluster, "shieldx_app") as app:
        e1 = top_up(app, acc, "pay-1")["entry_id"]
    with writes(cluster) as conn:
        old = conn.execute("SELECT key_id FROM vault.payments WHERE entry_id = %s", (e1,)).fetchone()["key_id"]
    done = rotate(cluster, "payment")
    new = done["key_id"]
    assert done["previous_key_id"] == old and new != old
    # Installed on every node before it became current: same bytes, postgres-owned, 700/600, CURRENT named.
    uid, gid = pg_ids()
    material = (cluster.layout.keyring / "payment" / f"{new}.key").read_text()
    for name in cluster.layout.names:
        d = cluster.layout.key_dir(name) / "payment"
        assert (d / f"{new}.key").read_text() == material, name
        assert (d / "CURRENT").read_text().strip() == new, name
        for path in (d, d / f"{new}.key"):
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (uid, gid) and stat.S_IMODE(st.st_mode) == (
                0o700 if path.is_dir() else 0o600
            ), path
        with node_conn(cluster, name, "shieldx_app") as app, pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT pg_read_file(%s)", (str(d / f"{new}.key"),))
    with writes(cluster, "shieldx_app") as app:
        e2 = top_up(app, acc, "pay-2", PAN2)["entry_id"]
    with writes(cluster) as conn:
        assert conn.execute("SELECT key_id FROM vault.payments WHERE entry_id = %s", (e2,)).fetchone()["key_id"] == new
    replayed(cluster, f"SELECT count(*) FROM vault.payments WHERE entry_id = {e2}", 1)

    old_leader, new_leader = kill_primary(cluster)
    with node_conn(cluster, new_leader) as conn:
        assert conn.execute("SELECT vault._recorded_key_id('payment') AS k").fetchone()["k"] == new
        assert conn.execute("SELECT (vault._reveal(%s)).pan", (e1,)).fetchone()["pan"] == PAN  # old key
        assert conn.execute("SELECT (vault._reveal(%s)).pan", (e2,)).fetchone()["pan"] == PAN2  # new key
    with writes(cluster, "shieldx_app") as app:
        e3 = top_up(app, acc, "pay-3")["entry_id"]
    with node_conn(cluster, new_leader) as conn:
        assert conn.execute("SELECT key_id FROM vault.payments WHERE entry_id = %s", (e3,)).fetchone()["key_id"] == new
        assert conn.execute("SELECT vault.reencrypt(1000) AS n").fetchone()["n"] == 1  # e1 moves to the new key
        assert conn.execute("SELECT count(*) AS n FROM vault.payments WHERE key_id <> %s", (new,)).fetchone()["n"] == 0
        assert [r["key_id"] for r in conn.execute("SELECT * FROM vault.retire_unused_keys()")] == [old]
        for e, pan in ((e1, PAN), (e2, PAN2), (e3, PAN)):
            assert conn.execute("SELECT (vault._reveal(%s)).pan", (e,)).fetchone()["pan"] == pan
        assert conn.execute("SELECT key_id FROM audit.checkpoint('manual')").fetchone()["key_id"]
    rejoin(cluster, old_leader)
    # The retired key goes from every copy (`ha keys sync`), the current one stays.
    sync(cluster)
    for d in [cluster.layout.keyring, *(cluster.layout.key_dir(n) for n in cluster.layout.names)]:
        assert old not in key_files(d, "payment") and new in key_files(d, "payment"), d

    # A planned switchover: the next primary has the key as well.
    target = cluster.switchover()
    wait_until(lambda: cluster.writable_nodes() == [target], 30, "writes on the new primary", 0.3)
    with writes(cluster, "shieldx_app") as app:
        e4 = top_up(app, acc, "pay-4", PAN2)["entry_id"]
    with node_conn(cluster, target) as conn:
        assert conn.execute("SELECT key_id FROM vault.payments WHERE entry_id = %s", (e4,)).fetchone()["key_id"] == new
        assert conn.execute("SELECT (vault._reveal(%s)).pan", (e4,)).fetchone()["pan"] == PAN2
    wait_until(cluster.healthy, 120, "the cluster to settle", 0.5)


def test_a_key_generated_on_an_ha_primary_is_refused_and_nothing_changes(cluster: Cluster) -> None:
    leader = cluster.leader()
    assert leader
    d = cluster.layout.key_dir(leader)
    before = {p.name: p.read_text() for p in sorted((d / "payment").iterdir())}
    with writes(cluster) as conn:
        keys_before = conn.execute("SELECT * FROM vault.keys ORDER BY key_id").fetchall()
        for purpose in ("payment", "audit"):
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("SELECT * FROM vault.rotate_key(%s)", (purpose,))
            assert refused.value.sqlstate == "SX221"
            assert refused.value.diag.message_hint == (
                "Key must be made outside the database and installed on every node"
            )
            assert "install it on every node, then" in str(refused.value)
        assert conn.execute("SELECT * FROM vault.keys ORDER BY key_id").fetchall() == keys_before
        # Activation of a key this node lacks is refused too.
        with pytest.raises(psycopg.Error) as missing:
            conn.execute("SELECT * FROM vault.rotate_key('payment', 'k20991231000000abcdef')")
        assert missing.value.sqlstate == "SX220"
    assert {p.name: p.read_text() for p in sorted((d / "payment").iterdir())} == before


def test_an_erasure_is_final_on_every_node_after_failover_and_ratchet(cluster: Cluster) -> None:
    acc = account(cluster, "erase")
    with writes(cluster, "shieldx_app") as app:
        e_jane = top_up(app, acc, "pay-jane", subject="jane", holder="Jane Doe")["entry_id"]
        e_john = top_up(app, acc, "pay-john", subject="john", holder="John Roe")["entry_id"]
    with writes(cluster) as conn:
        # What a superuser keeps of jane's key before the erasure (a dead tuple, the WAL, a backup hold it).
        kept = conn.execute("SELECT key_id, wrapped FROM privacy.subject_keys WHERE subject_id = 'jane'").fetchone()
        holder = conn.execute(
            "SELECT holder_ct, vault._aad('pii', tenant_id, account_id, entry_id, 'holder') AS aad "
            "FROM vault.payments WHERE entry_id = %s",
            (e_jane,),
        ).fetchone()
        k0 = kept["key_id"]
        conn.execute("SELECT * FROM privacy.erase_subject('jane', 'erase-jane')")
        first = conn.execute("SELECT * FROM privacy.close_epoch()").fetchone()
        second = conn.execute("SELECT * FROM privacy.close_epoch()").fetchone()
        k1 = first["key_id"]
        assert k1.startswith("kr") and second["keys_destroyed"] == 1 and second["key_id"] == k1
    unwrap = "SELECT privacy._open(%s, 'jane', %s, %s) AS v"
    args = (kept["wrapped"], holder["holder_ct"], holder["aad"])
    replayed(cluster, "SELECT max(epoch_id) FROM privacy.epochs", first["epoch_id"])
    leader = cluster.leader()
    standbys = [n for n in cluster.layout.names if n != leader]
    # Before its ratchet, a standby still holds k0: there the kept copy opens, and the erasure is not final.
    for name in standbys:
        assert key_files(cluster.layout.key_dir(name), "subject") == [k0], name
        with node_conn(cluster, name) as conn:
            assert conn.execute("SELECT * FROM privacy.erasure_status('jane')").fetchone()["final"] is False
            assert conn.execute(unwrap, args).fetchone()["v"] == "Jane Doe"

    old_leader, new_leader = kill_primary(cluster)
    # Before anything uses a subject key there, Patroni's on_role_change callback (ratchet-keys.sh) derives
    # k1 from k0 on the promoted node and destroys k0; a first use would do the same.
    wait_until(
        lambda: key_files(cluster.layout.key_dir(new_leader), "subject") == [k1],
        60,
        "the promoted node's on_role_change callback to ratchet",
        0.2,
    )
    with writes(cluster, "shieldx_app") as app:
        assert app.execute("SELECT holder FROM vault.get_payment('keys', %s)", (e_john,)).fetchone()["holder"] == (
            "John Roe"
        )
        assert app.execute("SELECT holder FROM vault.get_payment('keys', %s)", (e_jane,)).fetchone()["holder"] == (
            "[erased]"
        )
        e_new = top_up(app, acc, "pay-ann", subject="ann", holder="Ann Lee")["entry_id"]
        assert app.execute("SELECT holder FROM vault.get_payment('keys', %s)", (e_new,)).fetchone()["holder"] == (
            "Ann Lee"
        )
    assert key_files(cluster.layout.key_dir(new_leader), "subject") == [k1]
    with node_conn(cluster, new_leader) as conn:
        assert (
            conn.execute("SELECT key_id FROM privacy.subject_keys WHERE subject_id = 'ann'").fetchone()["key_id"] == k1
        )
    rejoin(cluster, old_leader)
    done = sync(cluster)
    assert all("error" not in r for r in done["nodes"].values()), done
    material = (cluster.layout.key_dir(new_leader) / "subject" / f"{k1}.key").read_text()
    for d in [cluster.layout.keyring, *(cluster.layout.key_dir(n) for n in cluster.layout.names)]:
        assert key_files(d, "subject") == [k1], d
        assert (d / "subject" / f"{k1}.key").read_text() == material, d
        assert (d / "subject" / "CURRENT").read_text().strip() == k1, d
    for name in cluster.layout.names:
        with node_conn(cluster, name) as conn:
            assert conn.execute("SELECT * FROM privacy.erasure_status('jane')").fetchone()["final"] is True, name
            assert (
                conn.execute("SELECT count(*) AS n FROM privacy.local_subject_keys() WHERE closed").fetchone()["n"] == 0
            )
            with pytest.raises(psycopg.Error) as noise:
                conn.execute(unwrap, args)
            assert noise.value.sqlstate == "SX202", name
            assert (
                conn.execute("SELECT holder FROM vault.get_payment('keys', %s)", (e_john,)).fetchone()["holder"]
                == "John Roe"
            ), name
