"""deploy/k8s: schema-valid (kubernetes-validate, strict) and policy-clean (checkov), offline.

Both tools come from PyPI into their own virtualenv, .local/tools-venv (checkov's
dependency pins would clash with the project's); the first run creates it
(`make k8s-tools` does the same). Neither tool needs the network once installed:
checkov runs with skip-download (deploy/k8s/.checkov.yaml).
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shieldx_local.state import ROOT

pytestmark = pytest.mark.ha

K8S = ROOT / "deploy" / "k8s"
TOOLS = ROOT / ".local" / "tools-venv"
TOOL_PINS = ["checkov==3.3.30", "kubernetes-validate==1.37.0"]
KUBERNETES_VERSION = "1.30.0"
# The only checks allowed to be skipped, each with its reason in deploy/k8s/.checkov.yaml
# (or next to the resource, as a checkov.io/skip annotation).
DOCUMENTED_SKIPS = {"CKV_K8S_43", "CKV_K8S_35", "CKV_K8S_38"}


@pytest.fixture(scope="session")
def tools() -> Path:
    """The tool virtualenv's bin directory (created on first use, under a lock)."""
    TOOLS.parent.mkdir(parents=True, exist_ok=True)
    with open(TOOLS.parent / "tools-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        bin_dir = TOOLS / "bin"
        if not ((bin_dir / "checkov").exists() and (bin_dir / "kubernetes-validate").exists()):
            if not (bin_dir / "python").exists():
                subprocess.run([sys.executable, "-m", "venv", "--clear", str(TOOLS)], check=True)
            subprocess.run(
                [str(bin_dir / "pip"), "install", "-q", "--disable-pip-version-check", *TOOL_PINS],
                check=True,
                timeout=900,
            )
    return bin_dir


def manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if not p.name.startswith("."))


def docs() -> list[dict]:
    return [d for p in manifests() for d in yaml.safe_load_all(p.read_text()) if d]


def find(kind: str, name: str) -> dict:
    return next(d for d in docs() if d["kind"] == kind and d["metadata"]["name"] == name)


