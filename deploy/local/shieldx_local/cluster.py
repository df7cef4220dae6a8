"""Start, stop, inspect and break a local three-node Patroni cluster (etcd, HAProxy, pgBackRest).

Everything runs from Debian's packages (patroni, etcd-server, haproxy,
pgbackrest) as the unprivileged `postgres` OS user, with its files under the
layout's base directory. Configuration templates live in deploy/patroni/ and
deploy/pgbackrest/; this module renders them, starts and stops the processes
(pid files, bounded waits, SIGKILL as a last resort) and is what the failover
tests drive (kill a node, restart it, switch over, back up).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import string
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from .layout import DBNAME, Layout
from .processes import (
    PGBIN,
    as_postgres,
    children,
    chown,
    cmdline,
    http_json,
    missing_binaries,
    pg_env,
    pid_alive,
    port_free,
    wait_until,
)
from .sql import scalar
from .state import ROOT

PATRONI_DIR = ROOT / "deploy" / "patroni"
PGBACKREST_DIR = ROOT / "deploy" / "pgbackrest"
KEYRING_SH = ROOT / "deploy" / "local" / "keyring.sh"
STANZA = "shieldx"


def render_template(template: Path, target: Path, values: dict[str, Any], mode: int = 0o600) -> None:
    text = string.Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    target.write_text(text)
    target.chmod(mode)
    chown(target)


def _dead(pid: int) -> bool:
    return not pid_alive(pid)


class Cluster:
    """Start, stop, inspect and break a local Patroni cluster."""

    def __init__(self, layout: Layout, say: Callable[[str], None] | None = None) -> None:
        self.layout = layout
        self.say = say or (lambda message: None)

    # --- files --------------------------------------------------------------
    def _secrets(self) -> dict[str, str]:
        path = self.layout.base / "secrets.json"
        if not path.exists():
            path.write_text(
                json.dumps({"SUPERUSER_PASSWORD": secrets.token_hex(16), "REPLICATION_PASSWORD": secrets.token_hex(16)})
            )
            path.chmod(0o600)
            chown(path)
        return json.loads(path.read_text())

    def render(self) -> None:
        lay = self.layout
        for d in [
            lay.base,
            lay.run_dir,
            lay.log_dir,
            lay.base / "etcd",
            lay.base / "pgbackrest",
            lay.base / "pgbackrest" / "repo",
            lay.run_dir / "pgbackrest",
            lay.run_dir / "pgbackrest-spool",
        ] + [lay.node_dir(n) for n in lay.names]:
            d.mkdir(parents=True, exist_ok=True)
            chown(d)
        (lay.base / "etcd").chmod(0o700)
        self.distribute_keys()
        common = {
            "SCOPE": lay.scope,
            "ETCD_PORT": lay.etcd_port,
            "RUN_DIR": lay.run_dir,
            "PGBACKREST_CONF": lay.pgbackrest_conf,
            **self._secrets(),
        }
        for name in lay.names:
            render_template(
                PATRONI_DIR / "patroni.yml.in",
                lay.node_dir(name) / "patroni.yml",
                {
                    **common,
                    "NAME": name,
                    "NODE_DIR": lay.node_dir(name),
                    "DATA_DIR": lay.data_dir(name),
                    "KEY_DIR": lay.key_dir(name),
                    "PG_PORT": lay.pg_port(name),
                    "REST_PORT": lay.rest_port(name),
                },
            )
            render_template(
                PATRONI_DIR / "ratchet-keys.sh.in",
                lay.node_dir(name) / "ratchet-keys.sh",
                {"NAME": name, "NODE_DIR": lay.node_dir(name), "RUN_DIR": lay.run_dir, "PG_PORT": lay.pg_port(name)},
                0o755,
            )
        servers = "\n".join(
            f"    server {n} 127.0.0.1:{lay.pg_port(n)} maxconn 150 check port {lay.rest_port(n)}" for n in lay.names
        )
        render_template(
            PATRONI_DIR / "haproxy.cfg.in",
            lay.base / "haproxy.cfg",
            {
                "RUN_DIR": lay.run_dir,
                "WRITES_PORT": lay.writes_port,
                "READS_PORT": lay.reads_port,
                "STATS_PORT": lay.stats_port,
                "WRITE_SERVERS": servers,
                "READ_SERVERS": servers,
            },
            0o644,
        )
        render_template(
            PATRONI_DIR / "etcd.yml.in",
            lay.base / "etcd.yml",
            {"ETCD_DIR": lay.base / "etcd" / "data", "ETCD_PORT": lay.etcd_port, "ETCD_PEER_PORT": lay.etcd_peer_port},
            0o644,
        )
        first = lay.names[0]
        render_template(
            PGBACKREST_DIR / "pgbackrest.conf.in",
            lay.pgbackrest_conf,
            {
                "REPO_DIR": lay.base / "pgbackrest" / "repo",
                "LOG_DIR": lay.log_dir,
                "RUN_DIR": lay.run_dir,
                "NODE1_DATA": lay.data_dir(first),
                "NODE1_PORT": lay.pg_port(first),
            },
            0o640,
        )

    def distribute_keys(self) -> None:
        """Create the cluster's keyring once (deploy/local/keyring.sh, as cluster.sh does) and give
        every node a copy: the same keys, postgres-owned, directories 700 and files 600.

        A copy only adds what a node lacks (never overwrites or deletes), so a node's CURRENT
        is never rolled back. Every node must hold every key: after a failover the new primary
        signs checkpoints and decrypts card data with its own copy.
        """
        subprocess.run([str(KEYRING_SH), str(self.layout.keyring)], check=True, capture_output=True, text=True)
        for name in self.layout.names:
            subprocess.run(
                [str(KEYRING_SH), "copy", str(self.layout.keyring), str(self.layout.key_dir(name))],
                check=True,
                capture_output=True,
                text=True,
            )

    # --- processes ----------------------------------------------------------
    def _pidfile(self, proc: str) -> Path:
        return self.layout.run_dir / f"{proc}.pid"

    def pid(self, proc: str) -> int | None:
        """Pid of one of our processes (etcd, haproxy, patroni-nodeN) if it runs."""
        path = self._pidfile(proc)
        try:
            pid = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        marker = {"etcd": "etcd", "haproxy": "haproxy"}.get(proc, "patroni")
        if pid_alive(pid) and marker in cmdline(pid) and str(self.layout.base) in cmdline(pid):
            return pid
        return None

    def postmaster_pid(self, name: str) -> int | None:
        try:
            pid = int((self.layout.data_dir(name) / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) and "postgres" in cmdline(pid) else None

    def _spawn(self, proc: str, argv: list[str]) -> int:
        log = open(self.layout.log_dir / f"{proc}.log", "ab")  # noqa: SIM115 - handed to the child process
        try:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.layout.base,
                env=pg_env(),
                start_new_session=True,
                **as_postgres(),
            )
        finally:
            log.close()
        self._pidfile(proc).write_text(f"{child.pid}\n")
        return child.pid

    def start_etcd(self) -> None:
        if self.pid("etcd") is None:
            self._spawn("etcd", ["etcd", "--config-file", str(self.layout.base / "etcd.yml")])
        wait_until(
            lambda: http_json(f"http://127.0.0.1:{self.layout.etcd_port}/health")[1].get("health") == "true",
            30,
            "etcd to become healthy",
        )

    def start_node(self, name: str) -> None:
        if self.pid(f"patroni-{name}") is None:
            self._spawn(f"patroni-{name}", ["patroni", str(self.layout.node_dir(name) / "patroni.yml")])

    def start_haproxy(self) -> None:
        cfg = str(self.layout.base / "haproxy.cfg")
        subprocess.run(["haproxy", "-c", "-q", "-f", cfg], check=True)
        if self.pid("haproxy") is None:
            self._spawn("haproxy", ["haproxy", "-db", "-f", cfg])
        wait_until(lambda: not port_free(self.layout.writes_port), 10, "HAProxy to listen")

    def _stop(self, proc: str, timeout: float = 30.0) -> None:
        pid = self.pid(proc)
        if pid is None:
            self._pidfile(proc).unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not pid_alive(pid), timeout, f"{proc} to stop")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 10, f"{proc} to die")
        self._pidfile(proc).unlink(missing_ok=True)

    def kill_node(self, name: str) -> float:
        """kill -9 a node's Patroni, its postmaster and every postgres child: a machine crash.

        Returns time.monotonic() right after the signals were sent (the moment of the crash)."""
        targets: list[int] = []
        patroni = self.pid(f"patroni-{name}")
        if patroni:
            targets.append(patroni)
        postmaster = self.postmaster_pid(name)
        if postmaster:
            targets += [postmaster, *children(postmaster)]
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        crashed_at = time.monotonic()
        for pid in targets:
            wait_until(partial(_dead, pid), 10, f"pid {pid} of {name} to die", 0.05)
        return crashed_at

    def node_pids(self, name: str) -> list[int]:
        """A node's Patroni, its postmaster and every postgres child."""
        pids: list[int] = []
        patroni = self.pid(f"patroni-{name}")
        if patroni:
            pids.append(patroni)
        postmaster = self.postmaster_pid(name)
        if postmaster:
            pids += [postmaster, *children(postmaster)]
        return pids

    def signal_node(self, name: str, sig: int, pids: list[int] | None = None) -> list[int]:
        """Send sig to a node's processes (SIGSTOP: the machine freezes; SIGCONT: it wakes). Returns the pids."""
        pids = self.node_pids(name) if pids is None else pids
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return pids

    def stop_node(self, name: str) -> None:
        self._stop(f"patroni-{name}", timeout=60)
        postmaster = self.postmaster_pid(name)
        if postmaster:  # Patroni died without stopping PostgreSQL: stop it ourselves
            subprocess.run(
                [
                    str(PGBIN / "pg_ctl"),
                    "-D",
                    str(self.layout.data_dir(name)),
                    "-m",
                    "immediate",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                env=pg_env(),
                capture_output=True,
                **as_postgres(),
            )
            if self.postmaster_pid(name):
                os.kill(postmaster, signal.SIGKILL)

    # --- cluster state ------------------------------------------------------
    def rest(
        self, name: str, path: str, method: str = "GET", body: dict | None = None, timeout: float = 2.0
    ) -> tuple[int, Any]:
        return http_json(f"http://127.0.0.1:{self.layout.rest_port(name)}{path}", method, body, timeout)

    def members(self) -> list[dict[str, Any]]:
        """Patroni's view of the cluster (from the first node that answers)."""
        for name in self.layout.names:
            try:
                status, body = self.rest(name, "/cluster", timeout=1.0)
            except OSError:
                continue
            if status == 200 and isinstance(body, dict):
                return body.get("members", [])
        return []

    def leader(self) -> str | None:
        for m in self.members():
            if m.get("role") in ("leader", "master", "primary") and m.get("state") == "running":
                return m["name"]
        return None

    def healthy(self, replicas: int | None = None) -> bool:
        """A running leader, a running synchronous standby and `replicas` running standbys in all."""
        ms = self.members()
        want = self.layout.nodes - 1 if replicas is None else replicas
        leader = [m for m in ms if m.get("role") in ("leader", "master", "primary") and m.get("state") == "running"]
        standbys = [
            m
            for m in ms
            if m.get("role") in ("replica", "sync_standby")
            and m.get("state") in ("running", "streaming")
            and isinstance(m.get("lag"), int)
        ]
        sync = [m for m in standbys if m.get("role") == "sync_standby"]
        return len(leader) == 1 and len(standbys) >= want and (want == 0 or len(sync) >= 1)

    def writable_nodes(self) -> list[str]:
        """Nodes whose PostgreSQL accepts connections and is not in recovery."""
        out = []
        for name in self.layout.names:
            try:
                with psycopg.connect(
                    self.layout.url("postgres", port=self.layout.pg_port(name)), connect_timeout=2, autocommit=True
                ) as conn:
                    if not scalar(conn, "SELECT pg_is_in_recovery()"):
                        out.append(name)
            except psycopg.OperationalError:
                continue
        return out

    def timelines(self) -> dict[str, int]:
        return {m["name"]: int(m["timeline"]) for m in self.members() if m.get("timeline") is not None}

    def switchover(self, candidate: str | None = None) -> str:
        """Planned switchover through Patroni's REST API; returns the new leader."""
        leader = self.leader()
        assert leader, "no leader to switch over from"
        if candidate is None:
            sync = [m["name"] for m in self.members() if m.get("role") == "sync_standby"]
            candidate = sync[0] if sync else next(n for n in self.layout.names if n != leader)
        status, body = self.rest(leader, "/switchover", "POST", {"leader": leader, "candidate": candidate}, timeout=60)
        if status != 200:
            raise RuntimeError(f"switchover refused ({status}): {body}")
        wait_until(lambda: self.leader() == candidate, 60, f"{candidate} to lead")
        return candidate

    # --- whole cluster -----------------------------------------------------
    def up(self, migrate: bool = True, timeout: float = 180.0) -> None:
        missing = missing_binaries()
        if missing:
            raise RuntimeError(f"missing {', '.join(missing)}: run `make deps` (Debian packages)")
        self.render()
        self.say("starting etcd")
        self.start_etcd()
        self.say("starting Patroni nodes")
        for name in self.layout.names:
            self.start_node(name)
        self.say("starting HAProxy")
        self.start_haproxy()
        self.say("waiting for a leader and streaming standbys")

        def formed() -> bool:
            dead = [n for n in self.layout.names if self.pid(f"patroni-{n}") is None]
            if dead:
                raise RuntimeError(f"Patroni exited on {', '.join(dead)}: see {self.layout.log_dir}")
            return self.healthy()

        wait_until(formed, timeout, "a leader, a synchronous standby and streaming replicas", 0.5)
        wait_until(lambda: self.writes_reach_primary(), 30, "HAProxy to route writes to the primary", 0.3)
        self.say("creating the shieldx database")
        self._create_database()
        if migrate:
            self.say("migrating (on the primary, through HAProxy)")
            from shieldx import schema

            schema.migrate(self.layout.url())
        self.say("creating the pgBackRest stanza")
        self.pgbackrest("stanza-create")

    def writes_reach_primary(self) -> bool:
        """Whether HAProxy's write port leads to a primary now."""
        with psycopg.connect(self.layout.url("postgres"), connect_timeout=2, autocommit=True) as conn:
            return not scalar(conn, "SELECT pg_is_in_recovery()")

    def _create_database(self) -> None:
        with psycopg.connect(self.layout.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DBNAME}"')

    def down(self, purge: bool = False) -> None:
        """Stop HAProxy, the standbys, the leader (so nothing fails over), then etcd."""
        self._stop("haproxy", 15)
        leader = None
        try:
            leader = self.leader()
        except Exception:  # noqa: BLE001, S110 - stopping must work on a broken cluster too
            pass
        order = [n for n in self.layout.names if n != leader] + ([leader] if leader else [])
        for name in order:
            self.stop_node(name)
        self._stop("etcd", 15)
        if purge and self.layout.base.exists():
            shutil.rmtree(self.layout.base)

    def running(self) -> dict[str, int | None]:
        procs = ["etcd", "haproxy"] + [f"patroni-{n}" for n in self.layout.names]
        out = {p: self.pid(p) for p in procs}
        for n in self.layout.names:
            out[f"postgres-{n}"] = self.postmaster_pid(n)
        return out

    # --- backups -----------------------------------------------------------
    def pgbackrest(self, command: str, *args: str, node: str | None = None, timeout: float = 300) -> str:
        """Run pgbackrest as postgres against the current primary (or `node`)."""
        argv = ["pgbackrest", f"--config={self.layout.pgbackrest_conf}", f"--stanza={STANZA}"]
        if command in ("backup", "check", "stanza-create", "stanza-upgrade"):  # these talk to the primary
            node = node or self.leader()
            assert node, "no primary"
            argv += [f"--pg1-path={self.layout.data_dir(node)}", f"--pg1-port={self.layout.pg_port(node)}"]
        argv += [*args, command]
        done = subprocess.run(argv, capture_output=True, text=True, env=pg_env(), timeout=timeout, **as_postgres())
        if done.returncode != 0:
            raise RuntimeError(f"pgbackrest {command} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def backup(self, kind: str = "full") -> dict[str, Any]:
        """`shieldx backup run` against the current primary: a pgBackRest backup of its data directory,
        recorded in ops.backups (the backup freshness metric reads it). Returns what happened."""
        from shieldx.cli.backup import run_backup

        node = self.leader()
        if node is None:
            raise RuntimeError("no primary: nothing to back up")
        port = self.layout.pg_port(node)
        # The primary's data directory and port go by environment, not as options: pgBackRest refuses
        # pg1-* options on the command line of `info`, which run_backup runs after the backup.
        where = {"PGBACKREST_PG1_PATH": str(self.layout.data_dir(node)), "PGBACKREST_PG1_PORT": str(port)}
        saved = {k: os.environ.get(k) for k in where}
        os.environ.update(where)
        try:
            return run_backup(self.layout.url(port=port), kind, STANZA, str(self.layout.pgbackrest_conf))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def restore(self, target_dir: Path, *args: str) -> None:
        """Restore the repository into an empty scratch data directory (owned by postgres)."""
        target_dir.mkdir(parents=True, exist_ok=True)
        target_dir.chmod(0o700)
        chown(target_dir)
        argv = [
            "pgbackrest",
            f"--config={self.layout.pgbackrest_conf}",
            f"--stanza={STANZA}",
            f"--pg1-path={target_dir}",
            "--archive-mode=off",
            *args,
            "restore",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, env=pg_env(), timeout=300, **as_postgres())
        if done.returncode != 0:
            raise RuntimeError(f"pgbackrest restore failed ({done.returncode}): {done.stdout}{done.stderr}")
