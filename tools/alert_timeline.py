#!/usr/bin/env python3
"""A year and more in the life of the alerting rules, evaluated by promtool on the exporter's output.

The exporter's own evaluation (build_report, the metrics it renders) is produced every 12
hours of simulated time, from 2026-05-14 to 2027-07-15, for two exporters:

- exporter "a" has a live catalog source (a shared catalog its maintainer confirms daily) and
  three static stamps: one run well (each release installed within 20 days, each hotfix within
  10), one that never updates, one that installs releases but never hotfixes;
- exporter "b" has only the bundled catalog until 2026-11-02, when the same live source is added,
  and one stamp run well.

Microsoft's releases after 2601 are hypothetical: 2701 comes 270 days after 2601 (a year when
the next release is late), 2706 the usual 174 days after that, each with hotfixes. The rules in
deploy/prometheus/azurestack-exporter.rules.yml are evaluated on that output by `promtool test
rules` (every 12 hours, the exporter's timestamps shifted so that promtool's clock starts at
2026-05-14), against the timeline each kind of stamp must give, stated here from the scenario
alone (the policy, the releases, the stamps' behaviour), not from the exporter's output:

    python tools/alert_timeline.py            # run it through promtool; write docs/alert-timeline.svg
    python tools/alert_timeline.py --check    # run it; exit 1 if promtool disagrees or the picture differs

`make test` runs the same (tests/test_alert_timeline.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client.exposition import generate_latest  # noqa: E402

from exporter.catalog import CatalogDocument, Hotfix, PartialDate, Release  # noqa: E402
from exporter.config import load_bundled_document  # noqa: E402
from exporter.metrics import Snapshot, build_registry  # noqa: E402
from exporter.policy import Policy  # noqa: E402
from exporter.report import Observation, SourceStatus, StampStatus, build_report  # noqa: E402
from exporter.versions import Version, parse_version  # noqa: E402

RULES = ROOT / "deploy" / "prometheus" / "azurestack-exporter.rules.yml"
PICTURE = ROOT / "docs" / "alert-timeline.svg"
DAY = 86400.0
STEP = 12 * 3600.0
START = dt.datetime(2026, 5, 14, tzinfo=dt.UTC).timestamp()
END = dt.datetime(2027, 7, 15, tzinfo=dt.UTC).timestamp()
LIVE_ADDED_TO_B = dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp()
LIVE = "https://catalog.example.internal/azurestack.yml"
INSTALL_RELEASE_AFTER = 20 * DAY  # a well-run fleet: within 30 days
INSTALL_HOTFIX_AFTER = 10 * DAY  # a well-run fleet: within 14 days
GRACE = 45 * DAY
SUPPORTED = 3


def _day(text: str) -> float:
    return dt.datetime.fromisoformat(text + "T00:00:00+00:00").timestamp()


def _date(timestamp: float) -> PartialDate:
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return PartialDate(moment.year, moment.month, moment.day)


# Hypothetical releases after the bundled catalog's newest (2601, documented by 2026-04-08).
FUTURE = (
    Release(
        "2701",
        parse_version("1.2701.0.10"),
        _date(_day("2027-01-03")),  # 270 days after 2601: later than any of the last 10 intervals but one
        (
            Hotfix(parse_version("1.2701.1.5"), _date(_day("2027-02-02")), "documented"),
            Hotfix(parse_version("1.2701.2.9"), _date(_day("2027-03-19")), "documented"),
        ),
        ("url",),
        "documented",
    ),
    Release("2706", parse_version("1.2706.0.7"), _date(_day("2027-06-26")), (), ("url",), "documented"),
)
# The bundled catalog, confirmed 2026-05-13: its next release was expected 174 days (the median of
# its last three intervals) after 2601's 2026-04-08, on 2026-09-29: stale from then, by the rule.
B_STALE_FROM = _day("2026-09-29")


@dataclass(frozen=True)
class Stamp:
    instance: str
    name: str
    installs_releases: bool
    installs_hotfixes: bool
    start: str  # the build on the first day


STAMPS = (
    Stamp("a", "well-run", True, True, "1.2601.1.10"),
    Stamp("a", "never-updates", False, False, "1.2506.3.30"),
    Stamp("a", "no-hotfixes", True, False, "1.2601.0.4"),
    Stamp("b", "b-well-run", True, True, "1.2601.1.10"),
)
KINDS = {
    "well-run": "installs each release within 20 days and each hotfix within 10",
    "never-updates": "stays on 2506 (with its latest hotfix)",
    "no-hotfixes": "installs each release within 20 days, never a hotfix",
    "b-well-run": "as well-run, on an exporter with only the bundled catalog until 2026-11-02",
}


@functools.cache
def bundled() -> CatalogDocument:
    return load_bundled_document()


@functools.cache
def all_releases() -> tuple[Release, ...]:
    return (*bundled().releases, *FUTURE)


def published(release: Release | Hotfix, now: float) -> bool:
    return release.released is not None and release.released.timestamp() <= now


def build_at(stamp: Stamp, now: float) -> Version:
    """The build a stamp runs at ``now``, by its behaviour alone."""
    current = parse_version(stamp.start)
    if not stamp.installs_releases:
        return current
    for release in all_releases():
        if release.build is None or release.released is None or release.build <= current:
            continue
        if release.released.timestamp() + INSTALL_RELEASE_AFTER <= now:
            current = release.build
    if stamp.installs_hotfixes:
        release = next(r for r in all_releases() if r.update == current.update_version)
        for hotfix in release.hotfixes:
            if hotfix.released and hotfix.released.timestamp() + INSTALL_HOTFIX_AFTER <= now and hotfix.build > current:
                current = hotfix.build
    return current


# ---------------------------------------------------------------- the truth, from the scenario


def conditions(stamp: Stamp, now: float) -> set[str]:
    """The alerts whose condition holds for a stamp at ``now``, from the policy and the releases."""
    build = build_at(stamp, now)
    releases = [r for r in all_releases() if published(r, now)]
    behind = sum(1 for r in releases if r.update > build.update_version)
    held = set()
    if behind >= SUPPORTED:
        held.add("AzureStackStampOutOfSupport")
    elif behind == SUPPORTED - 1:
        held.add("AzureStackStampSupportEndingSoon")
    own = next(r for r in releases if r.update == build.update_version)
    missing = [h.released.timestamp() for h in own.hotfixes if h.build > build and published(h, now)]  # type: ignore[union-attr]
    if missing and now - min(missing) > GRACE:
        held.add("AzureStackStampHotfixOverdue")
    # AzureStackStampSupportExpectedToEnd speaks only for stamps two or more releases from the edge,
    # whose end is then at least a cadence (174 days and more here) after the next release, which is
    # never expected in the past: never within 90 days in this history.
    return held


def catalog_conditions(instance: str, now: float) -> set[str]:
    if instance == "b" and B_STALE_FROM <= now < LIVE_ADDED_TO_B:
        return {"AzureStackCatalogStale"}
    return set()


SEVERITY = {
    "AzureStackStampOutOfSupport": "critical",
    "AzureStackStampSupportEndingSoon": "warning",
    "AzureStackStampHotfixOverdue": "warning",
    "AzureStackCatalogStale": "warning",
}


def steps() -> Iterator[float]:
    now = START
    while now <= END:
        yield now
        now += STEP


def expected_firing() -> list[set[tuple[str, str, str]]]:
    """(alertname, instance, stamp) firing at each step: the condition held at that evaluation and
    at the one before (every rule's ``for`` is at most 12 hours, the evaluation interval)."""
    held = []
    for now in steps():
        now_held = {(a, s.instance, s.name) for s in STAMPS for a in conditions(s, now)}
        now_held |= {(a, i, "") for i in ("a", "b") for a in catalog_conditions(i, now)}
        held.append(now_held)
    return [held[i] & held[i - 1] if i else set() for i in range(len(held))]


# ---------------------------------------------------------------- the exporter's output


def live_source(now: float) -> tuple[SourceStatus, list[Release]]:
    """The shared catalog as its maintainer publishes it: the releases out by then, confirmed daily."""
    releases = [r for r in FUTURE if published(r, now)]
    releases = [replace(r, hotfixes=tuple(h for h in r.hotfixes if published(h, now))) for r in releases]
    confirmed = now - now % DAY
    return SourceStatus("url", LIVE, True, now, len(releases), confirmed=confirmed), releases


def exposition(instance: str, now: float) -> str:
    document = bundled()
    sources: list[tuple[SourceStatus, list[Release]]] = []
    if instance == "a" or now >= LIVE_ADDED_TO_B:
        sources.append(live_source(now))
    confirmed = document.confirmed.timestamp() if document.confirmed else None
    status = SourceStatus(
        "bundled", "exporter/data/catalog.yml", True, now, len(document.releases), confirmed=confirmed
    )
    sources.append((status, list(document.releases)))
    statuses = [
        StampStatus(s.name, "static", observation=Observation(build_at(s, now), collected_at=now), up=True)
        for s in STAMPS
        if s.instance == instance
    ]
    report = build_report(statuses, sources, Policy(), now)
    snapshot = Snapshot(report, True, START, refresh_interval=STEP, clock=lambda: now)
    return generate_latest(build_registry(lambda: snapshot, process_metrics=False)).decode()


_SAMPLE = re.compile(r"\A([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)\Z")


def series() -> dict[str, list[str]]:
    """Every series the two exporters expose, with its value at each step ('_' where absent).

    Timestamps are shifted so that promtool's clock (0 at the first step) keeps time() - t right.
    Each scrape gains the job and instance labels Prometheus adds, and up 1.
    """
    found: dict[str, list[str]] = {}
    count = 0
    for index, now in enumerate(steps()):
        count = index + 1
        for instance in ("a", "b"):
            lines = [*exposition(instance, now).splitlines(), "up 1"]
            for line in lines:
                match = _SAMPLE.match(line)
                if line.startswith("#") or not match:
                    continue
                name, labels, value = match.groups()
                inner = labels[1:-1] if labels else ""
                key = f'{name}{{job="azurestack",instance="{instance}"{"," + inner if inner else ""}}}'
                number = float(value)
                if name.endswith("_timestamp_seconds"):
                    number -= START
                found.setdefault(key, ["_"] * index).append(_format(number))
        for values in found.values():
            values.extend(["_"] * (count - len(values)))
    return found


def _format(number: float) -> str:
    return str(int(number)) if number == int(number) else repr(number)


# ---------------------------------------------------------------- promtool


def promtool_test(found: dict[str, list[str]], firing: list[set[tuple[str, str, str]]], work: Path) -> str:
    """A promtool rules test: the exporter's series in, the expected alerts at every step."""
    lines = [
        f"rule_files: [{RULES}]",
        f"evaluation_interval: {int(STEP)}s",
        "tests:",
        f"  - interval: {int(STEP)}s",
        "    input_series:",
    ]
    for key, values in sorted(found.items()):
        lines.append(f"      - series: '{key}'")
        lines.append(f"        values: '{' '.join(values)}'")
    lines.append("    promql_expr_test:")
    for index, alerts in enumerate(firing):
        lines.append('      - expr: ALERTS{alertstate="firing"}')
        lines.append(f"        eval_time: {int(index * STEP)}s")
        if not alerts:
            lines.append("        exp_samples: []")
            continue
        lines.append("        exp_samples:")
        for alert, instance, stamp in sorted(alerts):
            labels = f'alertname="{alert}",alertstate="firing",instance="{instance}",job="azurestack"'
            labels += f',severity="{SEVERITY[alert]}"' + (f',stamp="{stamp}"' if stamp else "")
            lines.append(f"          - labels: 'ALERTS{{{labels}}}'")
            lines.append("            value: 1")
    path = work / "year.test.yml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run_promtool(test_file: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", "test", "rules", test_file], capture_output=True, text=True, check=False)


