#!/usr/bin/env python3
"""Generate the bundled release catalog (exporter/data/catalog.yml) from its sourced table.

The table (tools/catalog-sources.tsv) holds one row per build, each with its source; the
catalog is generated from it alone, so the same table always gives the same file:

    python tools/build_catalog.py            # write exporter/data/catalog.yml
    python tools/build_catalog.py --check    # exit 1 if the file differs from what the table gives
    python tools/build_catalog.py --graph azurestackupdate.xml
                                             # print rows for builds a saved update graph names
                                             # that the table lacks (source them, then add them)

The table is tab-separated. Lines starting with '#' before the header row are copied to the top
of the catalog as its explanatory comment; one of them may read "# confirmed: YYYY-MM-DD ..." (the
day the table was last confirmed to list every release, and how): it becomes the catalog's
`confirmed:` key, from which the exporter's freshness counts when no live source is configured.
The header row names these columns, in any order:

  update      the update version, YYMM (e.g. 2408)
  build       a build of it (e.g. 1.2408.1.50; 1802-1804 use 1.0.YYMMDD.N)
  kind        base    the release's base build (one per update version, its row first)
              other   another base build of the release: a re-release, the development kit's
                      build, an OEM bare-metal baseline. Never counted as a hotfix
              hotfix  a hotfix of the release
  released    YYYY-MM-DD, or YYYY-MM when only the month is known; empty when unknown
  date_basis  how the date is known: documented (the day a documentation commit first listed
              it), documented_by (documented no later than that day), announced, exact; or
              unknown (with no date). Required with a date
  source      where the fact is from (a repository and commit, a page); required
  note        free text; written to the catalog as a comment beside the build

Every problem is reported as "FILE: line N: problem", with exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.catalog import CatalogError, parse_catalog_document  # noqa: E402
from exporter.config import parse_yaml  # noqa: E402

TABLE = ROOT / "tools" / "catalog-sources.tsv"
BUNDLED = ROOT / "exporter" / "data" / "catalog.yml"
COLUMNS = ("update", "build", "kind", "released", "date_basis", "source", "note")
KINDS = ("base", "other", "hotfix")


class TableError(Exception):
    """A row that cannot become catalog data: the message names the line."""


@dataclass
class Row:
    line: int
    update: str
    build: str
    kind: str
    released: str
    date_basis: str
    source: str
    note: str


@dataclass
class Entry:
    base: Row
    others: list[Row] = field(default_factory=list)
    hotfixes: list[Row] = field(default_factory=list)


def read_table(path: Path) -> tuple[list[str], list[Row]]:
    """The comment header and the rows; raises TableError naming the line of any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TableError(f"{path}: cannot read: {err}") from None
    lines = text.splitlines()
    header = []
    while lines and lines[0].startswith("#"):
        header.append(lines.pop(0))
    start = len(header) + 1
    if not lines:
        raise TableError(f"{path}: line {start}: no header row (expected columns: {', '.join(COLUMNS)})")
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    names = next(reader)
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise TableError(f"{path}: line {start}: header lacks column(s) {', '.join(missing)} (see --help)")
    rows = []
    for offset, cells in enumerate(reader, start=1):
        line = start + offset
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(names):
            raise TableError(f"{path}: line {line}: {len(cells)} cells, but the header names {len(names)} columns")
        values = dict(zip(names, [c.strip() for c in cells] + [""] * (len(names) - len(cells)), strict=True))
        row = Row(line, **{c: values[c] for c in COLUMNS})
        if row.kind not in KINDS:
            raise TableError(f"{path}: line {line}: kind {row.kind!r} must be one of {', '.join(KINDS)}")
        if not row.source:
            raise TableError(f"{path}: line {line}: build {row.build or '?'} has no source")
        if row.released and not row.date_basis:
            raise TableError(f"{path}: line {line}: the date {row.released} needs a date_basis (how it is known)")
        rows.append(row)
    return header, rows


def group(path: Path, rows: list[Row]) -> list[Entry]:
    entries: dict[str, Entry] = {}
    for row in rows:
        entry = entries.get(row.update)
        if row.kind == "base":
            if entry is not None:
                raise TableError(
                    f"{path}: line {row.line}: a second base build for {row.update} "
                    f"(line {entry.base.line} has {entry.base.build}); list others with kind 'other'"
                )
            entries[row.update] = Entry(row)
        elif entry is None:
            raise TableError(
                f"{path}: line {row.line}: {row.kind} build {row.build} comes before {row.update}'s base row"
            )
        else:
            (entry.hotfixes if row.kind == "hotfix" else entry.others).append(row)
    return sorted(entries.values(), key=lambda e: e.base.update)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dated(row: Row, indent: str) -> Iterator[str]:
    if row.released:
        yield f"{indent}released: {row.released}"
    if row.date_basis:
        yield f"{indent}date_basis: {row.date_basis}"
    yield f"{indent}source: {_quote(row.source)}"


