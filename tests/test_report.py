"""The evaluated report and its views, in process: verdicts, exit codes, JSON, the table, freshness."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from exporter.catalog import Catalog
from exporter.config import load_bundled_catalog, load_bundled_document
from exporter.policy import Policy, PolicyException
from exporter.report import (
    AvailableUpdate,
    Observation,
    SourceStatus,
    StampStatus,
    build_report,
    catalog_warnings,
    exit_code,
    freshness,
    render_table,
    to_json,
)
from exporter.runs import UpdateRun
from exporter.versions import parse_version

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC).timestamp()
CONFIRMED = load_bundled_document().confirmed.timestamp()  # 2026-05-13
BUNDLED = (
    SourceStatus("bundled", "exporter/data/catalog.yml", True, NOW, 31, confirmed=CONFIRMED),
    load_bundled_catalog(),
)


def static(name: str, version: str) -> StampStatus:
    return StampStatus(name, "static", observation=Observation(parse_version(version), collected_at=NOW), up=True)


def admin(
    name: str, version: str, runs: tuple[UpdateRun, ...] = (), up: bool = True, oem: str | None = None
) -> StampStatus:
    observation = Observation(
        parse_version(version),
        oem_version=oem,
        collected_at=NOW - 60,
        update_state="UpdateAvailable",
        updates=(AvailableUpdate("Microsoft1.2601.0.4", "1.2601.0.4", "Infrastructure", "Ready"),),
        runs=runs,
    )
    return StampStatus(name, "admin", observation=observation, up=up, error=None if up else "timeout: too slow")


def test_verdicts_exit_codes_and_the_json_of_a_mixed_fleet():
    statuses = [static("n", "1.2601.1.14"), static("n2", "1.2501.1.47"), static("n3", "1.2408.1.50")]
    report = build_report(statuses, [BUNDLED], Policy(), NOW)
    assert [s.verdict for s in report.stamps] == ["in_support", "ending_soon", "out_of_support"]
    assert exit_code(report) == 1
    document = to_json(report)
    assert document["generated_at"] == "2026-11-23T12:00:00Z"
    assert document["catalog"]["latest"] == "2601" and document["catalog"]["newest_release_age_days"] == 229
    n3 = document["stamps"][2]
    assert (n3["versions_behind"], n3["in_support"], n3["superseded_by"], n3["out_of_support_since"]) == (
        3, False, "2601", "2026-04-08",
    )  # fmt: skip
    assert n3["update_path"] == ["2501", "2506", "2601"] and n3["support_expected_end"] is None
    # 2601 is 229 days old and the usual interval (174 days) has passed: of the last ten intervals only
    # one (372 days) lasted that long, so the next release, and n2's end, are expected when it ended.
    assert document["stamps"][1]["support_expected_end"] == {"date": "2027-04-15", "estimate": True}
    in_support_only = build_report(statuses[:2], [BUNDLED], Policy(), NOW)
    assert exit_code(in_support_only) == 4  # the bundled catalog alone, confirmed 2026-05-13, is stale
    live = (SourceStatus("url", "https://c.example/c.yml", True, NOW - 300, 0, confirmed=NOW - 300), ())
    assert exit_code(build_report(statuses[:2], [live, BUNDLED], Policy(), NOW)) == 0
    down = build_report([*statuses[:2], admin("w", "1.2601.1.14", up=False)], [BUNDLED], Policy(), NOW)
    assert exit_code(down) == 3


def test_the_table_says_age_forecast_verdicts_and_next_steps():
    report = build_report([static("n", "1.2601.1.10"), static("old", "1.2408.1.50")], [BUNDLED], Policy(), NOW)
    lines = render_table(report).splitlines()
    assert lines[0] == "Latest release: 2601 (31 releases known); supported: N, N-1, N-2"
    assert lines[1].startswith(
        "Catalog: confirmed complete on 2026-05-13 by bundled exporter/data/catalog.yml; "
        "newest known release 2601, documented by 2026-04-08 (229 days ago)"
    )
    rows = {line.split()[0]: line for line in lines if line.startswith(("n ", "old "))}
    assert "hotfix 1.2601.1.14 (overdue)" in rows["n"]
    assert "OUT OF SUPPORT" in rows["old"] and "ended 2026-04-08" in rows["old"]
    assert "2501 (1.2501.0.21), then 2 more updates" in rows["old"]


def test_freshness_counts_from_the_last_confirmation_not_from_the_calendar():
    """Confirmed on 2026-05-13, when the next release was expected on 2026-09-29 (2601 plus the usual
    174 days): since that day a release the catalog lacks has probably come out."""
    fresh = freshness(build_report([], [BUNDLED], Policy(), NOW))
    assert (fresh.update, fresh.age_days, fresh.confirmed, fresh.confirmed_by) == (
        "2601", 229, CONFIRMED, "bundled exporter/data/catalog.yml",
    )  # fmt: skip
    assert fresh.stale_after == load_2601() + 174 * 86400 and fresh.stale is True
    table = render_table(build_report([static("n", "1.2601.1.14")], [BUNDLED], Policy(), NOW))
    assert "STALE since ~2026-09-29" in table
    # A live source read five minutes ago confirms it: fresh, whatever the calendar says. The
    # usual interval has passed; of the last ten only one (372 days) lasted longer: that is when
    # the next release is expected, and when this confirmation goes stale.
    live = (SourceStatus("update_graph", "https://g.example/graph.xml", True, NOW - 300, 31, confirmed=NOW - 300), ())
    confirmed = freshness(build_report([], [live, BUNDLED], Policy(), NOW))
    assert (confirmed.confirmed, confirmed.confirmed_by, confirmed.stale) == (
        NOW - 300, "update_graph https://g.example/graph.xml", False,
    )  # fmt: skip
    assert confirmed.stale_after == load_2601() + 372 * 86400


def test_runs_fleet_typical_and_start_by_in_the_report():
    history = (
        UpdateRun("1.2506.0.15", "Succeeded", NOW - 900 * 3600, 10 * 3600.0),
        UpdateRun("1.2506.0.15", "Succeeded", NOW - 500 * 3600, 14 * 3600.0),
    )
    failed = (UpdateRun("1.2601.0.4", "Failed", NOW - 5 * 3600, 3 * 3600.0, "Update SeedRing ECE", "blocked"),)
    report = build_report(
        [admin("h", "1.2506.0.15", history), admin("f", "1.2506.0.15", failed)], [BUNDLED], Policy(), NOW
    )
    h, f = report.stamps
    assert (h.runs.typical, h.runs.typical_basis, h.runs.packages, h.runs.time_to_compliance) == (
        12 * 3600.0, "stamp", 1, 12 * 3600.0,
    )  # fmt: skip
    assert (f.runs.typical, f.runs.typical_basis, f.runs.last.failed_step) == (
        12 * 3600.0,
        "fleet",
        "Update SeedRing ECE",
    )
    assert h.runs.start_by == h.support_expected_end - 12 * 3600.0
    document = {s["stamp"]: s for s in to_json(report)["stamps"]}
    assert document["f"]["update_runs"]["last"] == {
        "update": "1.2601.0.4", "state": "Failed", "started": "2026-11-23T07:00:00Z", "duration_seconds": 10800.0,
        "failed_step": "Update SeedRing ECE", "error": "blocked",
    }  # fmt: skip
    assert 'f: last update run 1.2601.0.4 Failed at "Update SeedRing ECE" (3.0 h)' in render_table(report)


def test_a_stamp_ahead_of_the_catalog_is_named_in_the_warning():
    report = build_report([admin("ahead", "1.2611.0.1"), static("n", "1.2601.1.14")], [BUNDLED], Policy(), NOW)
    assert catalog_warnings(report)[0].startswith(
        "stamps run or are offered 2611, which no catalog source knows (ahead)"
    )
    assert [s.evaluation.versions_behind for s in report.stamps] == [0, 1]
    assert Catalog.of(load_bundled_catalog()).get("2611") is None  # observed, never written into the source


def test_a_typed_in_build_ahead_of_the_catalog_is_believed_for_its_stamp_only():
    report = build_report([static("ahead", "1.2611.0.1"), static("n", "1.2601.1.14")], [BUNDLED], Policy(), NOW)
    assert catalog_warnings(report) == [] and report.catalog.get("2611") is None
    assert [s.evaluation.versions_behind for s in report.stamps] == [0, 0]
    assert report.stamps[0].evaluation.ahead_of_catalog is True
    assert [(str(u.build), u.reason, u.typed_in) for u in report.stamps[0].unknown_builds] == [
        ("1.2611.0.1", "release_unknown", True)
    ]


# ---------------------------------------------------------------- golden views
#
# Every field of the JSON document and every line of the table, for fleets that reach each branch
# of the views. Regenerate after a deliberate change with UPDATE_GOLDEN=1 and read the diff.

GOLDEN = Path(__file__).parent / "golden"
FAILING_SOURCE = (
    SourceStatus("url", "https://catalog.example/releases.yml", False, NOW - 7200, 0, "timeout: request timed out"),
    (),
)


# Two succeeded runs of 10 h and 14 h (typical: 12 h), and one failed run.
HISTORY = (
    UpdateRun("1.2506.0.15", "Succeeded", NOW - 900 * 3600, 10 * 3600.0),
    UpdateRun("1.2506.0.15", "Succeeded", NOW - 500 * 3600, 14 * 3600.0),
)
FAILED = (UpdateRun("1.2601.0.4", "Failed", NOW - 5 * 3600, 1800.0, "Update SeedRing ECE", "blocked"),)


def rich_fleet() -> list[StampStatus]:
    history, failed = HISTORY, FAILED
    observed = Observation(
        parse_version("1.2506.2.24"),
        oem_version="2.4.2411.6",
        collected_at=NOW - 60,
        update_state="UpdateAvailable",
        last_updated=NOW - 40 * 86400,
        last_checked=NOW - 3600,
        updates=(
            AvailableUpdate("Microsoft1.2506.2.24", "1.2506.2.24", "Infrastructure", "Installed"),
            AvailableUpdate("Microsoft1.2601.0.4", "1.2601.0.4", "Infrastructure", "Ready", "Microsoft"),
            AvailableUpdate("OEM2.4.2502.3", "2.4.2502.3", "OEM", "Ready", "Dell"),
        ),
        api_version="2021-07-01",
        oem_family="Dell",
        runs=history,
    )
    return [
        static("current", "1.2601.1.14"),
        static("hotfix-due", "1.2601.1.10"),
        StampStatus(
            "labelled", "static", {"site": "oslo"}, Observation(parse_version("1.2501.1.47"), collected_at=NOW), True
        ),
        static("old", "1.2408.1.50"),
        static("ancient", "1.2005.0.40"),
        static("ahead", "1.2611.0.1"),
        static("ahead-too", "1.2609.0.2"),
        static("prehistoric", "1.1712.0.1"),
        StampStatus("admin-up", "admin", observation=observed, up=True, last_attempt=NOW - 60, duration=1.5),
        StampStatus(
            "admin-failed",
            "admin",
            observation=replace(observed, version=parse_version("1.2506.0.15"), runs=failed, oem_version="2.1.0"),
            up=True,
            oem_family="HPE",
        ),
        StampStatus(
            "admin-stale",
            "admin",
            observation=replace(observed, collected_at=NOW - 7200, runs=()),
            up=False,
            error="timeout: no complete answer within 10 s",
        ),
        StampStatus("admin-never", "admin", up=False, error="auth: token request refused: invalid_client"),
        StampStatus(
            "admin-prehistoric", "admin", observation=replace(observed, version=parse_version("1.1712.0.1")), up=True
        ),
        StampStatus("admin-new", "admin", observation=replace(observed, version=parse_version("1.2611.0.1")), up=True),
        StampStatus(
            "admin-old",
            "admin",
            observation=replace(observed, version=parse_version("1.2408.1.50"), oem_family="Lenovo", runs=history),
            up=True,
        ),
    ]


def undated(releases) -> list:
    return [replace(r, released=None, date_basis=None) for r in releases]


def as_of(releases, now: float) -> list:
    """The catalog as it stood at ``now``: releases and hotfixes documented by then (undated ones kept)."""

    def known(item) -> bool:
        return item.released is None or item.released.timestamp() <= now

    return [replace(r, hotfixes=tuple(h for h in r.hotfixes if known(h))) for r in releases if known(r)]


def scenario(name: str):
    """One report of the golden files, built afresh for each test: mutmut forks each mutant's
    run from a process that has already run the tests, so a cache would serve reports built by
    the unmutated code and hide every mutant of it."""
    undated_file = [(SourceStatus("file", "releases.yml", True, NOW, 31), undated(load_bundled_catalog()))]
    oem = {"dell": ("2.4.2411.6", "2.4.2502.3", "2.4.2506.1"), "hpe": ("2.1.0", "2.2.0", "2.3.0", "2.4.0")}
    exception = PolicyException(dt.date(2020, 3, 1), dt.date(2020, 12, 31), 4, "2020 exception")
    in_2020 = dt.datetime(2020, 10, 1, 12, tzinfo=dt.UTC).timestamp()
    catalog_2020 = as_of(load_bundled_catalog(), in_2020)
    builders = {
        "fleet": lambda: build_report(rich_fleet(), [BUNDLED, FAILING_SOURCE], Policy(), NOW, oem),
        "stale": lambda: build_report(rich_fleet()[:2], [BUNDLED], Policy(hotfix_grace_period=86400), NOW + 60 * 86400),
        "undated": lambda: build_report(
            [static("n", "1.2601.1.14"), static("old", "1.2408.1.50")],
            undated_file,
            Policy(supported_releases=4, oem_supported_releases=2),
            NOW,
        ),
        "exception": lambda: build_report(
            [static("in-2020", "1.2002.0.35"), static("out-2020", "1.1910.0.58"), static("edge-2020", "1.1908.4.33")],
            [(SourceStatus("bundled", "exporter/data/catalog.yml", True, in_2020, 24), catalog_2020)],
            Policy(exceptions=(exception,)),
            in_2020,
        ),
        "empty": lambda: build_report([], [], Policy(), NOW),
        # Each footer part alone: runs only; an OEM verdict only; a forecast note with no forecast date shown.
        "runs-only": lambda: build_report(
            [admin("h", "1.2601.1.14", HISTORY)],
            undated_file,
            Policy(),
            NOW,
        ),
        "oem-only": lambda: build_report(
            [
                StampStatus(
                    "o",
                    "static",
                    observation=Observation(parse_version("1.2601.1.14"), "2.1.0", NOW),
                    up=True,
                    oem_family="HPE",
                ),
                StampStatus(
                    "no-family", "static", observation=Observation(parse_version("1.2601.1.14"), "2.1.0", NOW), up=True
                ),
            ],
            undated_file,
            Policy(),
            NOW,
            oem,
        ),
        # Runs beside exactly one other footer part: a warning, an OEM verdict, a problem.
        "runs-warning": lambda: build_report(
            [admin("h", "1.2611.0.1", HISTORY)],
            undated_file,
            Policy(),
            NOW,
        ),
        "runs-oem": lambda: build_report(
            [replace(admin("h", "1.2601.1.14", HISTORY, oem="2.4.2411.6"), oem_family="HPE")],
            undated_file,
            Policy(),
            NOW,
            {"hpe": ("2.4.2411.6", "2.5.0")},
        ),
        "runs-problem": lambda: build_report(
            [admin("h", "1.2601.1.14", HISTORY, up=False)],
            undated_file,
            Policy(),
            NOW,
        ),
        "all-out": lambda: build_report([static("old", "1.2408.1.50")], [BUNDLED], Policy(), NOW),
        "no-reason": lambda: build_report(
            [static("in-2020", "1.2002.0.35")],
            [(SourceStatus("bundled", "exporter/data/catalog.yml", True, in_2020, 24), catalog_2020)],
            Policy(exceptions=(replace(exception, reason=""),)),
            in_2020,
        ),
        "young": lambda: build_report(
            [static("n", "1.2601.1.14")],
            [(SourceStatus("file", "releases.yml", True, NOW, 31), last_dated(load_bundled_catalog(), 3))],
            Policy(),
            NOW,
        ),
    }
    return builders[name]()


def last_dated(releases, count: int) -> list:
    """Only the newest ``count`` releases keep their dates: enough to forecast, too few to backtest."""
    keep = {r.update for r in sorted((r for r in releases if r.released), key=lambda r: r.update)[-count:]}
    return [r if r.update in keep else replace(r, released=None, date_basis=None) for r in releases]


@pytest.mark.parametrize(
    "name",
    [
        *("fleet", "stale", "undated", "exception", "empty", "runs-only", "oem-only", "all-out", "no-reason"),
        *("young", "runs-warning", "runs-oem", "runs-problem"),
    ],
)
def test_views_match_their_golden_files(name):
    report = scenario(name)
    actual = {
        f"report-{name}.json": json.dumps(to_json(report), indent=2, sort_keys=False) + "\n",
        f"report-{name}.txt": render_table(report),
    }
    for file, text in actual.items():
        if os.environ.get("UPDATE_GOLDEN"):
            (GOLDEN / file).write_text(text)
        assert text == (GOLDEN / file).read_text(), file


def test_support_expected_to_end_under_an_exception_counts_its_lapse():
    """Under 2020's N-3 exception, a stamp N-2 leaves support when the exception lapses (2021-01-01),
    not two releases later; one N-1 leaves with the second release, as under the usual policy."""
    report = scenario("exception")
    ends = {s.name: dt.datetime.fromtimestamp(s.support_expected_end, dt.UTC).date() for s in report.stamps}
    assert ends["out-2020"] == dt.date(2021, 1, 1)
    assert ends["in-2020"] == dt.date(2021, 4, 2)
    assert ends["edge-2020"] == dt.date(2020, 12, 4)  # N-3: out with the next release, before the lapse


def test_a_stamp_is_found_by_its_name():
    report = scenario("fleet")
    assert report.stamp("old").name == "old"
    assert report.stamp("admin-never").name == "admin-never"
    assert report.stamp("nowhere") is None


def test_durations_read_in_hours_from_one_hour_and_in_minutes_below():
    from exporter.report import _hours

    assert _hours(3600) == "1.0 h"
    assert _hours(5400) == "1.5 h"
    assert _hours(3599) == "60 min"
    assert _hours(90) == "2 min"
    assert _hours(3780) == "1.1 h"


def load_2601() -> float:
    return next(r for r in load_bundled_catalog() if r.update == "2601").released.timestamp()


def test_a_late_forecast_learns_it_is_late_and_never_shows_a_past_date():
    from exporter.report import freshness_text

    def at(moment: float):
        return build_report([], [BUNDLED], Policy(), moment)

    due = load_2601() + 174 * 86400  # the usual interval after 2601
    on_time = to_json(at(due))["catalog"]["forecast"]
    assert (on_time["overdue"], on_time["next_release_expected"]) == (False, "2026-09-29")
    late = at(due + 1)
    forecast = to_json(late)["catalog"]["forecast"]
    assert (forecast["overdue"], forecast["due_by_cadence"]) == (True, "2026-09-29")
    assert late.forecast.next_expected > due + 1
    assert "(forecast)" in freshness_text(at(due - 86400))
    assert "1 days later than the usual interval" in freshness_text(at(due + 86400))
    for days in range(0, 800, 7):  # never a date in the past, whatever the day
        moment = due + days * 86400
        report = at(moment)
        assert report.forecast.next_expected >= moment


def test_the_catalog_is_stale_from_its_forecast_day_exactly():
    stale_after = freshness(build_report([], [BUNDLED], Policy(), NOW)).stale_after
    assert freshness(build_report([], [BUNDLED], Policy(), stale_after - 1)).stale is False
    assert freshness(build_report([], [BUNDLED], Policy(), stale_after)).stale is True


def test_a_stamp_never_read_proves_nothing_and_the_next_one_still_counts():
    never = StampStatus("never", "admin", up=False, error="auth: refused")
    report = build_report([never, admin("n", "1.2611.0.1")], [BUNDLED], Policy(), NOW)
    assert report.catalog.get("2611") is not None and report.catalog.get("2611").sources == ("observed",)
    assert [s.unknown_builds for s in report.stamps] == [(), ()]
