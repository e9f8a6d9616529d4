"""Every shell command in the README and docs/ is run here or by a named test.

The commands are read out of the fenced ``sh`` blocks. Each must match a rule: run by this
file (the quick start against `make run`, the CA export against a local TLS server, the
fake-stamp walkthrough) or covered by a test that performs it where this machine cannot
(systemd, Docker, a cluster). A command in the docs that matches no rule fails the suite.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import IN_CI, ROOT, console_script, free_port, http_get
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pki import make_ca, make_server_cert

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.S)
TRANSCRIPT = re.compile(r"```\n(\$ .*?)```", re.S)  # a command with its output
INSTALL_TEST = (
    "tests/test_packaging.py::test_make_install_gives_a_command_that_checks_serves_and_keeps_an_edited_config"
)

# Commands performed by other tests, where this file cannot run them as written.
COVERED = [
    (r"^make test$", ".ci/run"),
    (r"^make install$", INSTALL_TEST),
    (r"^(/opt/azurestack-exporter/bin/)?azurestack-exporter --config\.check --config\.file=/etc/", INSTALL_TEST),
    (r"^azurestack-exporter check --config\.file=/etc/azurestack-exporter/config\.yml$", INSTALL_TEST),
    (r"^systemctl (enable --now|restart) azurestack-exporter$", "tests/test_packaging.py::test_systemd_unit_verifies"),
    (r"^docker (build|push) ", "tests/test_packaging.py::test_the_container_recipe_runs_without_docker"),
    (r"^kubectl (kustomize|apply -k) overlay$",
     "tests/test_packaging.py::test_an_overlay_overrides_image_namespace_and_release_label"),
    (r"^make venv && \.venv/bin/pip install '\.\[test\]'$", "Makefile::test-deps"),
]  # fmt: skip
# Commands this file runs (see the tests below).
RUN = [
    r"^make run$",
    r"^make run CONFIG=/tmp/fake/exporter\.yml$",
    r"^curl -s localhost:10132/",
    r"^\.venv/bin/azurestack-exporter check --config\.file=examples/demo\.yml$",
    r"^azurestack-exporter check --config\.file=examples/demo\.yml$",
    r"^openssl x509 -inform der -in west-root-ca\.cer -out west-root-ca\.pem$",
    r"^openssl s_client -connect adminmanagement\.west\.contoso\.com:443 ",
    r"^apt-get install -y python3-venv make$",
    r"^\.venv/bin/python tests/fake_azurestack\.py --stamps 3 --dir /tmp/fake &$",
]


def commands() -> list[tuple[str, str]]:
    """(file, command) for every command line of every sh block, continuations joined, comments dropped."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for transcript in TRANSCRIPT.findall(text):
            found.append((path.name, re.sub(r"\s{2,}#.*$", "", transcript.splitlines()[0]).removeprefix("$ ").strip()))
        for block in BLOCK.findall(text):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = re.sub(r"\s{2,}#.*$", "", line).strip().removeprefix("$ ")
                if line and not line.startswith("#"):
                    found.append((path.name, line))
    return found


def test_every_documented_command_is_run_or_covered():
    unmatched = [
        (name, command)
        for name, command in commands()
        if not any(re.search(p, command) for p, _ in COVERED) and not any(re.search(p, command) for p in RUN)
    ]
    assert unmatched == [], "commands in the docs that nothing runs"
    assert len(commands()) >= 20


def test_the_tests_that_cover_commands_exist():
    for _, where in COVERED:
        if where == ".ci/run":
            assert "make test" in (ROOT / ".ci" / "run").read_text()
        elif where.startswith("Makefile::"):
            assert re.search(rf"^{where.split('::')[1]}:", (ROOT / "Makefile").read_text(), re.M), where
        else:
            file, name = where.split("::")
            assert f"def {name}(" in (ROOT / file).read_text(), where


def readme_commands(pattern: str) -> list[str]:
    return [command for name, command in commands() if name == "README.md" and re.search(pattern, command)]


