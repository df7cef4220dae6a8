"""deploy/monitoring/dashboards: every panel's PromQL parses, names only metrics that exist, and the JSON is
what generate.py (grafana-foundation-sdk) writes.

That every query returns data from a real Prometheus is checked where one runs: the fresh-stack test of
test_monitoring_fault.py (every panel whose metrics a target exports) and, for the Patroni panels,
test_ha_failover.py::test_ha_standbys_stopped_fire_alerts_and_resolve."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metric_names import API_METRICS, DATABASE_METRICS

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "deploy" / "monitoring" / "dashboards"
RULES = sorted((ROOT / "deploy" / "monitoring" / "prometheus" / "rules").glob("*.yml"))


def panels(node: dict) -> list[dict]:
    found = []
    for panel in node.get("panels", []):
        found.append(panel)
        found.extend(panels(panel))
    return found


def queries() -> dict[str, list[str]]:
    out = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        out[path.name] = [t["expr"] for p in panels(board) for t in p.get("targets", []) if t.get("expr")]
    return out


def recorded() -> set[str]:
    return {
        r["record"] for p in RULES for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"] if "record" in r
    }


def test_monitoring_dashboards_cover_credits_shadow_and_database() -> None:
    found = queries()
    assert set(found) == {"credits.json", "shadow.json", "database.json"}
    for name, exprs in found.items():
        assert len(exprs) >= 5, name
    every = " ".join(e for exprs in found.values() for e in exprs)
    for needed in (
        "shieldx_http_requests_total",  # throughput
        "histogram_quantile(0.99",  # latency percentiles
        "shieldx_refusals_total",  # refusals by code
        "shieldx_holds_active",  # holds
        "shieldx_shadow_experiments",
        "shieldx_shadow_rollbacks_total",
        "shieldx_replication_max_replay_lag_seconds",
        "shieldx_job_last_success_age_seconds",
        "shieldx_audit_last_verify_ok",
        "shieldx_backup_last_success_age_seconds",
    ):
        assert needed in every, needed


def test_monitoring_dashboard_queries_parse_with_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install the Debian package prometheus (apt-get install prometheus)")
    exprs = [e for found in queries().values() for e in found]
    rules = {
        "groups": [
            {"name": "dashboards", "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    (tmp_path / "dashboards.yml").write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "dashboards.yml")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_monitoring_dashboard_queries_name_only_known_metrics() -> None:
    known = API_METRICS | set(DATABASE_METRICS) | recorded()
    for name, exprs in queries().items():
        for expr in exprs:
            for metric in re.findall(r"\bshieldx[_:][a-z0-9_:]+", expr):
                assert metric in known, f"{name}: {metric} in {expr!r}"


def test_monitoring_dashboards_are_what_the_generator_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(DASHBOARDS / "generate.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
