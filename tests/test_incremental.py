"""The fleet's report kept current incrementally: each step gives exactly build_report's
report, while evaluating only the stamps whose inputs changed."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import CollectorRegistry
from test_report import BUNDLED, NOW, admin, rich_fleet, static

from exporter.catalog import Release
from exporter.metrics import OPENMETRICS, TEXT, Snapshot, StampCollector, StampExposition, _encode
from exporter.policy import Policy
from exporter.report import FleetEvaluator, Observation, SourceStatus, StampStatus, build_report
from exporter.runs import UpdateRun
from exporter.versions import parse_version

OEM = {"dell": ("2.4.2411.6", "2.4.2502.3", "2.4.2506.1"), "hpe": ("2.1.0", "2.2.0", "2.3.0", "2.4.0")}
HOUR = 3600.0


def test_a_read_of_one_stamp_evaluates_that_stamp_only():
    evaluator = FleetEvaluator(max_age=HOUR)
    fleet = rich_fleet()
    first = evaluator.report(fleet, [BUNDLED], Policy(), NOW, OEM)
    assert evaluator.evaluated == len(fleet)
    assert evaluator.report(fleet, [BUNDLED], Policy(), NOW + 60, OEM).stamps == first.stamps
    assert evaluator.evaluated == 0
    # One stamp read again: a new status, the same version.
    fleet[8] = replace(fleet[8], last_attempt=NOW + 100, observation=replace(fleet[8].observation, collected_at=NOW))
    report = evaluator.report(fleet, [BUNDLED], Policy(), NOW + 120, OEM)
    assert evaluator.evaluated == 1
    fresh = build_report(fleet, [BUNDLED], Policy(), NOW + 120, OEM)
    assert report.stamps[8] == fresh.stamps[8]
    # The others' verdicts are those of two minutes before: the same as now.
    assert [s.evaluation for s in report.stamps] == [s.evaluation for s in fresh.stamps]


def test_what_the_fleet_shares_changing_evaluates_every_stamp():
    evaluator = FleetEvaluator(max_age=HOUR)
    fleet = [static("a", "1.2506.2.24"), static("b", "1.2501.1.47"), admin("c", "1.2408.1.50")]
    evaluator.report(fleet, [BUNDLED], Policy(), NOW)
    # A new release proved by one stamp puts every other stamp one further behind.
    assert [s.evaluation.versions_behind for s in evaluator.report(fleet, [BUNDLED], Policy(), NOW).stamps] == [1, 2, 3]
    fleet[0] = admin("a", "1.2611.0.1")
    report = evaluator.report(fleet, [BUNDLED], Policy(), NOW)
    assert evaluator.evaluated == 3
    assert [s.evaluation.versions_behind for s in report.stamps] == [0, 3, 4]
    # Another policy.
    evaluator.report(fleet, [BUNDLED], Policy(supported_releases=4), NOW)
    assert evaluator.evaluated == 3
    # Another source's releases (a file that lists one release more).
    extra = (SourceStatus("file", "more.yml", True, NOW, 1), (Release("2612", None, None),))
    report = evaluator.report(fleet, [extra, BUNDLED], Policy(supported_releases=4), NOW)
    assert evaluator.evaluated == 3
    # The same sources read again later (a new status, equal releases): nothing to evaluate.
    again = (replace(extra[0], last_success=NOW + 60), tuple(extra[1]))
    evaluator.report(fleet, [again, BUNDLED], Policy(supported_releases=4), NOW)
    assert evaluator.evaluated == 0


def test_every_stamp_is_evaluated_again_once_its_verdict_is_max_age_old():
    evaluator = FleetEvaluator(max_age=HOUR)
    fleet = [static("a", "1.2506.2.24"), static("b", "1.2501.1.47")]
    evaluator.report(fleet, [BUNDLED], Policy(), NOW)
    evaluator.report(fleet, [BUNDLED], Policy(), NOW + HOUR - 1)
    assert evaluator.evaluated == 0
    evaluator.report(fleet, [BUNDLED], Policy(), NOW + HOUR)
    assert evaluator.evaluated == 2
    evaluator.report(fleet, [BUNDLED], Policy(), NOW)  # a clock set back: nothing is trusted
    assert evaluator.evaluated == 2


def test_a_stamp_whose_runs_move_the_fleet_typical_run_evaluates_those_that_use_it():
    evaluator = FleetEvaluator(max_age=HOUR)
    ran = (UpdateRun("1.2506.0.15", "Succeeded", NOW - 40 * 86400, 12 * HOUR),)
    fleet = [admin("own", "1.2506.2.24", runs=ran), admin("none", "1.2501.1.47")]
    assert evaluator.report(fleet, [BUNDLED], Policy(), NOW).stamps[1].runs.typical == 12 * HOUR
    fleet[0] = admin("own", "1.2506.2.24", runs=(replace(ran[0], duration=20 * HOUR),))
    report = evaluator.report(fleet, [BUNDLED], Policy(), NOW)
    assert evaluator.evaluated == 2
    assert report.stamps[1].runs.typical == 20 * HOUR


def test_a_first_read_filling_the_fleet_in_evaluates_and_writes_only_the_stamp_read():
    """While a first read brings the stamps in one by one, each proving builds already known and
    moving the fleet's typical run, the stamps already read are neither evaluated nor written again."""
    evaluator, exposition = FleetEvaluator(max_age=HOUR), StampExposition()
    versions = ["1.2506.2.24", "1.2501.1.47", "1.2408.1.50", "1.2601.1.14"]
    fleet = [StampStatus(f"s{i}", "admin") for i in range(8)]  # configured, not read yet
    exposition.render(evaluator.report(fleet, [BUNDLED], Policy(), NOW))
    for i in range(len(fleet)):
        ran = (UpdateRun("1.2506.0.15", "Succeeded", NOW - 40 * 86400, (10 + i) * HOUR),)
        fleet[i] = admin(f"s{i}", versions[i % len(versions)], runs=ran)
        report = evaluator.report(fleet, [BUNDLED], Policy(), NOW + i)
        assert evaluator.evaluated == 1
        assert exposition.render(report) == whole(report)
        assert exposition.written == 1
        assert report == build_report(fleet, [BUNDLED], Policy(), NOW + i)


