"""deploy/monitoring: the alert rules, their unit tests and the Prometheus/Alertmanager configs.

Runs the ecosystem's own checkers (Debian packages prometheus and prometheus-alertmanager):
`promtool check rules`, `promtool check config`, `promtool test rules` and `amtool check-config`;
then checks what they cannot: every alerting rule carries a severity, a summary, a description and a
runbook_url whose anchor exists in docs/runbooks.md, and the unit tests fire every alert once and keep
it quiet once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS = MONITORING / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.yml"))
TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
PROMETHEUS_CONFIGS = sorted(PROMETHEUS.glob("prometheus*.yml"))
ALERTMANAGER_CONFIG = MONITORING / "alertmanager" / "alertmanager.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SEVERITIES = {"page", "ticket", "info"}
PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package {PACKAGES[name]} (apt-get install {PACKAGES[name]})")
    return path


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd)


def alerting_rules() -> list[dict]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file (lower case, punctuation dropped, spaces → -)."""
    anchors: set[str] = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", m.group(1)).lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_monitoring_rule_files_pass_promtool_check_rules() -> None:
    done = run(tool("promtool"), "check", "rules", *map(str, RULES))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS, ids=lambda p: p.name)
def test_monitoring_prometheus_config_passes_promtool_check_config(config: Path, tmp_path: Path) -> None:
    done = run(tool("promtool"), "check", "config", str(config))
    if "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        # Debian builds Prometheus without Kubernetes service discovery: check everything else
        # (relabelling, alerting, rule paths) with the discovery swapped for an empty file_sd.
        parsed = yaml.safe_load(config.read_text())
        for job in parsed["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
        (tmp_path / "targets.json").write_text("[]")
        (tmp_path / config.name).write_text(yaml.safe_dump(parsed))
        done = run(tool("promtool"), "check", "config", str(tmp_path / config.name))
    assert done.returncode == 0, done.stdout + done.stderr


def test_monitoring_rule_unit_tests_pass() -> None:
    done = run(tool("promtool"), "test", "rules", *(p.name for p in TESTS), cwd=PROMETHEUS / "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(TESTS), done.stdout


def test_monitoring_alertmanager_config_passes_amtool() -> None:
    done = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr


def test_monitoring_checkers_reject_broken_files(tmp_path: Path) -> None:
    """The checks above can fail: a rule with a PromQL typo, a unit test expecting the wrong alert labels."""
    rules = yaml.safe_load((PROMETHEUS / "rules" / "api.yml").read_text())
    rules["groups"][0]["rules"][1]["expr"] = 'up{job="shieldx-api"} == = 0'
    (tmp_path / "bad-rules.yml").write_text(yaml.safe_dump(rules))
    assert run(tool("promtool"), "check", "rules", str(tmp_path / "bad-rules.yml")).returncode != 0

    (tmp_path / "rules").mkdir()
    shutil.copy(PROMETHEUS / "rules" / "api.yml", tmp_path / "rules" / "api.yml")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "api.yml").write_text(
        (PROMETHEUS / "tests" / "api.yml")
        .read_text()
        .replace("{severity: page, job: shieldx-api, instance: a}", "{severity: ticket, job: shieldx-api, instance: a}")
    )
    done = run(tool("promtool"), "test", "rules", "api.yml", cwd=tmp_path / "tests")
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr


def test_monitoring_has_at_least_15_alerts_with_severity_summary_description_and_runbook() -> None:
    rules = alerting_rules()
    names = [r["alert"] for r in rules]
    assert len(names) >= 15, names
    assert len(set(names)) == len(names), "alert names must be unique"
    anchors = github_anchors(RUNBOOKS.read_text())
    for rule in rules:
        name = rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary", "").strip(), name
        assert annotations.get("description", "").strip(), name
        url = annotations.get("runbook_url", "")
        assert url.startswith("docs/runbooks.md#"), (name, url)
        assert url.split("#", 1)[1] in anchors, f"{name}: no heading in docs/runbooks.md for {url}"


def test_monitoring_every_alert_has_a_case_that_fires_it_and_one_that_keeps_it_quiet() -> None:
    fired: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                name = check["alertname"]
                expected = check.get("exp_alerts") or []
                (fired if expected else quiet)[name] = (fired if expected else quiet).get(name, 0) + 1
                for alert in expected:
                    # The right labels and annotations: promtool compares them exactly; here, that they are given.
                    assert alert["exp_labels"].get("severity") in SEVERITIES, (path.name, name)
                    assert {"summary", "description", "runbook_url"} <= set(alert["exp_annotations"]), (path.name, name)
    names = {r["alert"] for r in alerting_rules()}
    assert names - set(fired) == set(), "alerts no test fires"
    assert names - set(quiet) == set(), "alerts no test keeps quiet"
    assert set(fired) | set(quiet) <= names, "tests of alerts that do not exist"


def test_monitoring_unit_tests_load_every_rule_file() -> None:
    loaded = {(path.parent / f).resolve() for path in TESTS for f in yaml.safe_load(path.read_text())["rule_files"]}
    assert {p.resolve() for p in RULES} <= loaded


def test_monitoring_runbook_anchor_parsing() -> None:
    assert github_anchors("# Runbooks\n## ShieldxApiDown\n### Lost primary: fail over\n```\n# not a heading\n```") == {
        "runbooks",
        "shieldxapidown",
        "lost-primary-fail-over",
    }


def test_monitoring_k8s_pods_are_annotated_for_the_scrape_jobs_the_rules_use() -> None:
    """prometheus-k8s.yml finds targets by pod annotations: each names a job the rules know and a real port."""
    jobs: dict[str, int] = {}
    for path in sorted((ROOT / "deploy" / "k8s").glob("[0-9]*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] not in {"Deployment", "StatefulSet"}:
                continue
            template = doc["spec"]["template"]
            annotations = template["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/scrape") != "true":
                continue
            port = int(annotations["prometheus.io/port"])
            ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
            assert port in ports, (doc["metadata"]["name"], port, ports)
            jobs[annotations["prometheus.io/job"]] = port
    assert jobs == {"shieldx-api": 8000, "patroni": 8008, "postgres-exporter": 9187}
    rules_text = "".join(p.read_text() for p in RULES)
    for job in jobs:
        assert f'job="{job}"' in rules_text, job