CONFIRMED = re.compile(r"\A# confirmed: ([0-9]{4}-[0-9]{2}-[0-9]{2})\b")


def render(header: list[str], entries: list[Entry]) -> str:
    confirmed = [m.group(1) for line in header if (m := CONFIRMED.match(line))]
    lines = [*header, *(f"confirmed: {day}" for day in confirmed[:1]), "releases:"]
    for entry in entries:
        base = entry.base
        if base.note:
            lines.append(f"  # {base.update}: {base.note}")
        lines.append(f"  - update: {_quote(base.update)}")
        if base.build:
            lines.append(f"    build: {base.build}")
        if entry.others:
            lines.append("    other_builds:")
            lines.extend(f"      - {o.build}" + (f"  # {o.note}" if o.note else "") for o in entry.others)
        lines.extend(_dated(base, "    "))
        if entry.hotfixes:
            lines.append("    hotfixes:")
            for hotfix in entry.hotfixes:
                lines.append(f"      - build: {hotfix.build}" + (f"  # {hotfix.note}" if hotfix.note else ""))
                lines.extend(_dated(hotfix, "        "))
    return "\n".join(lines) + "\n"


def build(path: Path) -> str:
    """The catalog text the table gives, checked by the exporter's own parser."""
    header, rows = read_table(path)
    entries = group(path, rows)
    text = render(header, entries)
    try:
        releases = parse_catalog_document(parse_yaml(text), "bundled")
    except CatalogError as err:
        # Point at the row: the key path names the release and hotfix positions.
        raise TableError(f"{path}: {_row_of(err.path, entries)}{err}") from None
    except ValueError as err:
        raise TableError(f"{path}: the generated catalog does not parse: {err}") from None
    builds = sum(1 + len(r.other_builds) + len(r.hotfixes) for r in releases)
    if builds != len(rows):
        raise TableError(f"{path}: {len(rows)} rows gave {builds} builds: a build is listed twice")
    return text


def _row_of(key_path: str, entries: list[Entry]) -> str:
    """``releases[3].hotfixes[1].build`` -> ``line 42: `` (the row it came from), where it can be told."""

    match = re.match(r"releases\[(\d+)\](?:\.(hotfixes|other_builds)\[(\d+)\])?", key_path)
    if not match or int(match.group(1)) >= len(entries):
        return ""
    entry = entries[int(match.group(1))]
    row = entry.base
    if match.group(2):
        items = entry.hotfixes if match.group(2) == "hotfixes" else entry.others
        if int(match.group(3)) < len(items):
            row = items[int(match.group(3))]
    return f"line {row.line}: "


def graph_rows(graph: Path, table: Path) -> list[str]:
    """Table rows (source left to fill in) for builds the update graph names that the table lacks."""
    from exporter.updategraph import parse_edges, releases_from_edges

    _, rows = read_table(table)
    known = {r.build for r in rows}
    edges = [(e.source, e.target) for e in parse_edges(graph.read_bytes()) if e.target]
    out = []
    for release in releases_from_edges(edges):
        builds = [("base", release.build)] if release.build else []
        builds += [("hotfix", h.build) for h in release.hotfixes]
        for kind, version in builds:
            if str(version) not in known:
                out.append("\t".join([release.update, str(version), kind, "", "unknown", "TODO: source", ""]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--table", type=Path, default=TABLE, help="the sourced table (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=BUNDLED, help="the catalog to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if --output differs")
    parser.add_argument("--graph", type=Path, help="a saved update graph: print the rows the table lacks")
    args = parser.parse_args(argv)
    try:
        if args.graph:
            print("\n".join(graph_rows(args.graph, args.table)))
            return 0
        text = build(args.table)
    except TableError as err:
        print(f"build_catalog: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:
        print(f"build_catalog: {err}", file=sys.stderr)
        return 2
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current == text:
            print(f"{args.output} matches {args.table}")
            return 0
        diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(args.output), "generated", lineterm="")
        print("\n".join(list(diff)[:40]), file=sys.stderr)
        print(
            f"build_catalog: {args.output} differs from what {args.table} gives: run tools/build_catalog.py",
            file=sys.stderr,
        )
        return 1
    args.output.write_text(text, encoding="utf-8")
    releases = sum(1 for line in text.splitlines() if line.startswith("  - update:"))
    print(f"wrote {args.output}: {releases} releases from {args.table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
