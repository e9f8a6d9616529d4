#!/usr/bin/env python3
"""azurestack-exporter benchmark: scrape cost against the floor, memory, start-up, refresh cycles.

Static fleets (N stamps): the installed exporter is started, timed to /-/ready, and its
/metrics is loaded with hey (plain text, gzip, OpenMetrics); in the same run the identical
bytes are served from memory by a minimal Python HTTP server, the floor, under the same
load. Ratios are exporter / floor. The CPU each server spent per scrape (user and system,
all threads) is printed beside them: on a shared machine the rates move with the
neighbours' load, the CPU per scrape much less. RSS is read after the load.

Admin fleets (M stamps) against the fake admin endpoint with injected latency per request:
the wall time until every stamp has been read once, against its floor, the request chain
times the latency times the number of rounds the concurrency allows.

Prints a table and writes JSON for comparisons over time. Not a test: figures, not verdicts.
    python bench/bench.py                       # the full run (make bench)
    python bench/bench.py --fleets 100 --admin 50 --duration 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import secrets
import socket
import sys
import tempfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import ROOT, LoadResult, exporter, hey, machine

from exporter.config import DEFAULT_REFRESH_CONCURRENCY

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
    with urllib.request.urlopen(request, timeout=60) as response:
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


def admin_fleet(m: int, latency: float, concurrency: int, work: Path) -> dict:
    from fake_azurestack import FakeAzureStack, FakeStamp
    from pki import make_ca, make_server_cert

    ca = make_ca()
    (work / "ca.pem").write_bytes(ca.cert_pem)
    fake = FakeAzureStack(make_server_cert(ca)).start()
    lines = ["refresh_interval: 10m", "stamps:"]
    if concurrency != DEFAULT_REFRESH_CONCURRENCY:
        lines.insert(1, f"refresh_concurrency: {concurrency}")
    stamps = []
    for i in range(m):
        secret = secrets.token_urlsafe(16)
        (work / f"admin-{i}.secret").write_text(secret)
        stamp = FakeStamp(f"admin{i:05d}", secret=secret, current_version=VERSIONS[i % len(VERSIONS)])
        stamp.faults.latency = latency
        stamps.append(stamp)
        lines += [
            f"  - name: {stamp.name}",
            "    admin:",
            f"      endpoint: {fake.add_stamp(stamp)}",
            "      tenant: adfs",
            f"      client_id: {stamp.client_id}",
            f"      client_secret_file: {work / f'admin-{i}.secret'}",
            f"      ca_file: {work / 'ca.pem'}",
            "      timeout: 30s",
        ]
    config = work / f"admin-{m}.yml"
    config.write_text("\n".join(lines) + "\n")
    try:
        with exporter(config, log=work / f"admin-{m}.log", timeout=600) as running:
            wall = running.ready_seconds
            report = json.loads(fetch(f"{running.url}/api/v1/stamps", {})[0])
            up = sum(1 for s in report["stamps"] if s["up"])
            rss = running.rss_mib()
    finally:
        fake.stop()
    chain = max(len(s.log) for s in stamps)  # requests per stamp that pay the latency
    rounds = math.ceil(m / concurrency)
    floor = rounds * chain * latency
    return {
        "stamps": m,
        "latency_seconds": latency,
        "concurrency": concurrency,
        "requests_per_stamp": chain,
        "wall_seconds": wall,
        "floor_seconds": floor,
        "ratio": wall / floor,
        "up": up,
        "rss_mib": rss,
    }


def fmt(result: LoadResult | dict) -> tuple[float, float, float]:
    data = result if isinstance(result, dict) else result.__dict__
    return data["rps"], data["p50_ms"], data["p99_ms"]


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
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load per case (default 5)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent scrapers (default 8)")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default bench/results/bench-DATE.json)")
    args = parser.parse_args(argv)

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
    if admin_sizes:
        print()
        print(
            f"{'admin':>6} {'latency':>8} {'conc.':>6} {'req/stamp':>9} {'wall s':>8} {'floor s':>8} {'ratio':>6} "
            f"{'up':>6} {'RSS MiB':>8}"
        )
    for m in admin_sizes:
        case = admin_fleet(m, args.latency, args.refresh_concurrency or DEFAULT_REFRESH_CONCURRENCY, work)
        results["admin"].append(case)
        print(
            f"{m:>6} {case['latency_seconds']:>8.2f} {case['concurrency']:>6} {case['requests_per_stamp']:>9} "
            f"{case['wall_seconds']:>8.2f} {case['floor_seconds']:>8.2f} {case['ratio']:>6.2f} "
            f"{case['up']:>6} {case['rss_mib']:>8.1f}"
        )
    out = args.json or ROOT / "bench" / "results" / f"bench-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print()
    print(f"JSON: {out}")
    errors = sum(f[v]["exporter"]["errors"] for f in results["static"] for v in VARIANTS)
    down = sum(a["stamps"] - a["up"] for a in results["admin"])
    return 1 if errors or down else 0


if __name__ == "__main__":
    sys.exit(main())
