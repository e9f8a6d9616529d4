#!/usr/bin/env python3
"""Summarise `mutmut results --all true` (read on standard input): kill rate per module and overall.

    mutmut results --all true | python tools/mutation_summary.py

A mutant whose tests time out (a loop that never ends, a wait never satisfied) is detected and
counts as killed. Mutants mutmut could not run are counted against the rate ("no tests": no in-process test
reaches the function). Lines whose every mutant is equivalent carry `# pragma: no mutate`
and a reason; mutmut makes no mutants of them, and the count of such lines is shown. Exit 1
when a module of the target set is below TARGET, so `make mutate` fails loudly.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

TARGET = 90.0
TARGET_MODULES = ("versions", "catalog", "policy", "report", "config", "webconfig", "admin")
ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    per_module: dict[str, Counter[str]] = defaultdict(Counter)
    for line in sys.stdin:
        match = re.match(r"\s*exporter\.(\w+)\.\S+: (\w[\w ]*)$", line.rstrip())
        if match:
            per_module[match.group(1)][match.group(2).strip()] += 1
    if not per_module:
        print("mutation_summary: no mutmut results on standard input", file=sys.stderr)
        return 2
    total: Counter[str] = Counter()
    below = []
    print(f"{'module':12} {'killed':>7} {'mutants':>8} {'rate':>8}  {'equivalent lines':>16}  other outcomes")
    for module, counts in sorted(per_module.items()):
        total += counts
        mutants = sum(counts.values())
        killed = counts["killed"] + counts["timeout"]
        rate = 100 * killed / mutants
        source = ROOT / "exporter" / f"{module}.py"
        lines = source.read_text().splitlines() if source.exists() else []
        pragmas = sum(1 for text in lines if "# pragma: no mutate" in text and "no mutate end" not in text)
        others = {k: v for k, v in counts.items() if k not in ("killed", "timeout")}
        mark = ""
        if module in TARGET_MODULES:
            mark = " *" if rate >= TARGET else " * BELOW TARGET"
            if rate < TARGET:
                below.append(module)
        print(f"{module:12} {killed:7} {mutants:8} {rate:7.1f}%  {pragmas:16}  {others or ''}{mark}")
    mutants = sum(total.values())
    killed = total["killed"] + total["timeout"]
    print(f"{'all':12} {killed:7} {mutants:8} {100 * killed / mutants:7.1f}%")
    print(f"* target: at least {TARGET:g} % killed" + (f"; below it: {', '.join(below)}" if below else "; met"))
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
