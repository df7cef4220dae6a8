"""Keys on every node of a local HA cluster: rotation of payment and audit keys, and every keyring following
the database (the subject master keys' ratchet, retired keys removed).

The rule (db/functions/vault/keys.sql): a payment or audit key is made outside the database and installed on
every node before it becomes current, because a key only the primary holds is lost with it. Subject master keys
need no distributor: each epoch's derives from the previous one, and every node follows privacy.epochs
(privacy.ratchet_local_keys(); Patroni's on_start and on_role_change callbacks run it, and `ha keys sync` runs it
on every node). The cluster's own keyring (layout.keyring, what `ha up` copies to a node) follows as well: an
old subject master key anywhere derives every later one, so no copy may keep it.

    python -m shieldx_local ha keys rotate payment   # make, install everywhere, activate
    python -m shieldx_local ha keys sync             # every keyring follows the database
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from .cluster import KEYRING_SH, Cluster
from .processes import chown
from .sql import one, scalar

ROTATABLE = ("payment", "audit")


def _keyring(*args: str) -> str:
    return subprocess.run([str(KEYRING_SH), *args], check=True, capture_output=True, text=True).stdout.strip()


def key_dirs(cluster: Cluster) -> list[Path]:
    """The cluster's keyring and every node's copy."""
    return [cluster.layout.keyring, *(cluster.layout.key_dir(n) for n in cluster.layout.names)]


def install(source: Path, dest: Path, purpose: str, key_id: str) -> None:
    """Copy one key file to a node's keyring: postgres-owned, directory 700, file 600; never overwrites."""
    d = dest / purpose
    for path in (dest, d):
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
        chown(path)
    target = d / f"{key_id}.key"
    if target.exists():
        return
    tmp = d / f".{key_id}.key.tmp"
    shutil.copyfile(source / purpose / f"{key_id}.key", tmp)
    tmp.chmod(0o600)
    chown(tmp)
    tmp.rename(target)


def rotate(cluster: Cluster, purpose: str) -> dict[str, Any]:
    """Rotate a payment or audit key on the whole cluster: make it in the cluster's keyring (keyring.sh new),
    install it on every node, activate it through HAProxy's write port (vault.rotate_key(purpose, key_id), on
    whichever node is primary), then name it in every copy's CURRENT. Existing values move to it with the
    shieldx-vault-reencrypt job (or vault.reencrypt())."""
    if purpose not in ROTATABLE:
        raise ValueError(f"purpose must be one of {ROTATABLE} (subject master keys follow the epochs)")
    source = cluster.layout.keyring
    key_id = _keyring("new", str(source), purpose)
    for name in cluster.layout.names:
        install(source, cluster.layout.key_dir(name), purpose, key_id)
    with psycopg.connect(cluster.layout.url(), autocommit=True, connect_timeout=5) as conn:
        row = one(conn, "SELECT key_id, previous_key_id FROM vault.rotate_key(%s, %s)", (purpose, key_id))
    for d in key_dirs(cluster):
        _keyring("current", str(d), purpose, key_id)
    return {"purpose": purpose, "key_id": row[0], "previous_key_id": row[1]}


def _node_conn(cluster: Cluster, name: str) -> psycopg.Connection:
    return psycopg.connect(cluster.layout.url(port=cluster.layout.pg_port(name)), autocommit=True, connect_timeout=3)


def sync(cluster: Cluster) -> dict[str, Any]:
    """Every keyring follows the database: each running node ratchets its subject master keys
    (privacy.ratchet_local_keys(), standbys included); the key files vault.keys records as retired are
    removed from every node and from the cluster's keyring, whose subject keys move to the current epoch's.
    A node that is down ratchets when Patroni starts it (on_start callback). Returns what each did."""
    out: dict[str, Any] = {"nodes": {}, "removed": []}
    with psycopg.connect(cluster.layout.url(), autocommit=True, connect_timeout=5) as conn:
        retired = conn.execute("SELECT purpose, key_id FROM vault.keys WHERE state = 'retired'").fetchall()
        closed = [r[0] for r in conn.execute("SELECT closed_key FROM privacy.epochs WHERE closed_key IS NOT NULL")]
        current = scalar(conn, "SELECT key_id FROM privacy.ratchet_local_keys()")
    for name in cluster.layout.names:
        try:
            with _node_conn(cluster, name) as conn:
                r = one(conn, "SELECT key_id, derived, destroyed FROM privacy.ratchet_local_keys()")
                out["nodes"][name] = {"key_id": r[0], "derived": r[1], "destroyed": r[2]}
        except psycopg.OperationalError as e:
            out["nodes"][name] = {"error": str(e).strip().splitlines()[0]}
    doomed = [*retired, *(("subject", k) for k in closed)]
    # Every copy (a node that is down, the cluster's keyring) gets the current subject key before its older
    # ones go: an older one would derive it, and a copy left without any could derive nothing.
    holder = next((d for d in key_dirs(cluster) if current and (d / "subject" / f"{current}.key").exists()), None)
    for d in key_dirs(cluster):
        if holder is not None and not (d / "subject" / f"{current}.key").exists():
            install(holder, d, "subject", current)
            _keyring("current", str(d), "subject", current)
    for d in key_dirs(cluster):
        for purpose, key_id in doomed:
            path = d / purpose / f"{key_id}.key"
            if path.exists():
                path.unlink()
                out["removed"].append(str(path))
    return out