def test_a_verdict_evaluated_again_unchanged_is_the_same_and_not_written_again():
    evaluator, exposition = FleetEvaluator(max_age=HOUR), StampExposition()
    fleet = rich_fleet()
    before = evaluator.report(fleet, [BUNDLED], Policy(), NOW, OEM)
    exposition.render(before)
    after = evaluator.report(fleet, [BUNDLED], Policy(), NOW + HOUR, OEM)
    assert evaluator.evaluated == len(fleet)
    changed = [a.name for a, b in zip(after.stamps, before.stamps, strict=True) if a is not b]
    assert changed == [b.name for a, b in zip(after.stamps, before.stamps, strict=True) if a != b]
    assert len(changed) < len(fleet)
    assert exposition.render(after) == whole(after)
    assert exposition.written == len(changed)


def test_a_failed_evaluation_is_tried_again_at_the_next_report():
    broken = StampStatus("broken", "admin", observation=replace(Observation(parse_version("1.2506.2.24")), version="x"))
    fleet = [broken, static("ok", "1.2506.2.24")]
    evaluator = FleetEvaluator(max_age=HOUR)
    for evaluated in (2, 1, 1):
        report = evaluator.report(fleet, [BUNDLED], Policy(), NOW)
        assert report.stamps[0].problem.startswith("evaluation failed")
        assert evaluator.evaluated == evaluated


