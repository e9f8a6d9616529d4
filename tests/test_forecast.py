"""The release forecast: cadence, overdue releases, support end per stamp, and its backtest."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from conftest import ROOT
from hypothesis import given
from hypothesis import strategies as st

from exporter import forecast as fc
from exporter.catalog import Catalog, PartialDate, Release
from exporter.config import load_bundled_catalog

DAY = 86400.0


def history(*gaps: float, start: float = 1_600_000_000.0) -> list[tuple[str, float]]:
    """Releases 2001, 2002, ... separated by the given gaps (days)."""
    out, when = [("2001", start)], start
    for index, gap in enumerate(gaps, start=2):
        when += gap * DAY
        out.append((f"20{index:02d}", when))
    return out


def test_next_release_is_the_newest_date_plus_the_median_of_the_last_intervals():
    past = history(30, 30, 100, 120, 500, 110)  # the last three: 120, 500, 110 -> median 120
    forecast = fc.forecast_from(past)
    assert forecast is not None
    assert (forecast.cadence_days, forecast.intervals, forecast.last_update) == (120.0, 3, "2007")
    assert forecast.next_expected == past[-1][1] + 120 * DAY


def test_too_little_history_gives_no_forecast():
    assert fc.forecast_from(history(30)) is None
    assert fc.forecast_from(history(30, 40)) is not None


def test_an_overdue_release_is_expected_any_day_and_later_ones_a_cadence_apart():
    forecast = fc.forecast_from(history(100, 100, 100))
    assert forecast is not None
    before = forecast.next_expected - 10 * DAY
    assert forecast.expected(1, before) == forecast.next_expected
    assert forecast.expected(2, before) == forecast.next_expected + 100 * DAY
    after = forecast.next_expected + 30 * DAY
    assert forecast.expected(1, after) == after
    assert forecast.expected(3, after) == after + 200 * DAY


def test_support_ends_with_the_release_that_pushes_the_stamp_past_the_window():
    forecast = fc.forecast_from(history(100, 100, 100))
    assert forecast is not None
    now = forecast.next_expected - 50 * DAY
    assert fc.support_expected_end(2, 3, forecast, now) == forecast.next_expected  # N-2: the next one
    assert fc.support_expected_end(0, 3, forecast, now) == forecast.next_expected + 200 * DAY
    assert fc.support_expected_end(0, 4, forecast, now) == forecast.next_expected + 300 * DAY
    with pytest.raises(ValueError):
        fc.support_expected_end(3, 3, forecast, now)


def test_undated_newer_releases_already_happened():
    dated = [
        Release(u, released=PartialDate(2020, m, 1), sources=("bundled",))
        for u, m in (("2001", 1), ("2004", 4), ("2007", 7))
    ]
    plain = fc.next_release(Catalog.of(dated))
    observed = fc.next_release(Catalog.of([*dated, Release("2010", sources=("observed",))]))
    assert plain is not None and observed is not None
    assert observed.next_expected == plain.next_expected + plain.cadence_days * DAY


@given(
    gaps=st.lists(st.floats(min_value=1, max_value=400), min_size=2, max_size=12),
    k=st.integers(min_value=1, max_value=5),
    offset=st.floats(min_value=-1000, max_value=1000),
)
def test_expected_releases_are_ordered_and_never_in_the_past(gaps, k, offset):
    forecast = fc.forecast_from(history(*gaps))
    assert forecast is not None
    now = forecast.next_expected + offset * DAY
    assert forecast.expected(k, now) >= now
    assert forecast.expected(k + 1, now) > forecast.expected(k, now)


def test_backtest_on_the_bundled_history_is_pinned():
    """docs/catalog.md publishes these figures: a change to the method or the dates must show here."""
    result = fc.backtest(fc.dated_releases(Catalog.of(load_bundled_catalog())))
    assert len(result.rows) == 28
    assert (result.median_error_days, round(result.p90_error_days, 1)) == (27.0, 73.8)
    assert result.rows[-1].update == "2601" and result.rows[-1].error_days == 64.0


def test_backtest_command_prints_the_readme_figures():
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "backtest_forecast.py")], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    summary = "window 3: 28 releases forecast; absolute error median 27.0 days, 90th percentile 73.8 days"
    assert summary in run.stdout
    assert summary.split(": ", 1)[1] in (ROOT / "docs" / "catalog.md").read_text().replace("\n", " ")


def test_quantile_matches_linear_interpolation():
    assert fc.quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9) == pytest.approx(9.1)
    assert fc.quantile([5], 0.9) == 5


DAY = 86400.0


def _history(*days: float) -> list[tuple[str, float]]:
    return [(f"r{index}", day * DAY) for index, day in enumerate(days)]


def test_the_backtest_replays_each_release_from_those_before_it():
    from exporter.forecast import backtest

    result = backtest(_history(0, 100, 200, 310, 400), window=3)
    assert result.window == 3
    assert [(r.update, r.actual, r.forecast, r.error_days) for r in result.rows] == [
        ("r3", dt.date(1970, 11, 7), dt.date(1970, 10, 28), 10.0),
        ("r4", dt.date(1971, 2, 5), dt.date(1971, 2, 15), -10.0),
    ]


def test_the_backtest_skips_a_release_it_cannot_forecast_and_goes_on():
    from exporter.forecast import backtest

    rows = backtest(_history(0, 0, 0, 100, 200, 300)).rows
    assert [r.update for r in rows] == ["r4", "r5"]


def test_releases_on_one_day_add_no_zero_interval():
    from exporter.forecast import forecast_from

    forecast = forecast_from(_history(0, 100, 100, 200), window=3)
    assert (forecast.cadence_days, forecast.intervals) == (100.0, 2)
    assert (forecast.last_update, forecast.last_released, forecast.next_expected) == ("r3", 200 * DAY, 300 * DAY)
    assert forecast_from(_history(0, 100)) is None
    assert forecast_from(_history(5, 5, 5)) is None


def test_the_window_chooses_how_many_intervals_count():
    from exporter.forecast import next_release

    catalog = Catalog.of(load_bundled_catalog())
    assert next_release(catalog, window=1).intervals == 1
    assert next_release(catalog).intervals == 3


def test_a_stamp_already_out_of_support_has_no_expected_end():
    from exporter.forecast import support_expected_end

    forecast = fc.next_release(Catalog.of(load_bundled_catalog()))
    with pytest.raises(ValueError, match=r"^the stamp is already out of support$"):
        support_expected_end(3, 3, forecast, 0.0)
