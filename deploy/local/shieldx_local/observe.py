"""`observe`: Prometheus, Alertmanager and postgres_exporter on loopback, for a local ShieldX.

    python -m shieldx_local observe up|down|status        (make observe; make stop stops it)

Everything comes from Debian's packages (prometheus, prometheus-alertmanager,
prometheus-postgres-exporter) and runs as the invoking user:

  Prometheus        127.0.0.1:9090  config deploy/monitoring/prometheus/prometheus.yml, rendered
  Alertmanager      127.0.0.1:9093  config deploy/monitoring/alertmanager/alertmanager.yml
  postgres_exporter 127.0.0.1:9187  queries deploy/monitoring/exporter/queries.yaml, connecting as
                                    shieldx_monitor to the shieldx database of the local cluster
                                    (port $SHIELDX_PGPORT, default 55432; $SHIELDX_MONITOR_DSN overrides)

Files live in <state>/observe/ (the state directory rule of deploy/local: $SHIELDX_STATE_DIR, else
<repo>/.local, ...): prometheus.yml (rendered), data/, log/, run/*.pid, and
targets/patroni.json, the file_sd list of Patroni REST endpoints Prometheus scrapes (job "patroni").
The HA harness writes that file with `write_patroni_targets` when its cluster comes up and empties it
when it goes down; without it, or empty, Prometheus simply has no Patroni targets.

`up` is idempotent: what runs is only checked. `status` shows each process and every target
Prometheus scrapes, and exits 1 unless all run and every target is up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .processes import pid_alive, port_free, wait_until
from .state import state_dir

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
RULES_GLOB = MONITORING / "prometheus" / "rules" / "*.yml"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager" / "alertmanager.yml"
EXPORTER_QUERIES = MONITORING / "exporter" / "queries.yaml"

# process name -> (binary, Debian package)
BINARIES = {
    "prometheus": ("prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager"),
    "postgres-exporter": ("prometheus-postgres-exporter", "prometheus-postgres-exporter"),
}
ORDER = ("postgres-exporter", "alertmanager", "prometheus")


class ObserveError(RuntimeError):
    """Something the user must act on (a missing package, a port held by another program)."""


def missing_packages() -> list[str]:
    return [package for binary, package in BINARIES.values() if shutil.which(binary) is None]


def default_dsn() -> str:
    port = os.environ.get("SHIELDX_PGPORT", "55432")
    return os.environ.get(
        "SHIELDX_MONITOR_DSN", f"postgresql://shieldx_monitor@127.0.0.1:{port}/shieldx?sslmode=disable"
    )


def http_get(url: str, timeout: float = 2.0, method: str = "GET") -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def write_patroni_targets(nodes: list[tuple[str, int]], path: Path | None = None, host: str = "127.0.0.1") -> Path:
    """Tell Prometheus which Patroni REST endpoints to scrape: [(node name, REST port), ...] ([] = none).

    Written atomically (Prometheus re-reads file_sd files when they change); the label `node`
    names each member.
    """
    path = path or Stack().patroni_targets
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = [{"targets": [f"{host}:{port}"], "labels": {"node": name}} for name, port in nodes]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, indent=2) + "\n")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class Stack:
    """One local monitoring stack: where its files are and which loopback ports it uses."""

    base: Path = field(default_factory=lambda: state_dir() / "observe")
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    exporter_port: int = 9187
    api_port: int = 8000
    dsn: str = field(default_factory=default_dsn)
    scrape_interval: str | None = None  # None: as in prometheus.yml
    evaluation_interval: str | None = None
    queries: Path = EXPORTER_QUERIES
    alertmanager_config: Path = ALERTMANAGER_CONFIG
    rule_files: Path = RULES_GLOB  # a glob of rule files (a test renders a copy with shorter `for:`)

    @property
    def patroni_targets(self) -> Path:
        return self.base / "targets" / "patroni.json"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://127.0.0.1:{self.alertmanager_port}"

    @property
    def exporter_url(self) -> str:
        return f"http://127.0.0.1:{self.exporter_port}"

    def port(self, proc: str) -> int:
        return {
            "prometheus": self.prometheus_port,
            "alertmanager": self.alertmanager_port,
            "postgres-exporter": self.exporter_port,
        }[proc]

    def pidfile(self, proc: str) -> Path:
        return self.base / "run" / f"{proc}.pid"

    def logfile(self, proc: str) -> Path:
        return self.base / "log" / f"{proc}.log"

    # --- configuration --------------------------------------------------------------------
    def prometheus_config(self) -> dict[str, Any]:
        """deploy/monitoring/prometheus/prometheus.yml with this stack's ports and paths."""
        config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
        if self.scrape_interval:
            config["global"]["scrape_interval"] = self.scrape_interval
            config["global"]["scrape_timeout"] = self.scrape_interval
        if self.evaluation_interval:
            config["global"]["evaluation_interval"] = self.evaluation_interval
        config["rule_files"] = [str(self.rule_files)]
        config["alerting"]["alertmanagers"] = [
            {"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}
        ]
        ports = {
            "shieldx-api": self.api_port,
            "postgres-exporter": self.exporter_port,
            "prometheus": self.prometheus_port,
            "alertmanager": self.alertmanager_port,
        }
        for job in config["scrape_configs"]:
            if job["job_name"] in ports:
                job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[job['job_name']]}"]}]
            for sd in job.get("file_sd_configs", []):
                sd["files"] = [str(self.base / f) for f in sd["files"]]
        return config

    def render(self) -> None:
        """Write prometheus.yml (only when its content changes) and an empty Patroni target list if none."""
        for sub in ("data/prometheus", "data/alertmanager", "log", "run", "targets"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        if not self.patroni_targets.exists():
            write_patroni_targets([], self.patroni_targets)
        rendered = self.base / "prometheus.yml"
        text = "# Rendered by shieldx_local.observe from deploy/monitoring/prometheus/prometheus.yml: edit that.\n"
        text += yaml.safe_dump(self.prometheus_config(), sort_keys=False)
        if not rendered.exists() or rendered.read_text() != text:
            rendered.write_text(text)

    def argv(self, proc: str) -> list[str]:
        binary = shutil.which(BINARIES[proc][0]) or BINARIES[proc][0]
        if proc == "prometheus":
            return [
                binary,
                f"--config.file={self.base / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.base / 'data' / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
                "--web.enable-lifecycle",
            ]
        if proc == "alertmanager":
            return [
                binary,
                f"--config.file={self.alertmanager_config}",
                f"--storage.path={self.base / 'data' / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{self.alertmanager_port}",
                "--cluster.listen-address=",  # a single instance: no gossip port
            ]
        argv = [binary, f"--web.listen-address=127.0.0.1:{self.exporter_port}"]
        if self.queries.exists():
            argv.append(f"--extend.query-path={self.queries}")
        return argv

    # --- processes --------------------------------------------------------------------------
    def pid(self, proc: str) -> int | None:
        try:
            pid = int(self.pidfile(proc).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def ready(self, proc: str) -> bool:
        if proc == "postgres-exporter":
            return http_get(f"{self.exporter_url}/metrics")[0] == 200
        url = self.prometheus_url if proc == "prometheus" else self.alertmanager_url
        return http_get(f"{url}/-/ready")[0] == 200

    def start(self, proc: str, timeout: float = 60.0) -> str:
        if self.pid(proc):
            wait_until(lambda: self.ready(proc), timeout, f"{proc} to answer on port {self.port(proc)}")
            return "running"
        if not port_free(self.port(proc)):
            raise ObserveError(f"port {self.port(proc)} is taken by another program: {proc} cannot listen there")
        env = dict(os.environ)
        if proc == "postgres-exporter":
            env["DATA_SOURCE_NAME"] = self.dsn
        with open(self.logfile(proc), "ab") as log:
            child = subprocess.Popen(
                self.argv(proc),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base,
                env=env,
                start_new_session=True,
            )
        self.pidfile(proc).write_text(f"{child.pid}\n")

        def answers() -> bool:
            if child.poll() is not None:
                tail = self.logfile(proc).read_text(errors="replace")[-2000:]
                raise ObserveError(f"{proc} exited with {child.returncode}; its log ({self.logfile(proc)}):\n{tail}")
            return self.ready(proc)

        wait_until(answers, timeout, f"{proc} to answer on port {self.port(proc)}")
        return "started"

    def stop(self, proc: str, timeout: float = 20.0) -> bool:
        pid = self.pid(proc)
        if pid is None:
            self.pidfile(proc).unlink(missing_ok=True)
            return False
        try:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not pid_alive(pid), timeout, f"{proc} (pid {pid}) to stop")
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 5, f"{proc} (pid {pid}) to die")
        except ProcessLookupError:
            pass
        self.pidfile(proc).unlink(missing_ok=True)
        return True

    def up(self, say: Callable[[str], None] = print) -> None:
        missing = missing_packages()
        if missing:
            raise ObserveError(
                "missing Debian packages: " + " ".join(missing) + f" (install: apt-get install {' '.join(missing)})"
            )
        if not self.queries.exists():
            say(f"warning: {self.queries.relative_to(ROOT)} not found: the exporter runs without the shieldx queries")
        self.render()
        for proc in ORDER:
            outcome = self.start(proc)
            say(f"{proc:18} {outcome:8} 127.0.0.1:{self.port(proc)}")
        # A Prometheus that was already running re-reads its config and rules if either changed since.
        stamp = self.base / "run" / "prometheus.loaded"
        sources = [self.base / "prometheus.yml", *self.rule_files.parent.glob(self.rule_files.name)]
        if stamp.exists() and max(p.stat().st_mtime for p in sources) > stamp.stat().st_mtime:
            status, body = http_get(f"{self.prometheus_url}/-/reload", method="POST")
            if status != 200:
                raise ObserveError(f"Prometheus refused to reload its configuration ({status}): {body.decode()[:500]}")
            say("prometheus         reloaded its configuration and rules")
        stamp.touch()

    def down(self, say: Callable[[str], None] = print) -> None:
        for proc in reversed(ORDER):
            say(f"{proc:18} {'stopped' if self.stop(proc) else 'not running'}")

    def targets(self) -> list[dict[str, Any]]:
        """Prometheus's active targets (job, instance, health, last error); [] if it does not answer."""
        status, body = http_get(f"{self.prometheus_url}/api/v1/targets?state=active")
        if status != 200:
            return []
        return [
            {
                "job": t["labels"].get("job", ""),
                "instance": t["labels"].get("instance", ""),
                "health": t.get("health", ""),
                "error": t.get("lastError", ""),
            }
            for t in json.loads(body)["data"]["activeTargets"]
        ]

    def rules(self) -> list[dict[str, Any]]:
        """The alerting rules Prometheus has loaded."""
        status, body = http_get(f"{self.prometheus_url}/api/v1/rules?type=alert")
        if status != 200:
            return []
        return [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]

    def status(self, say: Callable[[str], None] = print) -> bool:
        healthy = True
        for proc in ORDER:
            pid = self.pid(proc)
            ready = bool(pid) and self.ready(proc)
            healthy &= ready
            state = "up" if ready else ("not answering" if pid else "stopped")
            say(f"{proc:18} {state:14} pid {pid or '-':<8} http://127.0.0.1:{self.port(proc)}")
        targets = self.targets()
        if targets:
            say(f"targets ({len(self.rules())} alerting rules loaded):")
        for t in sorted(targets, key=lambda t: (t["job"], t["instance"])):
            healthy &= t["health"] == "up"
            error = f"  ({t['error']})" if t["error"] else ""
            say(f"  {t['job']:18} {t['instance']:22} {t['health']}{error}")
        return healthy


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shieldx_local observe",
        description="Prometheus, Alertmanager and postgres_exporter on loopback for a local ShieldX.",
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    stack = Stack()
    try:
        if args.command == "up":
            stack.up()
            print(f"Prometheus {stack.prometheus_url}  Alertmanager {stack.alertmanager_url}  ({stack.base})")
            return 0
        if args.command == "down":
            stack.down()
            return 0
        return 0 if stack.status() else 1
    except (ObserveError, TimeoutError) as exc:
        print(f"observe {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
