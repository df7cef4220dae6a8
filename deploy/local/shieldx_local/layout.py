"""Where one local HA cluster keeps its files, and which loopback ports it uses.

Port layout (offset 0 = `python -m shieldx_local ha up`; tests and benchmarks claim a free offset):
  HAProxy writes 55500, reads 55510, stats 55520; PostgreSQL 55501-55503;
  Patroni REST 58001-58003; etcd client 52379, peer 52380.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .state import state_dir

DBNAME = "shieldx"


@dataclass(frozen=True)
class Layout:
    """Files and ports of one HA cluster."""

    base: Path
    offset: int = 0
    nodes: int = 3
    scope: str = "shieldx"

    @property
    def writes_port(self) -> int:
        return 55500 + self.offset

    @property
    def reads_port(self) -> int:
        return 55510 + self.offset

    @property
    def stats_port(self) -> int:
        return 55520 + self.offset

    @property
    def etcd_port(self) -> int:
        return 52379 + self.offset

    @property
    def etcd_peer_port(self) -> int:
        return 52380 + self.offset

    @property
    def names(self) -> list[str]:
        return [f"node{i}" for i in range(1, self.nodes + 1)]

    def index(self, name: str) -> int:
        return int(name.removeprefix("node"))

    def pg_port(self, name: str) -> int:
        return 55500 + self.offset + self.index(name)

    def rest_port(self, name: str) -> int:
        return 58000 + self.offset + self.index(name)

    def node_dir(self, name: str) -> Path:
        return self.base / name

    def data_dir(self, name: str) -> Path:
        return self.base / name / "data"

    def key_dir(self, name: str) -> Path:
        """A node's copy of the keyring (its `shieldx.key_dir`)."""
        return self.base / name / "keys"

    @property
    def keyring(self) -> Path:
        """The cluster's keyring, made once; every node gets a copy (as a Kubernetes Secret would)."""
        return self.base / "keys"

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    @property
    def pgbackrest_conf(self) -> Path:
        return self.base / "pgbackrest" / "pgbackrest.conf"

    def all_ports(self) -> list[int]:
        return (
            [self.writes_port, self.reads_port, self.stats_port, self.etcd_port, self.etcd_peer_port]
            + [self.pg_port(n) for n in self.names]
            + [self.rest_port(n) for n in self.names]
        )

    def url(self, dbname: str = DBNAME, user: str = "postgres", port: int | None = None) -> str:
        """Through HAProxy's write port unless a node port is given."""
        return f"postgresql://{user}@127.0.0.1:{port or self.writes_port}/{dbname}"

    def app_url(self, dbname: str = DBNAME) -> str:
        """What the API uses: HAProxy, and libpq refuses any server that is not read-write."""
        return (
            f"postgresql://shieldx_app@127.0.0.1:{self.writes_port}/{dbname}"
            "?target_session_attrs=read-write&connect_timeout=3"
        )


def default_layout() -> Layout:
    """The cluster of `ha up`: `$SHIELDX_HA_DIR`, else `ha/` in the state directory."""
    return Layout(
        base=Path(os.environ.get("SHIELDX_HA_DIR", state_dir() / "ha")),
        offset=int(os.environ.get("SHIELDX_HA_PORT_OFFSET", "0")),
    )
