"""What the monitoring tests share: a test copy of the alert rules with short `for:`, and questions to
a running Prometheus and Alertmanager (deploy/tests/test_monitoring_fault.py, test_ha_failover.py)."""

from __future__ import annotations

import json
import re
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from shieldx_local.observe import RULES_GLOB, Stack, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "monitoring" / "dashboards"
FOR_IN_TESTS = "2s"

# Dashboard queries that can only return data with Patroni targets (job "patroni", from the HA
# harness's file_sd list): the single-node stacks of test_monitoring_fault.py have none, so
# test_ha_failover.py checks these against its Patroni cluster.
NEEDS_PATRONI = {
    'up{job="patroni"}': "Patroni members: the HA cluster's REST endpoints",
    "patroni_primary": "Patroni's own metric",
    "patroni_postgres_running": "Patroni's own metric",
    "shieldx:patroni_timeline:max": "recorded from Patroni's patroni_postgres_timeline",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def shortened_rules(dest: Path) -> Path:
    """The real rule files, each `for:` set to FOR_IN_TESTS; returns the glob Prometheus loads."""
    dest.mkdir(parents=True)
    for src in sorted(RULES_GLOB.parent.glob(RULES_GLOB.name)):
        doc = yaml.safe_load(src.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = FOR_IN_TESTS
        (dest / src.name).write_text(
            f"# Test copy of {src.relative_to(ROOT)}, `for:` {FOR_IN_TESTS}\n" + yaml.safe_dump(doc)
        )
    return dest / RULES_GLOB.name


def active(observe: Stack, alertname: str | None = None, state: str | None = "firing", **labels: str) -> list[dict]:
    """Prometheus's alerts in `state` ("firing", "pending", or None for both), by name and labels."""
    alerts = get_json(f"{observe.prometheus_url}/api/v1/alerts")["data"]["alerts"]
    return [
        a
        for a in alerts
        if (alertname is None or a["labels"]["alertname"] == alertname)
        and (state is None or a["state"] == state)
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def firing(observe: Stack, alertname: str, **labels: str) -> list[dict]:
    return active(observe, alertname, "firing", **labels)


def in_alertmanager(observe: Stack, alertname: str, **labels: str) -> list[dict]:
    matchers = [f'alertname="{alertname}"', *(f'{k}="{v}"' for k, v in labels.items())]
    query = urllib.parse.urlencode([("filter", m) for m in matchers] + [("active", "true")])
    return get_json(f"{observe.alertmanager_url}/api/v2/alerts?{query}")


def wait_all_up(observe: Stack) -> None:
    def all_up() -> bool:
        targets = observe.targets()
        return bool(targets) and all(t["health"] == "up" for t in targets)

    try:
        wait_until(all_up, 30, "every target to be up")
    except TimeoutError:
        pytest.fail(f"targets: {observe.targets()}")


def query(observe: Stack, expr: str) -> dict:
    return get_json(f"{observe.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")


def dashboard_exprs() -> list[tuple[str, str]]:
    """(dashboard file, PromQL) of every panel query of deploy/monitoring/dashboards."""
    return [
        (board.name, json.loads(e))
        for board in sorted(DASHBOARDS.glob("*.json"))
        for e in re.findall(r'"expr": ("(?:[^"\\]|\\.)*")', board.read_text())
    ]


def evaluated_since(observe: Stack, since: float) -> bool:
    """Every rule group has been evaluated after `since` (a Unix time)."""
    groups = get_json(f"{observe.prometheus_url}/api/v1/rules")["data"]["groups"]
    stamps = [g["lastEvaluation"] for g in groups]
    return bool(stamps) and all(_unix(s) > since for s in stamps)


def _unix(rfc3339: str) -> float:
    from datetime import datetime

    text = re.sub(r"(\.\d{6})\d+", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()
