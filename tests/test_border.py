"""The border and what stands behind it, in process: hostile values in, typed bounded values out,
one stamp's failure confined to it, one stamp's claims believed by it alone."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from exporter.border import clean_text, escape_terminal, finite, is_clean, not_future
from exporter.catalog import (
    BUILD_UNKNOWN,
    RELEASE_UNKNOWN,
    Catalog,
    Evidence,
    Hotfix,
    PartialDate,
    Release,
    corroborate,
    merge,
)
from exporter.config import load_bundled_catalog
from exporter.metrics import Snapshot, build_registry, stamp_families
from exporter.policy import Policy
from exporter.report import (
    EVALUATION_FAILED,
    AvailableUpdate,
    Observation,
    SourceStatus,
    StampReport,
    StampStatus,
    build_report,
    render_table,
    to_json,
)
from exporter.runs import UpdateRun, last_run, parse_duration
from exporter.statuspage import render
from exporter.versions import oem_key, parse_version

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC).timestamp()
BUNDLED = (SourceStatus("bundled", "exporter/data/catalog.yml", True, NOW, 31), load_bundled_catalog())


def v(text: str):
    return parse_version(text)


# ---------------------------------------------------------------- text, numbers, times


@given(st.text(max_size=300), st.integers(min_value=1, max_value=200))
def test_clean_text_is_printable_encodable_and_bounded(text, limit):
    cleaned = clean_text(text, limit)
    if cleaned is None:
        return
    assert len(cleaned) <= limit
    cleaned.encode("utf-8")  # never a lone surrogate
    assert cleaned.isprintable() and cleaned == cleaned.strip()
    assert is_clean(cleaned)


def test_clean_text_replaces_what_cannot_be_shown_and_keeps_the_rest():
    assert clean_text("  Applied\ud800Successfully \x1b[2J\r\n ok ") == "Applied\ufffdSuccessfully \ufffd[2J ok"
    assert clean_text("\u202eevil") == "\ufffdevil"  # a bidi override could reverse what an operator reads
    assert clean_text("Z\u00fcrich-1") == "Z\u00fcrich-1"
    assert clean_text("x" * 10, 5) == "xxxx\u2026"
    assert clean_text(7) is None and clean_text("   ") is None


@given(st.text(max_size=200))
def test_escaped_terminal_text_holds_no_control_character(text):
    escaped = escape_terminal(text)
    assert all(c.isprintable() or c == " " for c in escaped)
    escaped.encode("utf-8")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1.5, 1.5), (float("nan"), None), (float("inf"), None), (10**400, None), (-1.0, None), (True, None)],
)
def test_finite_numbers_within_bounds_only(value, expected):
    assert finite(value, 0.0, 100.0) == expected


def test_times_in_the_future_beyond_the_skew_are_refused():
    assert not_future(NOW + 60, NOW) == NOW + 60
    assert not_future(NOW + 2 * 3600, NOW) is None
    assert not_future(None, NOW) is None


@pytest.mark.parametrize("text", ["P3000000D", "PT" + "9" * 400 + "S", "NaN", "P1e400D", "PT-1H"])
def test_implausible_run_durations_are_unknown(text):
    assert parse_duration(text) is None


def test_oem_versions_are_ascii_digits_only():
    assert oem_key("2.4.\u00b2") is None and oem_key("2.4.\u0663") is None
    assert oem_key("2.4.2411.6") == (2, 4, 2411, 6)


# ---------------------------------------------------------------- the last run


def test_a_failed_run_without_a_start_is_the_last_run_of_its_update():
    installed = UpdateRun("1.2506.2.24", "Succeeded", NOW - 86400, 9 * 3600.0)
    undated = UpdateRun("1.2506.3.30", "Failed", None, 0.0, "Preparing to install", "exited with error code 1")
    assert last_run([installed, undated]) is undated
    retried = UpdateRun("1.2506.3.30", "Succeeded", NOW - 60, 3600.0)
    assert last_run([installed, undated, retried]) is retried  # a dated run of the same update is later
    assert last_run([]) is None


# ---------------------------------------------------------------- corroboration


def known() -> Catalog:
    return merge([load_bundled_catalog()])


@pytest.mark.parametrize(
    ("build", "reported", "believed", "flag"),
    [
        ("1.2611.0.1", True, True, None),  # newer than every known release: a new release
        ("1.2611.0.1", False, False, RELEASE_UNKNOWN),  # typed in: maybe a typo
        ("1.2512.0.1", True, False, RELEASE_UNKNOWN),  # between 2506 and 2601: nobody else believes it
        ("1.2612.0.1", True, False, RELEASE_UNKNOWN),  # beyond this month (2611)
        ("1.2601.2.20", True, True, None),  # above 2601's newest known hotfix: a new hotfix
        ("1.2601.2.20", False, False, BUILD_UNKNOWN),
        ("1.2601.1.12", True, False, BUILD_UNKNOWN),  # between known hotfixes
        ("1.2601.1.14", False, False, None),  # known
    ],
)
def test_what_one_stamp_adds_for_everyone(build, reported, believed, flag):
    catalog, unknown = corroborate(known(), [Evidence("s", (v(build),), reported)], NOW)
    release = catalog.get(v(build).update_version)
    present = release is not None and (
        release.sources == ("observed",) or v(build) in {release.build, *(h.build for h in release.hotfixes)}
    )
    assert present == (believed or flag is None)
    flags = [(str(u.build), u.reason, u.typed_in) for u in unknown.get("s", ())]
    assert flags == ([] if flag is None else [(build, flag, not reported)])


def test_a_release_one_stamp_reports_is_not_flagged_on_another_that_types_it_in():
    evidence = [Evidence("admin", (v("1.2611.0.1"),), True), Evidence("typed", (v("1.2611.0.1"),), False)]
    catalog, unknown = corroborate(known(), evidence, NOW)
    assert catalog.get("2611").sources == ("observed",) and unknown == {}


def test_a_stamp_alone_claiming_a_release_is_evaluated_with_it_and_others_are_not():
    liar = StampStatus(
        "liar",
        "admin",
        observation=Observation(v("1.2512.0.1"), collected_at=NOW),
        up=True,
    )
    honest = StampStatus("honest", "admin", observation=Observation(v("1.2501.1.47"), collected_at=NOW), up=True)
    report = build_report([liar, honest], [BUNDLED], Policy(), NOW)
    assert report.catalog.get("2512") is None
    liar_report, honest_report = report.stamps
    assert liar_report.evaluation.versions_behind == 1  # 2601 only, in its own view
    assert honest_report.evaluation.versions_behind == 2 and honest_report.unknown_builds == ()


# ---------------------------------------------------------------- live sources cannot unsay the bundled catalog


def test_a_live_source_adds_but_never_unsays_a_documented_fact():
    bundled = [r for r in load_bundled_catalog() if r.update in ("2506", "2601")]
    live = [
        Release("2506", v("1.2506.3.99"), sources=("url",)),
        Release("2601", None, PartialDate(2016, 1), sources=("update_graph",)),
        Release("2604", v("1.2604.0.2"), PartialDate(2026, 11, 2), sources=("url",), date_basis="announced"),
    ]
    catalog = merge([live, bundled])
    assert catalog.get("2506").build == v("1.2506.0.15")
    assert [str(h.build) for h in catalog.get("2506").hotfixes] == ["1.2506.2.24", "1.2506.3.30"]
    assert catalog.get("2601").released == PartialDate(2026, 4, 8)
    assert catalog.get("2604").build == v("1.2604.0.2")  # added: nothing documented says otherwise
    assert [(d.update, d.what, d.source) for d in catalog.disagreements] == [
        ("2506", "base build", "url"),
        ("2601", "release date", "update_graph"),
    ]
    # The operator's own file is a correction: it wins, and nothing is a disagreement.
    own = [Release("2506", v("1.2506.3.99"), sources=("file",))]
    corrected = merge([own, bundled])
    assert corrected.get("2506").build == v("1.2506.3.99") and corrected.disagreements == ()


def test_a_live_hotfix_date_against_a_documented_one_keeps_the_documented_one():
    bundled = [r for r in load_bundled_catalog() if r.update == "2601"]
    live = [Release("2601", hotfixes=(Hotfix(v("1.2601.1.14"), PartialDate(2025, 1, 1)),), sources=("url",))]
    catalog = merge([live, bundled])
    assert catalog.get("2601").latest_hotfix.released == PartialDate(2026, 5, 13)
    assert [d.what for d in catalog.disagreements] == ["date of hotfix 1.2601.1.14"]


# ---------------------------------------------------------------- one stamp's failure stays with it

HOSTILE_TEXT = st.text(alphabet=st.characters(codec=None), max_size=80)


@st.composite
def hostile_observation(draw) -> Observation:
    updates = draw(
        st.lists(
            st.builds(AvailableUpdate, HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT, HOSTILE_TEXT),
            max_size=4,
        )
    )
    runs = draw(
        st.lists(
            st.builds(
                UpdateRun,
                HOSTILE_TEXT,
                HOSTILE_TEXT,
                st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
                st.one_of(st.none(), HOSTILE_TEXT),
                st.one_of(st.none(), HOSTILE_TEXT),
            ),
            max_size=3,
        )
    )
    return Observation(
        v(draw(st.sampled_from(["1.2601.1.14", "1.2506.2.24", "1.2408.1.50", "1.2612.0.1", "1.0.171201.1"]))),
        oem_version=draw(st.one_of(st.none(), HOSTILE_TEXT)),
        collected_at=NOW,
        update_state=draw(st.one_of(st.none(), HOSTILE_TEXT)),
        last_updated=draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))),
        last_checked=draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))),
        updates=tuple(updates),
        oem_family=draw(st.one_of(st.none(), HOSTILE_TEXT)),
        runs=tuple(runs),
        refused=tuple(draw(st.lists(HOSTILE_TEXT, max_size=2))),
    )


@settings(max_examples=150, deadline=None)
@given(hostile_observation())
def test_no_value_behind_the_border_can_break_a_view_or_another_stamp(observation):
    """Even values that never get past the border (NaN, surrogates, escapes) break no view, and the
    healthy stamp beside the hostile one keeps its own verdict."""
    hostile = StampStatus("hostile", "admin", observation=observation, up=True, oem_family="Dell")
    healthy = StampStatus("healthy", "static", observation=Observation(v("1.2506.2.24"), collected_at=NOW), up=True)
    oem = {"dell": ("2.4.2411.6", "2.4.2502.3")}
    report = build_report([hostile, healthy], [BUNDLED], Policy(), NOW, oem)
    assert report.stamp("healthy").evaluation.versions_behind == 1
    to_json(report)
    render_table(report).encode("utf-8")
    render(report, NOW).encode("utf-8")
    snapshot = Snapshot(report, True, NOW)
    generate_latest(build_registry(lambda: snapshot, process_metrics=False)).decode("utf-8")


def test_a_stamp_whose_evaluation_raises_is_down_with_a_reason_and_the_others_are_evaluated():
    """A value that no border lets through (a version that is not a Version) stands for every bug
    still unknown: that stamp says so, the fleet goes on."""
    broken = StampStatus("broken", "admin", observation=replace(Observation(v("1.2506.2.24")), version="oops"), up=True)
    healthy = StampStatus("healthy", "static", observation=Observation(v("1.2506.2.24"), collected_at=NOW), up=True)
    report = build_report([broken, healthy], [BUNDLED], Policy(), NOW)
    assert report.stamp("broken").evaluation is None
    assert report.stamp("broken").problem.startswith(f"{EVALUATION_FAILED}: ")
    assert report.stamp("healthy").evaluation.versions_behind == 1


def test_a_stamp_that_cannot_be_rendered_shows_down_and_the_others_render():
    report = build_report(
        [
            StampStatus("a", "static", observation=Observation(v("1.2506.2.24"), collected_at=NOW), up=True),
            StampStatus("b", "static", observation=Observation(v("1.2601.1.14"), collected_at=NOW), up=True),
        ],
        [BUNDLED],
        Policy(),
        NOW,
    )
    a, b = report.stamps
    unrenderable = replace(a, evaluation=replace(a.evaluation, versions_behind=10**400))
    registry = CollectorRegistry(auto_describe=False)

    class Families:
        def collect(self):
            return iter(stamp_families([unrenderable, b], NOW))

    registry.register(Families())
    text = generate_latest(registry).decode()
    assert 'azurestack_stamp_up{stamp="a"} 0.0' in text
    assert 'azurestack_stamp_collection_errors_total{reason="render",stamp="a"}' in text
    # all or nothing: none of what was rendered before the failure, but still listed as a stamp
    # (label filters and joins on azurestack_stamp_info keep finding it)
    infos = [line for line in text.splitlines() if line.startswith("azurestack_stamp_info{") and 'stamp="a"' in line]
    assert infos == ['azurestack_stamp_info{oem_version="",source="static",stamp="a",update_version="",version=""} 1.0']
    assert 'azurestack_stamp_versions_behind{stamp="a"}' not in text
    assert 'azurestack_stamp_versions_behind{stamp="b"} 0.0' in text
    assert 'azurestack_stamp_up{stamp="b"} 1.0' in text


def test_every_derived_figure_is_finite_or_absent():
    absurd = (
        UpdateRun("1.2506.2.24", "Succeeded", NOW - 86400, math.inf),
        UpdateRun("1.2506.2.24", "Succeeded", NOW - 2 * 86400, math.nan),
    )
    stamp = StampStatus(
        "absurd", "admin", observation=Observation(v("1.2506.2.24"), collected_at=NOW, runs=absurd), up=True
    )
    report = build_report([stamp], [BUNDLED], Policy(), NOW)
    summary: StampReport = report.stamp("absurd")
    for figure in (summary.runs.typical, summary.runs.time_to_compliance, summary.runs.start_by):
        assert figure is None or math.isfinite(figure)
