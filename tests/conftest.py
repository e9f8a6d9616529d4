"""Shared test helpers: the installed console script, free ports, exporter processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

# In-process code must never depend on the machine's time zone: the tests run 12 hours west of
# UTC, where a date stamped at midnight UTC is still the day before (a POSIX zone, so no tzdata
# is needed). Child processes keep the environment's zone.
_ZONE = os.environ.get("TZ")
os.environ["TZ"] = "ASE+12"
time.tzset()
if _ZONE is None:
    del os.environ["TZ"]
else:
    os.environ["TZ"] = _ZONE

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def console_script() -> str:
    """The installed ``azurestack-exporter`` next to this interpreter."""
    path = BIN / "azurestack-exporter"
    if not path.exists():
        found = shutil.which("azurestack-exporter")
        if not found:
            pytest.fail("azurestack-exporter is not installed in this environment (run make test)")
        return found
    return str(path)


@pytest.fixture(params=["libyaml", "pure"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs twice: YAML read by libyaml's parser, then by PyYAML's own (the fallback
    where PyYAML is built without libyaml). Every bound must hold under both."""
    from exporter import config

    if request.param == "libyaml":
        if config.C_LOADERS is None:
            (pytest.fail if IN_CI else pytest.skip)("PyYAML is built without libyaml")
        monkeypatch.setattr(config, "LOADERS", config.C_LOADERS)
    else:
        monkeypatch.setattr(config, "LOADERS", None)
    return request.param


def require_tool(name: str) -> str:
    """A system tool the tests run for real; missing is a failure in CI, a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it)"
        (pytest.fail if IN_CI else pytest.skip)(message)  # with CI=true a missing tool fails, never skips
    return path


def eventually(observe: Callable[[], T], expected: T, timeout: float = 30, interval: float = 0.3) -> T:
    """Poll ``observe`` until it returns ``expected`` (the very state the test asserts), then return it.

    Waiting for one condition and asserting another is how end-to-end tests become flaky: the
    caller passes the whole state it asserts, so a pass means that state was seen, and a
    failure shows the last state observed.
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = observe()
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def http_post(url: str, timeout: float = 10) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@dataclass
class RunningExporter:
    process: subprocess.Popen[str]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


@contextlib.contextmanager
def exporter_process(
    config: Path,
    *extra: str,
    tmp_path: Path,
    env: dict[str, str] | None = None,
    scheme: str = "http",
    ready_check: bool = True,
) -> Iterator[RunningExporter]:
    """Start the installed exporter on a free loopback port; stop it by PID afterwards.

    It is ready when /-/ready answers 200, or (``ready_check=False``: TLS or basic auth in
    front) when the port accepts connections.
    """
    port = free_port()
    log_path = tmp_path / f"exporter-{port}.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [console_script(), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", *extra],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
    url = f"{scheme}://127.0.0.1:{port}"
    running = RunningExporter(process, url, log_path)
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                pytest.fail(f"exporter exited with {process.returncode}:\n{running.log()}")
            with contextlib.suppress(OSError):
                if ready_check:
                    if http_get(f"{url}/-/ready", timeout=1)[0] == 200:
                        break
                else:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"exporter not ready after 20 s:\n{running.log()}")
            time.sleep(0.05)
        yield running
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s: every child a test starts ends here."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the fake admin endpoint

SECRET = "Sup3r-S3cret-Client-Value-7f1c"


@pytest.fixture
def pki(tmp_path) -> dict[str, object]:
    """A CA, the client secret file and a service principal's certificate, in ``tmp_path``."""
    from pki import make_ca, make_client_cert

    ca = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "secret").write_text(SECRET + "\n")
    spn = make_client_cert("azurestack-exporter spn")
    spn.write_combined(tmp_path / "spn.pem")
    return {"ca": ca, "ca_file": tmp_path / "ca.pem", "secret_file": tmp_path / "secret", "spn": spn}


@pytest.fixture
def fake(pki):
    """The fake admin endpoint over HTTPS with a certificate from ``pki``'s CA, stopped afterwards."""
    from fake_azurestack import FakeAzureStack
    from pki import make_server_cert

    with FakeAzureStack(make_server_cert(pki["ca"])) as server:
        yield server


def admin_stamp(fake, stamp, pki: dict[str, object], **admin: str) -> dict[str, object]:
    """A configuration entry reading ``stamp`` through ``fake`` (added to it) with ``pki``'s
    secret and CA (AD FS), ``admin`` adding or replacing settings (a timeout, say)."""
    settings = {
        "endpoint": fake.add_stamp(stamp),
        "tenant": "adfs",
        "client_id": stamp.client_id,
        "client_secret_file": str(pki["secret_file"]),
        "ca_file": str(pki["ca_file"]),
    }
    return {"name": stamp.name, "admin": {**settings, **admin}}


def confirmed_catalog(directory: Path) -> str:
    """A catalog file its maintainer confirmed today (no releases of its own), as a config line:
    with it the release knowledge is fresh, so ``check`` can exit 0."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    path = write(directory / "confirmed-today.yml", f"confirmed: {today}\nreleases: []\n")
    return f"catalog: {{files: [{path}]}}\n"
