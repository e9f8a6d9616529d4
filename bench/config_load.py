#!/usr/bin/env python3
"""Configuration load: libyaml's parser against PyYAML's own, on one static fleet, same run.

Writes a configuration of N static stamps (bench.write_fleet) and times, alternating the two
parsers run by run, printing for each the median wall time and CPU time (user and system; on
a shared machine it moves less than the wall time) and the ratios pure / libyaml:
  parse    exporter.config.parse_yaml on the file's text, in this process
  load     exporter.config.load_config (parse and validate), in this process
  config   `azurestack-exporter --config.check --config.file F`, a new process each run
  check    `azurestack-exporter check --config.file F`, a new process each run
"pure" is the fallback where PyYAML has no libyaml, forced by setting
yaml.__with_libyaml__ to False before the exporter is imported; "libyaml" is the default.
Both processes start through the same wrapper, so they differ only in that. Not a test.
    python bench/config_load.py                     # 5,000 stamps, 7 runs (make bench-config)
    python bench/config_load.py --stamps 1000 --runs 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine

from bench import write_fleet
from exporter import config

PARSERS = ("pure", "libyaml")
# The console script's entry point, with the fallback forced when asked for.
WRAPPER = (
    "import sys, yaml\n"
    "if sys.argv.pop(1) == 'pure':\n"
    "    yaml.__with_libyaml__ = False\n"
    "from exporter.cli import entry_point\n"
    "entry_point()\n"
)


def use(parser: str) -> None:
    """Choose the parser for in-process loads, as PyYAML without libyaml would."""
    config.LOADERS = None if parser == "pure" else config.C_LOADERS


def in_process(parser: str, work: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one load in this process."""
    use(parser)
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def child(parser: str, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one exporter process, from start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, parser, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1, 3):  # check: 1 and 3 are verdicts about stamps, not failures
        sys.exit(f"{parser} {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--stamps", type=int, default=5000, help="static stamps in the configuration (default 5000)")
    parser.add_argument("--runs", type=int, default=7, help="runs of each case and parser (default 7)")
    args = parser.parse_args(argv)
    if config.C_LOADERS is None:
        sys.exit("PyYAML here is built without libyaml: there is nothing to compare")

    file = Path(tempfile.mkdtemp(prefix="azs-config-")) / f"fleet-{args.stamps}.yml"
    write_fleet(file, args.stamps)
    text = file.read_text()
    cases: dict[str, Callable[[str], tuple[float, float]]] = {
        "parse": lambda p: in_process(p, lambda: config.parse_yaml(text)),
        "load": lambda p: in_process(p, lambda: config.load_config(str(file))),
        "config": lambda p: child(p, "--config.check", f"--config.file={file}"),
        "check": lambda p: child(p, "check", f"--config.file={file}"),
    }
    use("pure")
    reference = config.parse_yaml(text)
    use("libyaml")
    if config.parse_yaml(text) != reference:
        sys.exit("the two parsers read the fleet differently")

    from yaml import _yaml  # type: ignore[attr-defined]

    print(
        f"azurestack-exporter configuration load, {args.stamps} static stamps ({file.stat().st_size:,} bytes), "
        f"median of {args.runs} runs; PyYAML {yaml.__version__}, libyaml {_yaml.get_version_string()}; {machine()}"
    )
    print(f"{'case':<8} {'pure s':>8} {'libyaml s':>10} {'ratio':>6} {'pure CPU':>9} {'libyaml CPU':>12} {'ratio':>6}")
    for name, case in cases.items():
        runs: dict[str, list[tuple[float, float]]] = {p: [] for p in PARSERS}
        for _ in range(args.runs):
            for p in PARSERS:  # alternating, so that the machine's load weighs on both alike
                runs[p].append(case(p))
        (wall, cpu), (fast_wall, fast_cpu) = (
            (statistics.median(w for w, _ in runs[p]), statistics.median(c for _, c in runs[p])) for p in PARSERS
        )
        print(
            f"{name:<8} {wall:>8.3f} {fast_wall:>10.3f} {wall / fast_wall:>6.2f} "
            f"{cpu:>9.3f} {fast_cpu:>12.3f} {cpu / fast_cpu:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
