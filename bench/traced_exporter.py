#!/usr/bin/env python3
"""The installed exporter with tracemalloc on, for ``bench.py --tracemalloc``: where its memory goes.

Takes the exporter's arguments. A thread watches the folder named by AZS_BENCH_TRACEMALLOC:
when a file ``request`` appears there, it takes a snapshot and writes ``<label>.json`` (label:
the request's content) with the total traced and the largest allocation sites by file and by
line, then removes the request. tracemalloc sees Python's allocations only, not those of
OpenSSL or other C libraries: RSS minus the traced total is the rest. It slows the exporter
and costs memory of its own, so a traced run's times and RSS are not the benchmark's.
"""

from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from pathlib import Path

TOP = 25


def snapshot(folder: Path, label: str) -> None:
    taken = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    traced, peak = tracemalloc.get_traced_memory()
    result = {"traced_mib": traced / 2**20, "peak_mib": peak / 2**20}
    for key in ("filename", "lineno"):
        result[f"by_{key}"] = [
            {
                "where": stat.traceback[0].filename if key == "filename" else str(stat.traceback[0]),
                "mib": stat.size / 2**20,
                "blocks": stat.count,
            }
            for stat in taken.statistics(key)[:TOP]
        ]
    partial = folder / f"{label}.json.part"
    partial.write_text(json.dumps(result, indent=2))
    partial.rename(folder / f"{label}.json")


def watch(folder: Path) -> None:
    request = folder / "request"
    while True:
        if request.exists():
            snapshot(folder, request.read_text().strip() or "snapshot")
            request.unlink()
        time.sleep(0.2)


def main() -> None:
    folder = Path(os.environ["AZS_BENCH_TRACEMALLOC"])
    tracemalloc.start()
    threading.Thread(target=watch, args=(folder,), name="tracemalloc", daemon=True).start()
    from exporter.cli import entry_point

    entry_point()


if __name__ == "__main__":
    main()
