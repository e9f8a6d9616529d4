#!/usr/bin/env python3
"""Load run: thousands of scrapes from concurrent clients against a running exporter.

Serves the demo configuration three ways (plain HTTP; TLS; TLS with basic auth) and drives
/metrics, /probe and the status page with hey. Prints requests, errors, throughput and
p50/p99 latency per case, and exits 1 if any request failed. Not a test: it reports figures.
    python bench/load.py [--requests 5000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from common import ROOT, exporter, hey, machine
from pki import make_ca, make_server_cert

PASSWORD = "bench-password"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per case (default 5000)")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="azs-load-"))
    ca = make_ca()
    cert, key = make_server_cert(ca).write(work, "server")
    (work / "tls.yml").write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()
    (work / "tls-auth.yml").write_text((work / "tls.yml").read_text() + f"basic_auth_users:\n  bench: '{hashed}'\n")
    config = ROOT / "examples" / "demo.yml"
    # Debian's hey 0.1.4 ignores -a, so the header is sent as it is.
    basic = "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()

    cases = [
        ("plain", "http", [], []),
        ("tls", "https", ["--web.config.file=" + str(work / "tls.yml")], []),
        ("tls+auth", "https", ["--web.config.file=" + str(work / "tls-auth.yml")], ["-H", f"Authorization: {basic}"]),
    ]
    paths = [("/metrics", []), ("/metrics gzip", []), ("/probe", []), ("/", [])]
    results = []
    print(
        f"azurestack-exporter load run: {args.requests} requests per case, {args.concurrency} concurrent clients, "
        f"{machine()}"
    )
    print(f"{'server':<9} {'path':<14} {'requests':>7} {'errors':>6} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for name, scheme, flags, auth in cases:
        with exporter(config, *flags, scheme=scheme) as running:
            for label, _ in paths:
                path = {"/metrics gzip": "/metrics", "/probe": "/probe?target=dub-lab"}.get(label, label)
                options = [*auth] + ([] if label == "/metrics gzip" else ["-disable-compression"])
                result = hey(running.url + path, args.requests, args.concurrency, *options)
                results.append({"server": name, "path": label, **result.__dict__})
                print(f"{name:<9} {label:<14} {result.row()}")
    errors = sum(r["errors"] for r in results)
    print(f"total errors: {errors}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
