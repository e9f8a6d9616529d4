#!/usr/bin/env python3
"""azurestack-exporter benchmark: scrape cost against the floor, memory, start-up, refresh cycles.

Static fleets (N stamps): the installed exporter is started, timed to /-/ready, and its
/metrics is loaded with hey (plain text, gzip, OpenMetrics); in the same run the identical
bytes are served from memory by a minimal Python HTTP server, the floor, under the same
load. Ratios are exporter / floor. The CPU each server spent per scrape (user and system,
all threads) is printed beside them: on a shared machine the rates move with the
neighbours' load, the CPU per scrape much less. RSS is read after the load.

Admin fleets (M stamps, bench/fleet.py): each stamp on its own loopback addresses (its
management endpoint and its AD FS) with its own certificates from one CA, all served by one
event loop, every request answered after the injected latency. The exporter reads them every
refresh_interval; measured are the wall time until every stamp is up against its floor (the
rounds the concurrency allows x the requests of a first read x the latency), the exporter's
RSS (and threads, sockets, CPU) after the first read and after each full refresh, the
requests and TLS handshakes per stamp per refresh once nothing changes (counted at the fake,
by kind), and how long a version installed on one stamp after the first read takes to show
on /metrics, in seconds and refresh intervals. --tracemalloc adds where the exporter's
Python memory goes (slower: a diagnosis, not figures).

Prints a table and writes JSON for comparisons over time. Not a test: figures, not verdicts.
    python bench/bench.py                       # the full run (make bench)
    python bench/bench.py --fleets 100 --admin 50 --duration 2
    python bench/bench.py --fleets '' --admin 1000 --latency 0.2 --refreshes 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import os
import re
import resource
import secrets
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import DIRECT, ROOT, Exporter, LoadResult, exporter, hey, machine, process_figures
from fake_azurestack import FakeStamp, Run, Update
from fleet import KINDS, FakeFleet, Request
from pki import make_ca

from exporter.config import DEFAULT_REFRESH_CONCURRENCY

# The next Microsoft package of each (the catalog's next release or newest hotfix).
NEXT = {
    "1.2601.0.4": "1.2601.1.14",
    "1.2506.2.24": "1.2506.3.30",
    "1.2506.0.15": "1.2506.3.30",
    "1.2501.1.47": "1.2506.0.15",
    "1.2408.1.50": "1.2501.0.21",
    "1.2406.1.23": "1.2408.0.19",
}
VERSIONS = ["1.2601.0.4", "1.2506.2.24", "1.2506.0.15", "1.2501.1.47", "1.2408.1.50", "1.2406.1.23"]
VARIANTS = {
    "text": {"hey": ["-disable-compression"], "headers": {}},
    "gzip": {"hey": [], "headers": {"Accept-Encoding": "gzip"}},
    "openmetrics": {
        "hey": ["-disable-compression", "-H", "Accept: application/openmetrics-text; version=1.0.0"],
        "headers": {"Accept": "application/openmetrics-text; version=1.0.0"},
    },
}


class FloorServer:
    """The floor: the same bytes, from memory, by the smallest Python HTTP server that keeps connections."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                super().setup()

            def do_GET(self) -> None:
                self.send_response(200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fetch(url: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    with DIRECT.open(request, timeout=60) as response:
        kept = {k: v for k, v in response.headers.items() if k in ("Content-Type", "Content-Encoding")}
        return response.read(), kept


def write_fleet(path: Path, n: int) -> None:
    lines = ["refresh_interval: 10m", "stamps:"]
    for i in range(n):
        lines.append(
            f"  - {{name: stamp{i:05d}, version: {VERSIONS[i % len(VERSIONS)]}, oem_version: 2.4.2508.4, "
            f"labels: {{site: site{i % 50:02d}, environment: {'production' if i % 3 else 'lab'}}}}}"
        )
    path.write_text("\n".join(lines) + "\n")


def static_fleet(n: int, work: Path, duration: float, concurrency: int) -> dict:
    config = work / f"fleet-{n}.yml"
    write_fleet(config, n)
    result: dict = {"stamps": n}
    with exporter(config, log=work / f"fleet-{n}.log") as running:
        result["ready_seconds"] = running.ready_seconds
        url = f"{running.url}/metrics"
        for name, variant in VARIANTS.items():
            body, headers = fetch(url, variant["headers"])  # also warms the cache
            floor = FloorServer(body, headers)
            try:
                # The floor runs in this process, which does nothing else while hey runs.
                base = hey(floor.url, 0, concurrency, "-z", f"{duration}s", *variant["hey"], pid=os.getpid())
                measured = hey(url, 0, concurrency, "-z", f"{duration}s", *variant["hey"], pid=running.process.pid)
            finally:
                floor.stop()
            result[name] = {
                "bytes": len(body),
                "exporter": measured.__dict__,
                "floor": base.__dict__,
                "throughput_ratio": measured.rps / base.rps if base.rps else math.nan,
                "p99_ratio": measured.p99_ms / base.p99_ms if base.p99_ms else math.nan,
                "cpu_us_per_scrape": measured.cpu_seconds / measured.requests * 1e6 if measured.requests else math.nan,
                "floor_cpu_us_per_scrape": base.cpu_seconds / base.requests * 1e6 if base.requests else math.nan,
            }
        result["rss_mib"] = running.rss_mib()
    return result


def admin_stamps(m: int, work: Path) -> list[FakeStamp]:
    """M stamps, each with its own client and secret, on the versions of the static fleets.

    Each lists what a stamp lists: its installed build, the next Microsoft package (Ready; none
    on the newest build) and an OEM package, in two pages; and one succeeded update run.
    """
    stamps = []
    for i in range(m):
        version = VERSIONS[i % len(VERSIONS)]
        secret = secrets.token_urlsafe(16)
        (work / f"admin-{i}.secret").write_text(secret)
        stamp = FakeStamp(f"admin{i:05d}", secret=secret, current_version=version)
        stamp.updates = [Update(version, "Installed"), Update("2.4.2508.4", "Ready", "OEM")]
        if NEXT.get(version):
            stamp.updates.insert(1, Update(NEXT[version], "Ready"))
        stamp.runs = {version: [Run("Succeeded", "2026-09-30T08:09:12.8824552Z", "PT14H43M50.0644552S")]}
        stamps.append(stamp)
    return stamps


def install_next(stamp: FakeStamp) -> str:
    """The stamp installs its next Microsoft package: the update location and the list say so."""
    ready = next(u for u in stamp.updates if u.state == "Ready" and u.package_type != "OEM")
    ready.state = "Installed"
    stamp.current_version = ready.version
    stamp.last_updated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return ready.version


class Scraper:
    """/metrics of the running exporter, as Prometheus reads it: per stamp, up, last success, version."""

    SERIES = re.compile(r"^azurestack_stamp_(up|info|last_success_timestamp_seconds)\{([^}\n]*)\} (\S+)$", re.M)
    LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def stamps(self) -> dict[str, tuple[bool, float | None, str | None]]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        up: dict[str, bool] = {}
        success: dict[str, float] = {}
        versions: dict[str, str] = {}
        for metric, labels, value in self.SERIES.findall(text):
            named = dict(self.LABEL.findall(labels))
            stamp = named.get("stamp", "")
            if metric == "up":
                up[stamp] = float(value) == 1
            elif metric == "info":
                versions[stamp] = named.get("version", "")
            else:
                success[stamp] = float(value)
        return {name: (is_up, success.get(name), versions.get(name) or None) for name, is_up in up.items()}


def reads(requests: list[Request], gap: float) -> list[list[Request]]:
    """A stamp's requests split into its reads: a pause longer than ``gap`` starts the next one."""
    split: list[list[Request]] = []
    for request in sorted(requests, key=lambda r: r.at):
        if not split or request.at - split[-1][-1].at > gap:
            split.append([])
        split[-1].append(request)
    return split


def kinds_per_read(split: list[list[Request]]) -> dict[str, float]:
    """Requests of each kind in a read, on average over the reads given; kinds never asked for left out."""
    totals = {kind: sum(1 for read in split for r in read if r.kind == kind) for kind in KINDS}
    return {kind: round(total / len(split), 3) for kind, total in totals.items() if total}


def auto_interval(m: int, latency: float, concurrency: int) -> float:
    """A refresh_interval about as long as a first read of the whole fleet with ten requests a stamp
    (rounded up to 5 s, at least 15 s): long enough that reads do not pile up, short enough to wait for."""
    return max(15.0, 5 * math.ceil(math.ceil(m / concurrency) * 10 * latency / 5))


def admin_fleet(
    m: int,
    latency: float,
    concurrency: int,
    interval: float,
    refreshes: int,
    idle_timeout: float,
    work: Path,
    traced: bool = False,
) -> dict:
    ca = make_ca()
    ca_file = work / "ca.pem"
    ca_file.write_bytes(ca.cert_pem)
    directory = work / f"admin-{m}"
    directory.mkdir(exist_ok=True)
    stamps = admin_stamps(m, directory)
    with FakeFleet(stamps, ca, directory, latency, idle_timeout) as fleet:
        lines = [f"refresh_interval: {interval:g}s", "stamps:"]
        if concurrency != DEFAULT_REFRESH_CONCURRENCY:
            lines.insert(1, f"refresh_concurrency: {concurrency}")
        for i, member in enumerate(fleet.members):
            lines += [
                f"  - name: {member.stamp.name}",
                "    admin:",
                f"      endpoint: {member.endpoint}",
                "      tenant: adfs",
                f"      client_id: {member.stamp.client_id}",
                f"      client_secret_file: {directory / f'admin-{i}.secret'}",
                f"      ca_file: {ca_file}",
                "      timeout: 30s",
            ]
        config = work / f"admin-{m}.yml"
        config.write_text("\n".join(lines) + "\n")
        rounds = math.ceil(m / concurrency)
        command, env, trace = (), None, None
        if traced:
            trace = work / f"tracemalloc-{m}"
            trace.mkdir(exist_ok=True)
            command = (sys.executable, str(Path(__file__).with_name("traced_exporter.py")))
            env = {**os.environ, "AZS_BENCH_TRACEMALLOC": str(trace)}
        timeout = rounds * 30 * latency + 120
        with exporter(config, log=work / f"admin-{m}.log", timeout=timeout, command=command, env=env) as running:
            measured = watch(running, fleet, interval, refreshes, trace)
    return summarize(m, latency, concurrency, interval, refreshes, idle_timeout, fleet, measured)


def figures_now(pid: int, fleet: FakeFleet, trace: Path | None, label: str) -> dict:
    """The exporter's memory, threads, sockets and CPU; the fake's open connections and CPU; with
    ``trace``, the exporter's largest Python allocation sites too."""
    figures = process_figures(pid)
    figures["open_at_fake"] = fleet.open_connections
    figures["fake_cpu_seconds"] = fleet.cpu_seconds()
    if trace is not None:
        (trace / "request").write_text(label)
        result, limit = trace / f"{label}.json", time.monotonic() + 120
        while not result.exists() and time.monotonic() < limit:
            time.sleep(0.2)
        if result.exists():
            figures["tracemalloc"] = json.loads(result.read_text())
    return figures


def watch(running: Exporter, fleet: FakeFleet, interval: float, refreshes: int, trace: Path | None) -> dict:
    """From /-/ready on: all up, a version change on one stamp, and ``refreshes`` reads of every stamp."""
    pid, scraper = running.process.pid, Scraper(running.url)
    started = time.monotonic() - running.ready_seconds
    first = figures_now(pid, fleet, trace, "refresh-1")  # at /-/ready: every stamp read once
    seen = scraper.stamps()
    all_up = running.ready_seconds if all(up for up, _, _ in seen.values()) else None
    up_at_ready = sum(1 for up, _, _ in seen.values() if up)
    # The stamp read last in the first round installs its next package just after that read.
    target = next(member for member in reversed(fleet.members) if NEXT.get(member.stamp.current_version))
    before = target.stamp.current_version
    box: list[str] = []
    fleet.call(lambda: box.append(install_next(target.stamp)))
    changed_at, after = time.monotonic(), box[0]
    successes = {name: {last} for name, (_, last, _) in seen.items()}
    done_at: dict[int, float] = {1: running.ready_seconds}
    figures: dict[int, dict] = {1: first}
    shown_at = None
    limit = changed_at + (refreshes + 1) * interval * 1.1 + 60
    while time.monotonic() < limit:
        time.sleep(1.0)
        seen = scraper.stamps()
        now = time.monotonic()
        for name, (_, last, version) in seen.items():
            successes.setdefault(name, set()).add(last)
            if name == target.stamp.name and version == after and shown_at is None:
                shown_at = now
        if all_up is None and len(seen) == len(fleet.members) and all(up for up, _, _ in seen.values()):
            all_up = now - started
        for k in range(2, refreshes + 1):
            complete = len(successes) == len(fleet.members)
            if k not in done_at and complete and all(len(values - {None}) >= k for values in successes.values()):
                done_at[k] = now - started
                figures[k] = figures_now(pid, fleet, trace, f"refresh-{k}")
        if refreshes in done_at and shown_at is not None:
            break
    final = json.loads(fetch(f"{running.url}/api/v1/stamps", {})[0])
    return {
        "started": started,
        "up_at_ready": up_at_ready,
        "all_up_seconds": all_up,
        "refresh_done_seconds": done_at,
        "process": figures,
        "change": {
            "stamp": target.stamp.name,
            "from": before,
            "to": after,
            "changed_at": changed_at,
            "shown_at": shown_at,
        },
        "up_at_end": sum(1 for s in final["stamps"] if s["up"]),
        "version_at_end": next(s["version"] for s in final["stamps"] if s["stamp"] == target.stamp.name),
    }


def summarize(
    m: int,
    latency: float,
    concurrency: int,
    interval: float,
    refreshes: int,
    idle_timeout: float,
    fleet: FakeFleet,
    measured: dict,
) -> dict:
    """Requests per read from the fake's log; the floor; the version change in seconds and reads."""
    change = measured["change"]
    per_stamp = {member.stamp.name: reads(member.requests, interval / 2) for member in fleet.members}
    first = [split[0] for split in per_stamp.values() if split]
    chain = max(len(r) for r in first)
    rounds = math.ceil(m / concurrency)
    floor = rounds * chain * latency
    wall = measured["all_up_seconds"]
    first_request = min(r.at for member in fleet.members for r in member.requests) - measured["started"]
    steady: dict[str, dict] = {}
    for k in range(2, refreshes + 1):
        counted = [split[k - 1] for name, split in per_stamp.items() if name != change["stamp"] and len(split) >= k]
        if not counted:
            continue
        handshakes = []
        for name, split in per_stamp.items():
            if name == change["stamp"] or len(split) < k:
                continue
            earlier = {r.connection for read in split[: k - 1] for r in read}
            handshakes.append(len({r.connection for r in split[k - 1]} - earlier))
        steady[str(k)] = {
            "stamps": len(counted),
            "requests_mean": sum(len(r) for r in counted) / len(counted),
            "requests_max": max(len(r) for r in counted),
            "by_kind": kinds_per_read(counted),
            "handshakes_mean": sum(handshakes) / len(handshakes),
        }
    target_reads = per_stamp[change["stamp"]]
    shown = change["shown_at"]
    # The reads of the changed stamp that started after the change, up to the one that showed it.
    reads_to_show = (
        sum(1 for read in target_reads if change["changed_at"] < read[0].at <= shown) if shown is not None else None
    )
    started = measured["started"]
    return {
        "stamps": m,
        "latency_seconds": latency,
        "concurrency": concurrency,
        "refresh_interval_seconds": interval,
        "idle_timeout_seconds": idle_timeout,
        "first_read": {
            "requests_per_stamp": chain,
            "requests_per_stamp_min": min(len(r) for r in first),
            "by_kind": kinds_per_read(first),
            "handshakes_per_stamp": sum(len({r.connection for r in read}) for read in first) / len(first),
        },
        "rounds": rounds,
        "floor_seconds": floor,
        "ready_seconds": measured["refresh_done_seconds"][1],
        "all_up_seconds": wall,
        "ratio": wall / floor if wall is not None else math.nan,
        "first_request_seconds": first_request,  # the exporter's start-up, before any stamp is asked
        "ratio_from_first_request": (wall - first_request) / floor if wall is not None else math.nan,
        "up": measured["up_at_end"],
        "up_at_ready": measured["up_at_ready"],
        "refresh_done_seconds": {str(k): v for k, v in measured["refresh_done_seconds"].items()},
        "refreshes": refreshes,
        "refreshes_done": max(measured["refresh_done_seconds"]),
        "process": {str(k): v for k, v in measured["process"].items()},
        "rss_first_read_mib": measured["process"][1]["rss_mib"],
        "rss_after_refreshes_mib": measured["process"].get(refreshes, {}).get("rss_mib", math.nan),
        "steady": steady,
        "version_change": {
            "stamp": change["stamp"],
            "from": change["from"],
            "to": change["to"],
            "changed_after_start_seconds": change["changed_at"] - started,
            "shown_seconds": None if shown is None else shown - change["changed_at"],
            "shown_in_refreshes": None if shown is None else (shown - change["changed_at"]) / interval,
            "reads_until_shown": reads_to_show,
            "version_at_end": measured["version_at_end"],
        },
    }


def fmt(result: LoadResult | dict) -> tuple[float, float, float]:
    data = result if isinstance(result, dict) else result.__dict__
    return data["rps"], data["p50_ms"], data["p99_ms"]


def print_admin(case: dict) -> None:
    m, first, change = case["stamps"], case["first_read"], case["version_change"]
    process = case["process"]
    print()
    print(
        f"{m:,} admin stamps, each on its own addresses and certificates; {case['latency_seconds'] * 1000:g} ms a "
        f"request, refresh_concurrency {case['concurrency']}, refresh_interval {case['refresh_interval_seconds']:g} s, "
        f"idle connections closed by the stamps after {case['idle_timeout_seconds']:g} s"
    )
    kinds = ", ".join(f"{kind} {count:g}" for kind, count in first["by_kind"].items())
    wall = case["all_up_seconds"]
    print(
        f"  first read: {first['requests_per_stamp']} requests a stamp ({kinds}), "
        f"{first['handshakes_per_stamp']:.2f} TLS handshakes; floor {case['rounds']} rounds x "
        f"{first['requests_per_stamp']} x {case['latency_seconds']:g} s = {case['floor_seconds']:.1f} s; "
        + (
            f"all up after {wall:.1f} s, ratio {case['ratio']:.2f} ({case['ratio_from_first_request']:.2f} from "
            f"the first request, {case['first_request_seconds']:.1f} s after start)"
            if wall is not None
            else "NOT all up"
        )
        + f" ({case['up_at_ready']} up at /-/ready after {case['ready_seconds']:.1f} s)"
    )
    print(f"  {'refresh':>7} {'done at s':>9} {'RSS MiB':>8} {'peak':>6} {'anon':>6} {'threads':>7} {'sock/CW':>9} "
          f"{'at fake':>7} {'CPU s':>6} {'fake':>6} {'req/stamp':>9} {'max':>4} {'TLS':>5}  by kind")  # fmt: skip
    for k, figures in process.items():
        steady = case["steady"].get(k)
        done = case["refresh_done_seconds"][k]
        row = (
            f"  {k:>7} {done:>9.1f} {figures['rss_mib']:>8.1f} {figures['hwm_mib']:>6.1f} {figures['anon_mib']:>6.1f} "
            f"{figures['threads']:>7} {figures['sockets']:>5}/{figures['close_wait']:<3} {figures['open_at_fake']:>7} "
            f"{figures['cpu_seconds']:>6.1f} {figures['fake_cpu_seconds']:>6.1f}"
        )
        if steady:
            kinds = ", ".join(f"{kind} {count:g}" for kind, count in steady["by_kind"].items())
            requests, most, handshakes = steady["requests_mean"], steady["requests_max"], steady["handshakes_mean"]
            row += f" {requests:>9.2f} {most:>4} {handshakes:>5.2f}  {kinds}"
        print(row)
    if case["refreshes_done"] < case["refreshes"]:
        print(f"  only {case['refreshes_done']} of {case['refreshes']} refreshes done in time")
    for k, figures in process.items():
        traced = figures.get("tracemalloc")
        if traced:
            print(
                f"  tracemalloc after refresh {k}: {traced['traced_mib']:.1f} MiB of Python objects traced "
                f"(RSS {figures['rss_mib']:.1f} MiB); largest by file:"
            )
            for site in traced["by_filename"][:10]:
                print(f"    {site['mib']:>7.1f} MiB {site['blocks']:>8} blocks  {site['where']}")
    shown = change["shown_seconds"]
    print(
        f"  version change on {change['stamp']} ({change['from']} -> {change['to']}, "
        f"{change['changed_after_start_seconds']:.1f} s after start): "
        + (
            f"shown after {shown:.1f} s = {change['shown_in_refreshes']:.2f} refresh intervals, "
            f"at its read {change['reads_until_shown']} after the change"
            if shown is not None
            else f"NOT shown (the exporter says {change['version_at_end']})"
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--fleets", default="10,100,1000,5000", help="static fleet sizes (default 10,100,1000,5000)")
    parser.add_argument("--admin", default="50,200,1000", help="admin fleet sizes (default 50,200,1000; '' skips)")
    parser.add_argument("--latency", type=float, default=0.2, help="injected latency per admin request, seconds")
    parser.add_argument(
        "--refresh-concurrency",
        type=int,
        help=f"refresh_concurrency for admin fleets (default: the exporter's, {DEFAULT_REFRESH_CONCURRENCY})",
    )
    parser.add_argument(
        "--refresh-interval",
        type=float,
        help="refresh_interval for admin fleets, seconds (default: about the first read's floor with ten "
        "requests a stamp, at least 15 s: 65 s at 1,000 stamps)",
    )
    parser.add_argument(
        "--refreshes",
        type=int,
        default=3,
        help="reads of every admin stamp to wait for, the first included (default 3)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=120.0,
        help="seconds the fake stamps keep an idle connection open (default 120, as HTTP.sys)",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="run the exporter with tracemalloc and report its largest allocation sites (slower: a diagnosis, "
        "not figures to compare)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per case (default 5)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent scrapers (default 8)")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default bench/results/bench-DATE.json)")
    args = parser.parse_args(argv)
    if args.refreshes < 2:
        parser.error("--refreshes must be at least 2: the first read, and one to count requests in")
    # Two listening sockets a stamp, and the connections to them: the soft limit up to the hard one
    # (the exporter, started from here, inherits it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, 65536) if hard == resource.RLIM_INFINITY else hard
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    needed = 4 * max([int(x) for x in args.admin.split(",") if x], default=0) + 100
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        sys.exit(f"{needed} open files needed, {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} allowed: ulimit -Hn")

    work = Path(tempfile.mkdtemp(prefix="azs-bench-"))
    started = dt.datetime.now(dt.UTC)
    results: dict = {"date": started.isoformat(timespec="seconds"), "machine": machine(), "static": [], "admin": []}
    print(
        f"azurestack-exporter benchmark, {started:%Y-%m-%d}, {machine()}; {args.concurrency} concurrent scrapers, "
        f"{args.duration:g} s per case"
    )
    print()
    print(
        f"{'stamps':>6} {'format':<12} {'bytes':>9} {'req/s':>8} {'floor':>8} {'ratio':>6} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'floor p99':>9} {'p99 x':>6} {'CPU us':>6} {'floor':>6} {'errors':>6}"
    )
    for n in [int(x) for x in args.fleets.split(",") if x]:
        fleet = static_fleet(n, work, args.duration, args.concurrency)
        results["static"].append(fleet)
        for name in VARIANTS:
            case = fleet[name]
            rps, p50, p99 = fmt(case["exporter"])
            frps, _, fp99 = fmt(case["floor"])
            print(
                f"{n:>6} {name:<12} {case['bytes']:>9} {rps:>8.0f} {frps:>8.0f} {case['throughput_ratio']:>6.2f} "
                f"{p50:>7.2f} {p99:>7.2f} {fp99:>9.2f} {case['p99_ratio']:>6.2f} {case['cpu_us_per_scrape']:>6.0f} "
                f"{case['floor_cpu_us_per_scrape']:>6.0f} {case['exporter']['errors']:>6}"
            )
        print(f"{n:>6} start to ready {fleet['ready_seconds']:.2f} s, RSS {fleet['rss_mib']:.1f} MiB")
    admin_sizes = [int(x) for x in args.admin.split(",") if x]
    concurrency = args.refresh_concurrency or DEFAULT_REFRESH_CONCURRENCY
    for m in admin_sizes:
        interval = args.refresh_interval or auto_interval(m, args.latency, concurrency)
        case = admin_fleet(
            m, args.latency, concurrency, interval, args.refreshes, args.idle_timeout, work, args.tracemalloc
        )
        results["admin"].append(case)
        print_admin(case)
    out = args.json or ROOT / "bench" / "results" / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(f"JSON: {out}; configurations and logs: {work}")
    errors = sum(f[v]["exporter"]["errors"] for f in results["static"] for v in VARIANTS)
    down = sum(a["stamps"] - a["up"] for a in results["admin"])
    unseen = sum(1 for a in results["admin"] if a["version_change"]["shown_seconds"] is None)
    return 1 if errors or down or unseen else 0


if __name__ == "__main__":
    sys.exit(main())
