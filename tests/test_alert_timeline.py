"""A year and more in the life of the alerting rules (tools/alert_timeline.py): the exporter's own
output at simulated dates, evaluated by promtool, gives each kind of stamp the alerts it should,
on the right days, and nothing else; docs/alert-timeline.svg is that timeline."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

from conftest import ROOT, require_tool

sys.path.insert(0, str(ROOT / "tools"))
import alert_timeline as timeline


def spans(alert: str, instance: str, stamp: str) -> list[tuple[str, str]]:
    """When an alert fires, as (first firing evaluation, first evaluation no longer firing)."""
    lane = timeline._lane("", timeline.expected_firing(), lambda a, i, s: (a, i, s) == (alert, instance, stamp))
    iso = lambda t: dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")  # noqa: E731
    return [(iso(start), iso(end)) for start, end, _ in lane.spans]


def test_promtool_finds_exactly_the_expected_alerts_on_every_day_and_the_picture_is_current():
    require_tool("promtool")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "alert_timeline.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_the_expected_timeline_is_the_one_the_policy_gives():
    firing = timeline.expected_firing()
    # A well-run fleet, with a live source: no alert at all, on any day, on either exporter.
    assert not [a for step in firing for a in step if a[2] in ("well-run", "b-well-run")]
    assert not [a for step in firing for a in step if a[1] == "a" and a[2] == ""]  # no catalog alert on a
    # A stamp that never updates: ending soon from the day 2701 comes, out of support from the day
    # 2706 comes, each within a day; never "expected to end" as well (the same reason, one alert).
    end = "2027-07-15 12:00"
    assert spans("AzureStackStampSupportEndingSoon", "a", "never-updates") == [("2027-01-03 12:00", "2027-06-26 00:00")]
    assert spans("AzureStackStampOutOfSupport", "a", "never-updates") == [("2027-06-26 12:00", end)]
    assert not [a for step in firing for a in step if a[0] == "AzureStackStampSupportExpectedToEnd"]
    # A stamp that never installs hotfixes: overdue from 45 days after each hotfix's release until
    # it moves to the next release (2701 installed on 2027-01-23), then again for 2701's first.
    assert spans("AzureStackStampHotfixOverdue", "a", "no-hotfixes") == [
        ("2026-06-14 00:00", "2027-01-23 00:00"),
        ("2027-03-20 00:00", end),
    ]
    # No live source and old knowledge: stale from the day the forecast made at its last confirmation
    # (2026-05-13) expected the next release; adding a live source clears it at once.
    assert spans("AzureStackCatalogStale", "b", "") == [("2026-09-29 12:00", "2026-11-02 00:00")]


def test_a_stamp_behaviour_gives_the_builds_the_scenario_says():
    at = lambda day: dt.datetime.fromisoformat(day + "T00:00:00+00:00").timestamp()  # noqa: E731
    well = next(s for s in timeline.STAMPS if s.name == "well-run")
    assert str(timeline.build_at(well, at("2026-05-14"))) == "1.2601.1.10"
    assert str(timeline.build_at(well, at("2026-05-23"))) == "1.2601.1.14"
    assert str(timeline.build_at(well, at("2027-01-23"))) == "1.2701.0.10"
    assert str(timeline.build_at(well, at("2027-02-12"))) == "1.2701.1.5"
