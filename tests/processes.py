"""Child processes of the end-to-end tests (Prometheus, Alertmanager): start, wait, stop by PID."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import http_get
from conftest import stop_process as stop  # noqa: F401 - re-exported for the e2e tests


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if http_get(url, timeout=1)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")