# ---------------------------------------------------------------- the picture


@dataclass
class Lane:
    label: str
    spans: list[tuple[float, float, str]] = field(default_factory=list)  # (start, end, alert)


COLOURS = {
    "AzureStackStampOutOfSupport": "#cf222e",
    "AzureStackStampSupportEndingSoon": "#bf8700",
    "AzureStackStampHotfixOverdue": "#8250df",
    "AzureStackCatalogStale": "#0969da",
}


def lanes(firing: list[set[tuple[str, str, str]]]) -> list[Lane]:
    out = []
    for stamp in STAMPS:
        out.append(_lane(f"{stamp.name}: {KINDS[stamp.name]}", firing, lambda a, i, s, st=stamp: s == st.name))
    for instance in ("a", "b"):
        what = "live source throughout" if instance == "a" else "bundled catalog only until 2026-11-02"
        out.append(_lane(f"exporter {instance}: {what}", firing, lambda a, i, s, inst=instance: i == inst and not s))
    return out


def _lane(label: str, firing: list[set[tuple[str, str, str]]], mine) -> Lane:  # type: ignore[no-untyped-def]
    lane = Lane(label)
    times = list(steps())
    open_spans: dict[str, float] = {}
    for index, alerts in enumerate([*firing, set()]):
        now = times[index] if index < len(times) else times[-1] + STEP
        current = {a for a, i, s in alerts if mine(a, i, s)}
        for alert in current - open_spans.keys():
            open_spans[alert] = now
        for alert in set(open_spans) - current:
            lane.spans.append((open_spans.pop(alert), now, alert))
    lane.spans.sort()
    return lane


