#!/usr/bin/env python3
"""Refresh the bundled release catalog (exporter/data/catalog.yml) from a release source.

A release of the exporter should ship the newest history. This merges what a source says
into the bundled file (the source wins where both know a field; nothing known is dropped)
and writes it back in the catalog schema, validated by the exporter's own parser:

    python tools/build_catalog.py --tsv releases.tsv          # a release table
    python tools/build_catalog.py --graph azurestackupdate.xml # Microsoft's update graph (a saved copy)

The table is tab-separated with a header naming at least ``update_version``, and any of
``base_build``, ``release_date`` (YYYY-MM-DD or YYYY-MM; "unknown" is ignored),
``hotfix_builds`` (comma-separated) and ``latest_known_hotfix_build``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter.catalog import Catalog, Hotfix, Release, merge, parse_catalog_document, parse_date  # noqa: E402
from exporter.config import parse_yaml  # noqa: E402
from exporter.updategraph import parse_edges, releases_from_edges  # noqa: E402
from exporter.versions import VersionError, parse_update_version, parse_version  # noqa: E402

BUNDLED = ROOT / "exporter" / "data" / "catalog.yml"


def from_tsv(path: Path) -> list[Release]:
    releases = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            update = parse_update_version(row["update_version"])
            build = None
            if (row.get("base_build") or "").strip() not in ("", "unknown"):
                build = parse_version(row["base_build"])
            released = None
            if (row.get("release_date") or "").strip() not in ("", "unknown"):
                released = parse_date(row["release_date"].strip())
            names = [b for b in (row.get("hotfix_builds") or "").split(",") if b.strip()]
            if (row.get("latest_known_hotfix_build") or "").strip():
                names.append(row["latest_known_hotfix_build"])
            hotfixes = sorted({parse_version(b) for b in names} - ({build} if build else set()))
            releases.append(Release(update, build, released, tuple(Hotfix(h) for h in hotfixes), ("file",)))
    return releases


def from_graph(path: Path) -> list[Release]:
    edges = [(e.source, e.target) for e in parse_edges(path.read_bytes()) if e.target]
    return releases_from_edges(edges)


def render(catalog: Catalog, header: str) -> str:
    lines = [header.rstrip(), "releases:"]
    for release in catalog.releases:
        lines.append(f'  - update: "{release.update}"')
        if release.build:
            lines.append(f"    build: {release.build}")
        if release.released:
            lines.append(f"    released: {release.released}")
        if release.hotfixes:
            lines.append("    hotfixes:")
            for hotfix in release.hotfixes:
                lines.append(f"      - build: {hotfix.build}")
                if hotfix.released:
                    lines.append(f"        released: {hotfix.released}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tsv", type=Path, help="a release table (tab-separated)")
    source.add_argument("--graph", type=Path, help="a saved copy of the update graph XML")
    parser.add_argument(
        "--catalog", type=Path, default=BUNDLED, help="the catalog to update (default: the bundled one)"
    )
    parser.add_argument("--output", type=Path, help="where to write (default: --catalog itself)")
    args = parser.parse_args(argv)
    try:
        new = from_tsv(args.tsv) if args.tsv else from_graph(args.graph)
    except (OSError, KeyError, ValueError, VersionError) as err:
        print(f"build_catalog: cannot read the source: {err}", file=sys.stderr)
        return 2
    text = args.catalog.read_text(encoding="utf-8")
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    current = parse_catalog_document(parse_yaml(text), "bundled")
    merged = merge([new, current])
    output = render(merged, header)
    check = Catalog.of(parse_catalog_document(parse_yaml(output), "bundled"))
    assert [r.update for r in check.releases] == [r.update for r in merged.releases]
    (args.output or args.catalog).write_text(output, encoding="utf-8")
    added = sorted({r.update for r in merged.releases} - {r.update for r in current})
    print(
        f"wrote {args.output or args.catalog}: {len(merged.releases)} releases"
        + (f" (new: {', '.join(added)})" if added else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
