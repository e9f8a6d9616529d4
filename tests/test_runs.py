"""Update runs: parsing the recorded shapes, typical durations, time to compliance, start-by."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.admin import run_candidates, run_from
from exporter.report import AvailableUpdate
from exporter.runs import (
    UpdateRun,
    elapsed,
    failed_step,
    fleet_typical,
    parse_duration,
    summarize,
    typical_duration,
)

FIXTURES = Path(__file__).parent / "fixtures" / "azurestack"
H = 3600.0


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("PT14H43M50.0644552S", 14 * H + 43 * 60 + 50.0644552), ("PT0S", 0.0), ("P1DT2H", 26 * H), ("PT30M", 1800.0)],
)
def test_iso_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "P", "PT", "14:43:50", "PT-1H", None, 5])
def test_unreadable_durations_are_unknown(text):
    assert parse_duration(text) is None


@pytest.mark.parametrize("name", ["UpdateRuns-List-2021-07-01.json", "UpdateRuns-List-2016-05-01.json"])
def test_microsofts_example_run_of_both_api_versions(name):
    item = recorded(name)["responses"]["200"]["body"]["value"][0]
    run = run_from(item, "1.0.180302.1")
    assert run is not None
    assert (run.state, run.failed_step, run.error) == ("Succeeded", None, None)
    assert run.duration == pytest.approx(14 * H + 43 * 60 + 50.0644552)
    assert run.started == pytest.approx(1520011522.818)


def test_the_recorded_failed_run_names_its_failed_step_and_keeps_the_text_out_of_the_label():
    recording = recorded("Get-AzsUpdateRun.Recording.json")
    entry = next(v for k, v in recording.items() if "/updateRuns?" in k)
    item = json.loads(entry["Response"]["Content"])["value"][0]
    run = run_from(item, "9.8888.0.888")
    assert run is not None and run.state == "Failed"
    assert run.failed_step == "Update is blocked due to health check failure"
    assert run.error.startswith("Update is blocked due to health check failure. To remediate please check")
    assert "\r" not in run.error and len(run.failed_step) <= 64


STEPS = st.recursive(
    st.dictionaries(st.sampled_from(["name", "status", "steps", "errorMessage"]), st.text(max_size=100)),
    lambda kids: st.dictionaries(st.just("steps"), st.lists(kids, max_size=3)),
    max_leaves=20,
)


@given(STEPS)
def test_failed_step_never_raises_and_bounds_what_it_returns(progress):
    found = failed_step(progress)
    assert found is None or (len(found[0]) <= 64 and len(found[1]) <= 500)


def runs(*durations_h: float, state: str = "Succeeded") -> list[UpdateRun]:
    return [UpdateRun("1.2506.0.15", state, 1_700_000_000.0 + i * 86400, d * H) for i, d in enumerate(durations_h)]


def test_typical_is_the_median_of_the_newest_five_succeeded_runs():
    history = runs(100, 10, 11, 12, 13, 14) + runs(99, state="Failed")
    assert typical_duration(history) == 12 * H  # the 100 h run is the oldest, left out; failures never count


def test_time_to_compliance_and_start_by_use_the_stamps_own_runs_else_the_fleets():
    own = summarize(runs(10, 12, 14), packages=2, fleet=99 * H, support_end=1_800_000_000.0)
    assert (own.typical, own.typical_basis, own.time_to_compliance) == (12 * H, "stamp", 24 * H)
    assert own.start_by == 1_800_000_000.0 - 24 * H
    borrowed = summarize([], packages=3, fleet=fleet_typical([10 * H, None, 20 * H, 30 * H]), support_end=None)
    assert (borrowed.typical, borrowed.typical_basis, borrowed.time_to_compliance) == (20 * H, "fleet", 60 * H)
    assert borrowed.start_by is None  # no forecast, no start-by date
    nothing = summarize([], packages=1, fleet=None, support_end=1.0)
    assert (nothing.typical, nothing.time_to_compliance, nothing.start_by) == (None, None, None)


def test_a_running_update_counts_up_from_its_start():
    run = UpdateRun("1.2601.0.4", "InProgress", 1000.0, 60.0)
    assert elapsed(run, now=1000.0 + 30 * H) == 30 * H
    assert elapsed(UpdateRun("1.2601.0.4", "Failed", 1000.0, 60.0), now=1e9) == 60.0


def test_runs_are_read_for_active_updates_first_then_the_newest_installed_ones():
    microsoft = [
        AvailableUpdate(f"Microsoft{v}", v, "Infrastructure", s)
        for v, s in [("1.2408.0.19", "Installed"), ("1.2501.0.21", "Installed"), ("1.2506.0.15", "Installed"),
                     ("1.2601.0.4", "InstallationFailed"), ("2.4.2508.4", "Installing")]
    ]  # fmt: skip
    updates = (*microsoft, AvailableUpdate("OEM2.4.2508.4", "2.4.2508.4", "OEM", "Installing"))
    assert [u.version for u in run_candidates(updates)] == ["1.2601.0.4", "1.2506.0.15", "1.2501.0.21"]


def test_a_running_run_has_taken_at_least_its_reported_duration():
    started = 1000.0
    running = UpdateRun("1.2601.0.4", "InProgress", started, 5 * H)
    assert elapsed(running, now=started + 2 * H) == 5 * H
    assert elapsed(UpdateRun("1.2601.0.4", "InProgress", started, None), now=started + 0.5) == 0.5
    assert elapsed(UpdateRun("1.2601.0.4", "InProgress", started, None), now=started - 10) == 0.0


def test_without_own_or_fleet_runs_there_is_no_typical_duration_or_basis():
    from exporter.runs import summarize

    summary = summarize([], 2, None, None)
    assert (summary.typical, summary.typical_basis, summary.time_to_compliance) == (None, None, None)
    assert summarize([], 2, 3600.0, None).typical_basis == "fleet"


def _nested(depth: int) -> dict:
    """A step tree ``depth`` levels below the root, whose deepest step failed."""
    node: dict = {"name": "deepest", "status": "Error", "errorMessage": "broke"}
    for level in range(depth):
        node = {"name": f"level {level}", "status": "Error", "steps": [node]}
    return node


def test_the_failed_step_is_searched_32_levels_deep_and_no_deeper():
    assert failed_step(_nested(32)) == ("deepest", "broke")
    assert failed_step(_nested(33)) == ("level 0", "")


def test_a_failed_step_says_its_error_message_or_its_description():
    assert failed_step({"status": "Error", "description": "  why \n it  failed "}) == ("unnamed step", "why it failed")
    assert failed_step({"name": "S", "status": "FAILED", "errorMessage": "E", "description": "D"}) == ("S", "E")
    assert failed_step({"name": "S", "steps": []}) is None