def svg(all_lanes: list[Lane]) -> str:
    """The timeline as an SVG: one lane per kind of stamp and per exporter, a bar per alert."""
    left, width, lane_height, top = 20, 930, 46, 60
    height = top + lane_height * len(all_lanes) + 90

    def x(timestamp: float) -> float:
        return round(left + (timestamp - START) / (END + STEP - START) * width, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 20}" height="{height}" '
        'font-family="system-ui, sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="600">Which alert fires when: '
        f"{_iso(START)} to {_iso(END)}, evaluated by promtool on the exporter's output</text>",
    ]
    month = dt.datetime.fromtimestamp(START, tz=dt.UTC).replace(day=1)
    first = True
    while month.timestamp() <= END:
        if month.timestamp() >= START:
            mx = x(month.timestamp())
            parts.append(f'<line x1="{mx}" y1="{top - 10}" x2="{mx}" y2="{height - 80}" stroke="#d0d7de"/>')
            label = f"{month:%b %Y}" if month.month == 1 or first else f"{month:%b}"
            parts.append(f'<text x="{mx + 2}" y="{top - 14}" fill="#57606a">{label}</text>')
            first = False
        month = (month + dt.timedelta(days=32)).replace(day=1)
    for release in FUTURE:
        rx = x(release.released.timestamp())  # type: ignore[union-attr]
        parts.append(_vline(rx, top - 10, height - 80, "#1f2328", "4 3"))
        anchor = ' text-anchor="end"' if rx > left + width - 120 else ""
        parts.append(
            f'<text x="{rx + (-3 if anchor else 3)}" y="{height - 66}"{anchor}>{release.update} released</text>'
        )
    ax = x(LIVE_ADDED_TO_B)
    parts.append(_vline(ax, top - 10, height - 80, "#0969da", "2 3"))
    parts.append(f'<text x="{ax + 3}" y="{height - 52}" fill="#0969da">b: live source added</text>')
    for row, lane in enumerate(all_lanes):
        y = top + row * lane_height
        parts.append(f'<text x="{left}" y="{y + 2}">{_escape(lane.label)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 6}" width="{width}" height="20" fill="#f6f8fa"/>')
        for start, end, alert in lane.spans:
            parts.append(
                f'<rect x="{x(start)}" y="{y + 6}" width="{max(1.0, round(x(end) - x(start), 1))}" height="20" '
                f'fill="{COLOURS[alert]}"><title>{alert}: {_iso(start)} to {_iso(end)}</title></rect>'
            )
        if not lane.spans:
            parts.append(f'<text x="{left + 6}" y="{y + 20}" fill="#1a7f37">no alert on any day</text>')
    legend_y, lx = height - 30, 10
    for alert, colour in COLOURS.items():
        parts.append(f'<rect x="{lx}" y="{legend_y - 11}" width="14" height="14" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 20}" y="{legend_y}">{alert}</text>')
        lx += 20 + 7 * len(alert) + 24
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _vline(x: float, y1: float, y2: float, colour: str, dashes: str) -> str:
    return f'<line x1="{x}" y1="{y1}" x2="{x}" y2="{y2}" stroke="{colour}" stroke-dasharray="{dashes}"/>'


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).date().isoformat()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the picture differs")
    args = parser.parse_args(argv)
    firing = expected_firing()
    with tempfile.TemporaryDirectory() as work:
        result = run_promtool(promtool_test(series(), firing, Path(work)))
    if result.returncode != 0:
        print(result.stdout[-4000:] + result.stderr[-2000:], file=sys.stderr)
        print("alert_timeline: the rules disagree with the expected timeline", file=sys.stderr)
        return 1
    picture = svg(lanes(firing))
    if args.check:
        if PICTURE.read_text() != picture:
            print(f"alert_timeline: {PICTURE} differs: run tools/alert_timeline.py", file=sys.stderr)
            return 1
        print(f"promtool agrees with the timeline; {PICTURE} is current")
        return 0
    PICTURE.write_text(picture)
    print(f"promtool agrees with the timeline; wrote {PICTURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
