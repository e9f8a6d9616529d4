#!/usr/bin/env python3
"""Mutation testing of the alerting rules: change one thing, see the promtool tests fail.

Each mutant changes one place of deploy/prometheus/azurestack-exporter.rules.yml: a `for`
(to 0s, and to half and double), a threshold count (a number before `* 86400`, or compared
with `==`, `<`, `-`, `2 *`: one up and one down), a comparison (`>` to `>=`, `<` to `<=`),
or drops one alternative of a state regex. It then runs `promtool test rules` on the unit
tests against the mutant; a mutant the tests still pass is a survivor, printed with its line.

    python tools/mutate_rules.py              # all mutants, 2 at a time
    python tools/mutate_rules.py --jobs 4

Exit 0 when every mutant is killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "azurestack-exporter.rules.yml"
TESTS = ROOT / "deploy" / "prometheus" / "tests"


@dataclass(frozen=True)
class Mutant:
    line: int  # 1-based
    before: str
    after: str

    def describe(self) -> str:
        return f"line {self.line}: {self.before.strip()!r} -> {self.after.strip()!r}"


def _duration_variants(value: str) -> list[str]:
    match = re.fullmatch(r"(\d+)([smhd])", value)
    if not match:
        return ["0s"]
    n, unit = int(match.group(1)), match.group(2)
    seconds = n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    return ["0s", f"{seconds // 2}s", f"{seconds * 2}s"]


def mutants(text: str) -> list[Mutant]:
    out = []
    in_expr = False
    for index, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("expr:"):
            in_expr = True
        elif re.match(r"^\s*(for|labels|annotations|- alert):", line) or stripped.startswith("- alert:"):
            in_expr = False
        match = re.match(r"^(\s*for: )(\S+)\s*$", line)
        if match:
            for variant in _duration_variants(match.group(2)):
                out.append(Mutant(index, line, match.group(1) + variant))
            continue
        if not in_expr or stripped.startswith("#") or re.match(r"^expr: >-$", stripped):
            continue  # the folded-scalar marker ">-" is YAML, not a comparison
        code = line
        # counts before a unit (240 * 86400) and small numbers in comparisons
        for m in re.finditer(r"(?<![\w.])(\d+)(?=\s*\*\s*86400)|(?<=[=<>-] )(\d+)(?![\w.])|(?<=\()(2)(?= \*)", code):
            number = m.group(0)
            for variant in {int(number) + 1, max(0, int(number) - 1)} - {int(number)}:
                out.append(Mutant(index, line, code[: m.start()] + str(variant) + code[m.end() :]))
        for m in re.finditer(r"(?<![<>=!])([<>])(?!=)", code):
            out.append(Mutant(index, line, code[: m.start()] + m.group(1) + "=" + code[m.end() :]))
        for m in re.finditer(r'=~"([^"]*\|[^"]*)"', code):
            alternatives = m.group(1).split("|")
            for drop in alternatives:
                rest = "|".join(a for a in alternatives if a != drop)
                out.append(Mutant(index, line, code[: m.start(1)] + rest + code[m.end(1) :]))
    return out


def run(mutant: Mutant, text: str, promtool: str) -> bool:
    """True when the tests fail on the mutant (killed)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = text.splitlines()
        lines[mutant.line - 1] = mutant.after
        (root / RULES.name).write_text("\n".join(lines) + "\n")
        shutil.copytree(TESTS, root / "tests")
        tests = sorted(str(p) for p in (root / "tests").glob("*.test.yml"))
        result = subprocess.run([promtool, "test", "rules", *tests], capture_output=True, check=False)
        return result.returncode != 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    args = parser.parse_args(argv)
    promtool = shutil.which("promtool")
    if promtool is None:
        print("mutate_rules: promtool is not installed (apt-get install prometheus)", file=sys.stderr)
        return 2
    text = RULES.read_text()
    all_mutants = mutants(text)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        killed = list(pool.map(lambda m: run(m, text, promtool), all_mutants))
    survivors = [m for m, k in zip(all_mutants, killed, strict=True) if not k]
    for mutant in survivors:
        print(f"SURVIVED {mutant.describe()}")
    total = len(all_mutants)
    print(f"rules: {total - len(survivors)}/{total} mutants killed ({100 * (total - len(survivors)) / total:.1f} %)")
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