VERSIONS = ["1.2408.1.50", "1.2501.1.47", "1.2506.2.24", "1.2601.1.14", "1.2611.0.1", "1.2609.0.2", "1.2005.0.40"]
step = st.one_of(
    st.tuples(st.just("read"), st.integers(0, 5), st.sampled_from(VERSIONS)),
    st.tuples(st.just("policy"), st.integers(1, 5), st.just("")),
    st.tuples(st.just("drop"), st.integers(0, 5), st.just("")),
    st.tuples(st.just("same"), st.integers(0, 5), st.just("")),
    st.tuples(st.just("ran"), st.integers(0, 5), st.sampled_from(["0", "10", "12", "30"])),  # hours; 0: no runs
)


def ran(name: str, hours: str, fleet: dict[str, StampStatus]) -> StampStatus:
    """The stamp read again with a run history of its own (none for "0"): the fleet's typical run moves."""
    version = str(fleet[name].observation.version) if name in fleet else VERSIONS[0]
    runs = (UpdateRun("1.2408.1.50", "Succeeded", NOW - 90 * 86400, int(hours) * HOUR),) if int(hours) else ()
    return admin(name, version, runs=runs)


@settings(max_examples=60, deadline=None)
@given(st.lists(step, max_size=12))
def test_each_step_gives_build_reports_report(steps):
    """Whatever happens in whatever order, at one moment the incremental report is the full one."""
    evaluator = FleetEvaluator(max_age=float("inf"))
    fleet = {f"s{i}": admin(f"s{i}", VERSIONS[i]) if i % 2 else static(f"s{i}", VERSIONS[i]) for i in range(6)}
    policy = Policy()
    for kind, index, version in [("same", 0, ""), *steps]:
        name = f"s{index}"
        if kind == "read":
            fleet[name] = admin(name, version) if index % 2 else static(name, version)
        elif kind == "policy":
            policy = Policy(supported_releases=index)
        elif kind == "drop":
            fleet.pop(name, None)
        elif kind == "ran":
            fleet[name] = ran(name, version, fleet)
        statuses = list(fleet.values())
        assert evaluator.report(statuses, [BUNDLED], policy, NOW, OEM) == build_report(
            statuses, [BUNDLED], policy, NOW, OEM
        )


# ---------------------------------------------------------------- the exposition, stamp by stamp


def whole(report) -> dict[str, bytes]:
    """Every stamp written at once, as prometheus_client writes the StampCollector's families."""
    snapshot = Snapshot(report, True, NOW)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StampCollector(lambda: snapshot))
    families = list(registry.collect())
    return {fmt: _encode(families, fmt) for fmt in (TEXT, OPENMETRICS)}


def test_the_stamp_exposition_written_stamp_by_stamp_is_the_one_written_at_once():
    evaluator, exposition = FleetEvaluator(max_age=HOUR), StampExposition()
    fleet = rich_fleet()
    report = evaluator.report(fleet, [BUNDLED], Policy(), NOW, OEM)
    assert exposition.render(report) == whole(report)
    assert exposition.written == len(fleet)
    assert exposition.render(report) == whole(report)
    assert exposition.written == 0
    # One stamp read again, one relabelled: two written, the bytes still those written at once.
    fleet[8] = replace(fleet[8], last_attempt=NOW + 100)
    fleet[0] = replace(fleet[0], labels={"zone": 'a\\"b\n'})  # a new label name changes every stamp's info
    report = evaluator.report(fleet, [BUNDLED], Policy(), NOW + 100, OEM)
    assert exposition.render(report) == whole(report)
    assert exposition.written == len(fleet)
    fleet[8] = replace(fleet[8], last_attempt=NOW + 200)
    report = evaluator.report(fleet, [BUNDLED], Policy(), NOW + 200, OEM)
    assert exposition.render(report) == whole(report)
    assert exposition.written == 1


