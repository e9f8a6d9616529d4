#!/usr/bin/env python3
"""Replay the release forecast on the real history: forecast each release from the ones before it.

    python tools/backtest_forecast.py                 # the bundled catalog, the exporter's window
    python tools/backtest_forecast.py --compare       # also other windows, to justify the choice
    python tools/backtest_forecast.py --catalog my.yml

Prints each release's first-documented date, the forecast made from the releases before it and
the error (positive: the release came later than forecast), then the median and 90th
percentile of the absolute error, in days. The README's figures come from this command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exporter import forecast as fc  # noqa: E402
from exporter.catalog import Catalog, CatalogError, parse_catalog_document  # noqa: E402
from exporter.config import load_bundled_catalog, parse_yaml  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--catalog", type=Path, help="a catalog file (default: the bundled one)")
    parser.add_argument("--window", type=int, default=fc.WINDOW, help="intervals in the median (default: %(default)s)")
    parser.add_argument("--compare", action="store_true", help="also summarise windows 1 to 8")
    args = parser.parse_args(argv)
    try:
        if args.catalog:
            releases = parse_catalog_document(parse_yaml(args.catalog.read_text(encoding="utf-8")), "file")
        else:
            releases = load_bundled_catalog()
    except (OSError, ValueError, CatalogError) as err:
        print(f"backtest_forecast: {err}", file=sys.stderr)
        return 2
    history = fc.dated_releases(Catalog.of(releases))
    result = fc.backtest(history, args.window)
    if not result.rows:
        print("backtest_forecast: too few dated releases to replay", file=sys.stderr)
        return 2
    print(f"{'release':8} {'documented':11} {'forecast':11} {'error (days)':>12}")
    for row in result.rows:
        print(f"{row.update:8} {row.actual.isoformat():11} {row.forecast.isoformat():11} {row.error_days:>12.1f}")
    print(
        f"\nwindow {args.window}: {len(result.rows)} releases forecast; absolute error "
        f"median {result.median_error_days:.1f} days, 90th percentile {result.p90_error_days:.1f} days"
    )
    if args.compare:
        print("\nwindow  median  p90   (days, absolute error)")
        for window in range(1, 9):
            other = fc.backtest(history, window)
            print(f"{window:6}  {other.median_error_days:6.1f}  {other.p90_error_days:5.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
