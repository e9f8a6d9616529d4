"""Child processes of the end-to-end tests (Prometheus, Alertmanager): start, wait, stop by PID."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import free_port, http_get
from conftest import stop_process as stop  # also used by the e2e tests


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)


def start_prometheus(binary: str, tmp_path: Path, config: dict) -> tuple[str, subprocess.Popen[bytes]]:
    """Prometheus with ``config`` (written to tmp_path/prometheus.yml) on a free loopback port,
    ready: (its URL, its process, for the caller to stop). Stopped here if it never gets ready."""
    port, log = free_port(), tmp_path / "prometheus.log"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = start(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", process, log)
    except BaseException:
        stop(process)
        raise
    return url, process


def start_alertmanager(binary: str, tmp_path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Alertmanager with tmp_path/alertmanager.yml on a free loopback port, no cluster, ready:
    (its URL, its process, for the caller to stop). Stopped here if it never gets ready."""
    port, log = free_port(), tmp_path / "alertmanager.log"
    process = start(
        [
            binary,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", process, log)
    except BaseException:
        stop(process)
        raise
    return url, process


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
