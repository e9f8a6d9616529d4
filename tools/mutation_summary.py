#!/usr/bin/env python3
"""Summarise `mutmut results --all true` (read on standard input): kill rate per file and overall.

mutmut results --all true | python tools/mutation_summary.py
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict


def main() -> int:
    per_file: dict[str, Counter[str]] = defaultdict(Counter)
    for line in sys.stdin:
        match = re.match(r"\s*(exporter\.[\w.]+?)\.x\S*: (\w[\w ]*)$", line.rstrip())
        if match:
            module = match.group(1).rsplit(".", 1)[0] if match.group(1).count(".") > 1 else match.group(1)
            per_file[module][match.group(2).strip()] += 1
    if not per_file:
        print("mutation_summary: no mutmut results on standard input", file=sys.stderr)
        return 2
    total: Counter[str] = Counter()
    for module, counts in sorted(per_file.items()):
        total += counts
        mutants = sum(counts.values())
        rate = 100 * counts["killed"] / mutants
        print(f"{module:28} {counts['killed']:5}/{mutants:<5} killed ({rate:5.1f} %)  {dict(counts)}")
    mutants = sum(total.values())
    print(f"{'all':28} {total['killed']:5}/{mutants:<5} killed ({100 * total['killed'] / mutants:5.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