def test_a_stamp_read_again_keeps_every_block_its_samples_left_alone():
    """The exposition is kept once: blocks a read did not change are the same objects, and
    OpenMetrics shares the text format's samples."""
    evaluator, exposition = FleetEvaluator(max_age=HOUR), StampExposition()
    fleet = rich_fleet()
    before = exposition.render_parts(evaluator.report(fleet, [BUNDLED], Policy(), NOW, OEM))
    assert all(o is t for o, t in zip(before[OPENMETRICS][1::2], before[TEXT][1::2], strict=True))
    fleet[8] = replace(fleet[8], last_attempt=NOW + 100)  # read again: a new status, the same samples
    after = exposition.render_parts(evaluator.report(fleet, [BUNDLED], Policy(), NOW + 100, OEM))
    assert exposition.written == 1
    assert all(a is b for a, b in zip(after[TEXT], before[TEXT], strict=True))
    fleet[8] = replace(fleet[8], duration=12.5)  # one sample moves: its family's block alone is new
    report = evaluator.report(fleet, [BUNDLED], Policy(), NOW + 200, OEM)
    moved = exposition.render_parts(report)
    assert b"".join(moved[TEXT]) == whole(report)[TEXT]
    assert sum(a is not b for a, b in zip(moved[TEXT], after[TEXT], strict=True)) == 1


def test_a_running_update_is_written_again_as_its_duration_grows():
    running = (UpdateRun("1.2601.0.4", "InProgress", NOW - 2 * HOUR, None),)
    fleet = [admin("busy", "1.2506.2.24", runs=running), static("idle", "1.2506.2.24")]
    evaluator, exposition = FleetEvaluator(max_age=HOUR), StampExposition()
    for later in (0, 60, 120):
        report = evaluator.report(fleet, [BUNDLED], Policy(), NOW + later)
        text = exposition.render(report)["text"].decode()
        assert f'azurestack_stamp_last_update_run_duration_seconds{{stamp="busy"}} {2 * HOUR + later:.1f}' in text
        assert exposition.written == (2 if later == 0 else 1)


@settings(max_examples=40, deadline=None)
@given(st.lists(step, max_size=10), st.lists(st.sampled_from(["site", "room", "rack"]), max_size=3))
def test_any_sequence_of_reports_is_written_as_at_once(steps, label_names):
    evaluator, exposition = FleetEvaluator(max_age=float("inf")), StampExposition()
    fleet = {f"s{i}": admin(f"s{i}", VERSIONS[i]) if i % 2 else static(f"s{i}", VERSIONS[i]) for i in range(6)}
    policy = Policy()
    for number, (kind, index, version) in enumerate([("same", 0, ""), *steps]):
        name = f"s{index}"
        if kind == "read":
            fleet[name] = admin(name, version) if index % 2 else static(name, version)
            if label_names:
                fleet[name] = replace(fleet[name], labels={label_names[number % len(label_names)]: version})
        elif kind == "policy":
            policy = Policy(supported_releases=index)
        elif kind == "drop":
            fleet.pop(name, None)
        elif kind == "ran":
            fleet[name] = ran(name, version, fleet)
        report = evaluator.report(list(fleet.values()), [BUNDLED], policy, NOW, OEM)
        assert exposition.render(report) == whole(report)


def test_a_stamp_that_cannot_be_written_is_tried_again_each_time_and_counted():
    report = build_report([static("unwritable", "1.2506.2.24"), static("b", "1.2601.1.14")], [BUNDLED], Policy(), NOW)
    a, b = report.stamps
    report = replace(report, stamps=(replace(a, evaluation=replace(a.evaluation, versions_behind=10**400)), b))
    exposition = StampExposition()
    for count in (1, 2):
        text = exposition.render(report)["text"].decode()
        assert f'azurestack_stamp_collection_errors_total{{reason="render",stamp="unwritable"}} {count:.1f}' in text
        assert 'azurestack_stamp_up{stamp="unwritable"} 0.0' in text
        assert 'azurestack_stamp_versions_behind{stamp="b"} 0.0' in text
        assert exposition.written == (2 if count == 1 else 1)
