#!/usr/bin/env python3
"""Client attacks at full scale: a legitimate scraper's success rate and the exporter's memory.

For each attack the installed exporter serves a static fleet (1,000 stamps by default); a
scraper at 127.0.0.1 asks for /metrics five times a second (5 s timeout, kept-alive
connection, a new one after a failure) while attackers from 127.0.0.2-127.0.0.9 do their
worst. A baseline without attack is measured in the same run. RSS is read before the attack
and at the end of it; the Kubernetes manifest allows 256 MiB.

    python bench/attacks.py                 # every attack (make bench-attacks)
    python bench/attacks.py --only half-open-tls --seconds 10

Not a test: it prints figures, and exits 1 when a scraper fell below 99 % or memory grew past
the bounds of docs/resilience.md (+100 MiB for handshakes, +20 MiB for Accept headers).
"""

from __future__ import annotations

import argparse
import base64
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import bcrypt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import hostile_clients as hostile
from common import exporter, machine
from pki import make_ca, make_server_cert

from bench import write_fleet

ATTACKERS = [f"127.0.0.{i}" for i in range(2, 10)]
ATTACKS = {
    "none": "no attack (baseline)",
    "post-drip": "5,000 POSTs dripping their body a byte a second, reconnecting",
    "header-trickle": "5,000 header trickles, a byte a second, reconnecting",
    "unknown-users": "200 concurrent requests with unknown basic-auth users",
    "half-open-tls": "4,300 TLS handshakes left half-open, reconnecting",
    "distinct-accept": "10,000 scrapes with distinct Accept headers",
}
MEMORY_BOUND_MIB = {"half-open-tls": 100, "distinct-accept": 20}


def run(name: str, config: Path, work: Path, seconds: float) -> dict:
    args: list[str] = []
    headers: dict[str, str] = {}
    context = None
    scheme = "http"
    if name == "unknown-users":
        hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(10)).decode()
        (work / "auth.yml").write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
        args = [f"--web.config.file={work / 'auth.yml'}"]
        headers = {"Authorization": "Basic " + base64.b64encode(b"prom:secret").decode()}
    if name == "half-open-tls":
        ca = make_ca()
        cert, key = make_server_cert(ca).write(work, "server")
        (work / "ca.pem").write_bytes(ca.cert_pem)
        (work / "tls.yml").write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
        args = [f"--web.config.file={work / 'tls.yml'}"]
        context = ssl.create_default_context(cafile=str(work / "ca.pem"))
        scheme = "https"
    ready = "/-/ready" if scheme == "http" and not headers else ""
    with exporter(config, *args, scheme=scheme, log=work / f"{name}.log", ready_path=ready) as running:
        port = int(running.url.rsplit(":", 1)[1])
        warm = hostile.scrape(port, 2.0, headers=headers, context=context)  # rendered, credentials cached
        before = running.rss_mib()
        peak = before
        extra = ""
        if name == "distinct-accept":
            answered = [0]
            thread = threading.Thread(target=lambda: answered.__setitem__(0, hostile.distinct_accepts(port, 10_000)))
            thread.start()
            result = hostile.scrape(port, seconds, headers=headers, context=context)
            thread.join()
            extra = f"{answered[0]} of 10,000 answered"
        else:
            attack = {
                "none": lambda: None,
                "post-drip": lambda: hostile.post_drip(port, 5000, ATTACKERS, threads=10),
                "header-trickle": lambda: hostile.header_trickle(port, 5000, ATTACKERS, threads=10),
                "unknown-users": lambda: hostile.unknown_users(port, 200, ATTACKERS),
                "half-open-tls": lambda: hostile.half_open_tls(port, 4300, ATTACKERS, threads=10),
            }[name]()
            if attack is None:
                result = hostile.scrape(port, seconds, headers=headers, context=context)
            else:
                with attack:
                    time.sleep(3)  # at full strength
                    result = hostile.scrape(port, seconds, headers=headers, context=context)
                    peak = running.rss_mib()
                extra = f"RSS at the end of the attack {peak:.1f} MiB"
        after = running.rss_mib()
    return {
        "attack": name,
        "warm": warm.rate,
        "ok": result.ok,
        "total": result.total,
        "rate": result.rate,
        "rss_before": before,
        "rss_after": max(after, peak),
        "note": extra,
        "errors": result.errors[:3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stamps", type=int, default=1000, help="static fleet size (default 1000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of scraping per attack (default 20)")
    parser.add_argument("--only", help="one attack: " + ", ".join(ATTACKS))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="azs-attacks-"))
    config = work / "fleet.yml"
    write_fleet(config, args.stamps)
    names = ["none", *([args.only] if args.only else [n for n in ATTACKS if n != "none"])]
    print(f"azurestack-exporter under client attacks, {machine()}; {args.stamps} static stamps")
    print("scraper: 5 GET /metrics per second from 127.0.0.1, 5 s timeout; attackers 127.0.0.2-9")
    print()
    print(f"{'attack':<16} {'scrapes':>9} {'success':>8} {'RSS before':>10} {'RSS after':>10} {'growth':>8}  what")
    failed = False
    for name in names:
        row = run(name, config, work, args.seconds)
        growth = row["rss_after"] - row["rss_before"]
        bound = MEMORY_BOUND_MIB.get(name)
        bad = row["rate"] < 0.99 or (bound is not None and growth > bound)
        failed |= bad
        print(
            f"{name:<16} {row['ok']:>4}/{row['total']:<4} {row['rate'] * 100:>7.1f}% {row['rss_before']:>9.1f}M "
            f"{row['rss_after']:>9.1f}M {growth:>+7.1f}M  {ATTACKS[name]}{'; ' + row['note'] if row['note'] else ''}"
            f"{'  <-- FAILS' if bad else ''}"
        )
        if row["errors"]:
            print(f"{'':<16} first errors: {row['errors']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