def validate(tools: Path, files: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(tools / "kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, "--quiet", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def checkov(tools: Path, directory: Path) -> list[dict]:
    done = subprocess.run(
        [str(tools / "checkov"), "-d", str(directory), "--config-file", str(K8S / ".checkov.yaml"), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip(), done.stderr[-2000:]
    out = json.loads(done.stdout)
    return out if isinstance(out, list) else [out]


def render(release: str, target: Path) -> list[Path]:
    """The manifests of one release: what `envsubst '${RELEASE}'` makes of them (docs/operations/upgrades.md)."""
    out = []
    for path in manifests():
        (target / path.name).write_text(path.read_text().replace("${RELEASE}", release))
        out.append(target / path.name)
    return out


def test_ha_release_names_the_migrate_job_and_the_api_image(tools: Path, tmp_path: Path) -> None:
    """Each release has its own migrate Job (a finished Job is never re-used) and runs its own image."""
    files = render("1.4.2", tmp_path)
    done = validate(tools, files)
    assert done.returncode == 0, done.stdout + done.stderr
    rendered = [d for p in files for d in yaml.safe_load_all(p.read_text()) if d]
    assert "${" not in "".join(p.read_text() for p in files)
    jobs = [d for d in rendered if d["kind"] == "Job"]
    assert [j["metadata"]["name"] for j in jobs] == ["shieldx-migrate-1.4.2"]
    assert jobs[0]["metadata"]["labels"]["app.kubernetes.io/version"] == "1.4.2"
    images = {
        c["image"]
        for d in rendered
        if d["kind"] in ("Deployment", "Job", "CronJob")
        for c in (d["spec"].get("jobTemplate", d)["spec"]["template"]["spec"]["containers"])
        if "shieldx/api" in c["image"]
    }
    assert images == {"ghcr.io/shieldx/api:1.4.2"}


def test_ha_manifests_are_valid_kubernetes(tools: Path) -> None:
    done = validate(tools, manifests())
    assert done.returncode == 0, done.stdout + done.stderr


def test_ha_manifest_validator_rejects_a_typo(tools: Path, tmp_path: Path) -> None:
    """The schema check is real: a misspelt field fails it."""
    bad = tmp_path / "bad.yaml"
    bad.write_text((K8S / "20-api.yaml").read_text().replace("maxUnavailable: 0", "maxUnavailible: 0"))
    done = validate(tools, [bad])
    assert done.returncode != 0 and "maxUnavailible" in done.stdout + done.stderr


def test_ha_manifests_pass_checkov(tools: Path) -> None:
    reports = checkov(tools, K8S)
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    for report in reports:
        failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert failed == [], f"{report['check_type']}: {failed}"
        assert report["summary"]["parsing_errors"] == 0
        skipped = {c["check_id"] for c in report["results"]["skipped_checks"]}
        assert skipped <= DOCUMENTED_SKIPS, skipped - DOCUMENTED_SKIPS
    passed = {c["check_id"] for r in reports for c in r["results"]["passed_checks"]}
    # The hardening the manifests promise, as checkov names it.
    for check in (
        "CKV_K8S_8",
        "CKV_K8S_9",  # liveness, readiness probes
        "CKV_K8S_10",
        "CKV_K8S_11",
        "CKV_K8S_12",
        "CKV_K8S_13",  # requests and limits
        "CKV_K8S_20",
        "CKV_K8S_22",
        "CKV_K8S_23",
        "CKV_K8S_28",
        "CKV_K8S_31",
        "CKV_K8S_37",
        "CKV_K8S_40",
        "CKV2_K8S_6",
    ):  # ... and a NetworkPolicy for every pod
        assert check in passed, check


def test_ha_checkov_catches_a_writable_root_filesystem(tools: Path, tmp_path: Path) -> None:
    shutil.copy(K8S / ".checkov.yaml", tmp_path / ".checkov.yaml")
    (tmp_path / "api.yaml").write_text(
        (K8S / "20-api.yaml").read_text().replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false")
    )
    failed = {c["check_id"] for r in checkov(tools, tmp_path) for c in r["results"]["failed_checks"]}
    assert "CKV_K8S_22" in failed


def test_ha_manifests_declare_replicas_probes_and_hardening() -> None:
    db = find("StatefulSet", "shieldx-db")
    assert db["spec"]["replicas"] == 3
    assert db["spec"]["updateStrategy"] == {"type": "OnDelete"}  # rolled in Patroni's order, by hand
    pod = db["spec"]["template"]["spec"]
    required = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required[0]["topologyKey"] == "kubernetes.io/hostname"
    patroni = pod["containers"][0]
    assert patroni["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": 8008}
    assert patroni["readinessProbe"]["httpGet"] == {"path": "/readiness", "port": 8008}
    config = yaml.safe_load(find("ConfigMap", "shieldx-db-config")["data"]["patroni.yml"])
    assert "kubernetes" in config
    dcs = config["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] and dcs["synchronous_mode_strict"]
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    params = dcs["postgresql"]["parameters"]
    assert params["shared_preload_libraries"] == "pg_cron" and params["cron.use_background_workers"] == "on"
    assert params["max_prepared_transactions"] == 64
    assert find("PodDisruptionBudget", "shieldx-db")["spec"]["minAvailable"] == 2

    api = find("Deployment", "shieldx-api")
    assert api["spec"]["replicas"] == 3
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = api["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert set(container["resources"]) == {"requests", "limits"}
    hpa = find("HorizontalPodAutoscaler", "shieldx-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "shieldx-api" and hpa["spec"]["minReplicas"] == 3
    for workload in (db, api, find("Job", "shieldx-migrate-${RELEASE}")):
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
    deny = find("NetworkPolicy", "default-deny")
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def _log_privacy() -> dict[str, str]:
    """The log settings as deploy/local/cluster.sh sets them (its LOG_PRIVACY line)."""
    text = (ROOT / "deploy" / "local" / "cluster.sh").read_text()
    line = re.search(r'^LOG_PRIVACY="([^"]+)"$', text, re.MULTILINE)
    assert line, "LOG_PRIVACY in cluster.sh"
    return dict(kv.split("=", 1) for kv in line.group(1).split())


def test_ha_log_privacy_settings_agree_in_every_config() -> None:
    """No statement text or bind parameter in the log: the same settings locally, in the harness and in k8s."""
    expected = _log_privacy()
    assert expected == {
        "log_min_error_statement": "panic",
        "log_statement": "none",
        "log_min_duration_statement": "-1",
        "log_parameter_max_length": "0",
        "log_parameter_max_length_on_error": "0",
    }
    harness = yaml.safe_load((ROOT / "deploy" / "patroni" / "patroni.yml.in").read_text())
    k8s = yaml.safe_load(find("ConfigMap", "shieldx-db-config")["data"]["patroni.yml"])
    for config in (harness, k8s):
        params = config["postgresql"]["parameters"]
        assert {k: str(params.get(k)) for k in expected} == expected


def test_ha_db_pods_get_the_keyring_from_secrets() -> None:
    """Every database pod copies the keyring Secrets (one per purpose) into a memory volume, 700/600,
    and shieldx.key_dir names it; the keyring is never in a manifest."""
    pod = find("StatefulSet", "shieldx-db")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for purpose in ("audit", "payment", "subject"):
        assert volumes[f"keyring-{purpose}"]["secret"]["secretName"] == f"shieldx-db-keys-{purpose}"
    assert volumes["keys"]["emptyDir"]["medium"] == "Memory"
    init = next(c for c in pod["initContainers"] if c["name"] == "keyring")
    key_dir = yaml.safe_load(find("ConfigMap", "shieldx-db-config")["data"]["patroni.yml"])["postgresql"]["parameters"][
        "shieldx.key_dir"
    ]
    assert {"name": "keys", "mountPath": key_dir} in init["volumeMounts"]
    assert "install -d -m 700" in init["command"][-1] and "install -m 600" in init["command"][-1]
    patroni = next(c for c in pod["containers"] if c["name"] == "patroni")
    assert {"name": "keys", "mountPath": key_dir} in patroni["volumeMounts"]
    assert not [d for d in docs() if d["kind"] == "Secret"]