class Background:
    """A command in its own process group, stopped with the group."""

    def __init__(self, args: list[str], log: Path, **kwargs) -> None:
        self.log = log
        with open(log, "w") as handle:
            self.process = subprocess.Popen(
                args, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def wait_ready(url: str, background: Background, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_get(url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        assert background.process.poll() is None, background.log.read_text()[-3000:]
        assert time.monotonic() < deadline, background.log.read_text()[-3000:]
        time.sleep(0.3)


def sh(command: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False, **kwargs)


def test_the_quick_start_as_written(tmp_path):
    """make run, then the README's curl and check commands against it."""
    port = free_port()
    run = Background(
        ["make", "run", f"ARGS=--web.listen-address=127.0.0.1:{port}"], tmp_path / "make-run.log", cwd=ROOT
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", run)
        for command in readme_commands(r"^curl -s localhost:10132/"):
            result = sh(command.replace("localhost:10132", f"127.0.0.1:{port}"))
            assert result.returncode == 0 and result.stdout.strip(), (command, result.stderr)
            assert all("azurestack_" in line for line in result.stdout.splitlines()), command
        [check] = readme_commands(r"^\.venv/bin/azurestack-exporter check")
        result = sh(check, cwd=ROOT)
        assert result.returncode == 1  # dub-lab is out of support, as the README says
        assert "OUT OF SUPPORT" in result.stdout and "dub-lab" in result.stdout
    finally:
        run.stop()


def test_exporting_and_checking_the_admin_endpoints_root_ca(tmp_path):
    """The README's two openssl commands, against a local TLS server with a certificate of a test CA."""
    ca, stranger = make_ca("contoso root CA"), make_ca("another CA")
    (tmp_path / "west-root-ca.cer").write_bytes(
        x509.load_pem_x509_certificate(ca.cert_pem).public_bytes(serialization.Encoding.DER)
    )
    cert, key = make_server_cert(ca).write(tmp_path, "server")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        [convert] = readme_commands(r"^openssl x509 -inform der")
        assert sh(convert, cwd=tmp_path).returncode == 0
        assert (tmp_path / "west-root-ca.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
        [verify] = readme_commands(r"^openssl s_client")
        local = verify.replace("adminmanagement.west.contoso.com:443", f"127.0.0.1:{port}")
        result = sh(local, cwd=tmp_path)
        assert "Verify return code: 0 (ok)" in result.stdout, result.stdout[-1500:] + result.stderr[-1500:]
        (tmp_path / "west-root-ca.pem").write_bytes(stranger.cert_pem)  # the wrong CA must not pass
        wrong = sh(local, cwd=tmp_path)
        assert "Verify return code: 0 (ok)" not in wrong.stdout and wrong.returncode != 0
    finally:
        listener.close()


def test_the_package_install_command(tmp_path):
    [command] = [c for _, c in commands() if re.search(r"^apt-get install", c)]
    if os.geteuid() != 0:
        (pytest.fail if IN_CI else pytest.skip)("apt-get install needs root")
    result = sh(command, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_fake_stamp_walkthrough(tmp_path):
    """docs/development.md: three fake admin stamps, read by make run."""
    fake_dir = tmp_path / "fake"
    [start_fake] = [c for _, c in commands() if c.startswith(".venv/bin/python tests/fake_azurestack.py")]
    args = start_fake.removesuffix("&").replace("/tmp/fake", str(fake_dir)).split()
    fake = Background([str(ROOT / args[0]), *args[1:]], tmp_path / "fake.log", cwd=ROOT)
    run = None
    try:
        deadline = time.monotonic() + 30
        while not (fake_dir / "exporter.yml").exists():
            assert time.monotonic() < deadline and fake.process.poll() is None, fake.log.read_text()
            time.sleep(0.2)
        port = free_port()
        config = fake_dir / "exporter.yml"
        run = Background(
            ["make", "run", f"CONFIG={config}", f"ARGS=--web.listen-address=127.0.0.1:{port}"],
            tmp_path / "run.log",
            cwd=ROOT,
        )
        wait_ready(f"http://127.0.0.1:{port}/-/ready", run)
        body = http_get(f"http://127.0.0.1:{port}/metrics")[2].decode()
        ups = re.findall(r'azurestack_stamp_up\{stamp="(stamp\d+)"\} 1\.0', body)
        assert sorted(ups) == ["stamp0000", "stamp0001", "stamp0002"]
    finally:
        if run is not None:
            run.stop()
        fake.stop()


def test_the_documented_check_transcript_matches_what_check_prints():
    """docs/configuration.md shows check's output: its rows must be what check prints (dates aside)."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    [transcript] = [t for t in TRANSCRIPT.findall(text) if "check --config.file=examples/demo.yml" in t]
    documented = [line.split()[:5] for line in transcript.splitlines() if re.match(r"^(ams|fra|lon|dub)-", line)]
    result = subprocess.run(
        [console_script(), "check", "--config.file=examples/demo.yml"],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    printed = [line.split()[:5] for line in result.stdout.splitlines() if re.match(r"^(ams|fra|lon|dub)-", line)]
    assert printed == documented
    assert len(documented) == 4
