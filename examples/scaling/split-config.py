#!/usr/bin/env python3
"""Split an azurestack-exporter configuration into one per shard, as Prometheus's hashmod does.

With the /probe pattern and `action: hashmod` on the stamp name (deploy/prometheus/prometheus-probe.yml),
stamp S is scraped from replica md5(S)[8:16] as a big-endian integer modulo N. Giving each
replica only its stamps means each admin endpoint is read by one replica.
    python examples/scaling/split-config.py --shards 2 azurestack-exporter.yml
writes azurestack-exporter-0.yml and azurestack-exporter-1.yml beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml


def shard_of(name: str, shards: int) -> int:
    """Prometheus relabel hashmod: the last 8 bytes of the MD5 of the value, modulo N."""
    return int.from_bytes(hashlib.md5(name.encode()).digest()[8:], "big") % shards  # noqa: S324 - not security


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--shards", type=int, required=True)
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.config.read_text())
    for shard in range(args.shards):
        part = dict(config)
        part["stamps"] = [s for s in config.get("stamps", []) if shard_of(s["name"], args.shards) == shard]
        out = args.config.with_name(f"{args.config.stem}-{shard}{args.config.suffix}")
        out.write_text(yaml.safe_dump(part, sort_keys=False))
        print(f"{out}: {', '.join(s['name'] for s in part['stamps']) or '(no stamps)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
