"""Shared pieces of the benchmarks: starting the installed exporter, running hey, reading RSS.

Benchmarks print figures and ratios measured in the same run; they are not tests and assert
nothing about speed, except that no request failed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The exporter is on this machine: no proxy from the environment between it and the benchmark.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
EXPORTER = Path(sys.executable).parent / "azurestack-exporter"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        sys.exit(f"{name} is not installed: run `make bench`, which installs it (Debian package {name})")
    return path


@dataclass
class Exporter:
    process: subprocess.Popen[bytes]
    url: str
    ready_seconds: float

    def rss_mib(self) -> float:
        return rss_mib(self.process.pid)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used, all its threads together."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.contextmanager
def exporter(
    config: Path,
    *args: str,
    scheme: str = "http",
    log: Path | None = None,
    ready_path: str = "/-/ready",
    timeout: float = 120,
    command: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Exporter]:
    """Start the installed exporter; yields once /-/ready answers (or the port opens, for TLS/auth).

    ``command`` runs it another way (a wrapper that takes the exporter's arguments), with ``env``.
    """
    port = free_port()
    sink = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    started = time.monotonic()
    process = subprocess.Popen(
        [*(command or [str(EXPORTER)]), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}", *args],
        stdout=sink,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                sys.exit(f"exporter exited with {process.returncode}" + (f"; see {log}" if log else ""))
            if time.monotonic() - started > timeout:
                sys.exit(f"exporter not ready after {timeout} s")
            try:
                if scheme == "http" and ready_path:
                    with DIRECT.open(f"{url}{ready_path}", timeout=2) as response:
                        if response.status == 200:
                            break
                else:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
            except OSError:
                pass
            time.sleep(0.02)
        yield Exporter(process, url, time.monotonic() - started)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        if log:
            sink.close()  # type: ignore[union-attr]


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_seconds: float = float("nan")  # of the server's process, while hey ran (when its pid was given)

    def row(self) -> str:
        return f"{self.requests:>7} {self.errors:>6} {self.rps:>10.0f} {self.p50_ms:>9.2f} {self.p99_ms:>9.2f}"


def hey(url: str, requests: int, concurrency: int, *options: str, pid: int | None = None) -> LoadResult:
    """Run hey and read its per-request CSV: status codes and latency percentiles, and the CPU
    the server's process ``pid`` used meanwhile.

    ``requests`` 0 leaves the count to a duration given in ``options`` (``-z 5s``).
    """
    started = time.monotonic()
    cpu = cpu_seconds(pid) if pid else float("nan")
    count = ["-n", str(requests)] if requests else []
    result = subprocess.run(
        [tool("hey"), *count, "-c", str(concurrency), "-o", "csv", *options, url],
        capture_output=True,
        text=True,
        check=False,
    )
    cpu = cpu_seconds(pid) - cpu if pid else cpu
    elapsed = time.monotonic() - started
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    latencies = sorted(float(r["response-time"]) * 1000 for r in rows)
    missing = max(0, requests - len(rows)) if requests else 0
    errors = sum(1 for r in rows if r["status-code"] != "200") + missing
    if not latencies:
        return LoadResult(requests, requests, elapsed, 0.0, float("nan"), float("nan"), cpu)
    span = max(float(r["offset"]) + float(r["response-time"]) for r in rows)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return LoadResult(len(rows), errors, span, len(rows) / span, q[49], q[98], cpu)


def machine() -> str:
    return f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"


def process_figures(pid: int) -> dict:
    """Memory and what may hold it, from /proc: RSS, its peak, anonymous and file-backed parts,
    threads, open file descriptors and, among them, sockets."""
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()

    def mib(key: str) -> float:
        return int(status[key].split()[0]) / 1024 if key in status else float("nan")

    fds = os.listdir(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    states = tcp_states(inodes)
    return {
        "rss_mib": mib("VmRSS"),
        "hwm_mib": mib("VmHWM"),
        "anon_mib": mib("RssAnon"),
        "file_mib": mib("RssFile"),
        "threads": int(status.get("Threads", "0")),
        "cpu_seconds": cpu_seconds(pid),
        "fds": len(fds),
        "sockets": len(inodes),
        # Closed by the peer, not yet by the process: a connection the pool still holds, and its memory.
        "close_wait": states.get("08", 0),
    }


def tcp_states(inodes: set[str]) -> dict[str, int]:
    """How many of these sockets are in each TCP state (the kernel's hex code: 01 established, 08 close-wait)."""
    counts: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[9] in inodes:
                    counts[fields[3]] = counts.get(fields[3], 0) + 1
    return counts
