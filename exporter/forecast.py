"""When will Microsoft release next, and so when does each stamp's support end? An estimate.

Microsoft publishes no release schedule. The catalog's dates (the day each release was first
documented) give the cadence: the forecast takes the median of the last ``WINDOW`` intervals
between releases and adds it to the newest release date. Plain functions over plain data, no
clock and no I/O; every view labels the results as a forecast. ``backtest`` replays the real
history (forecast each release from the ones before it) to publish how wrong this has been.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .catalog import Catalog

DAY = 86400.0
WINDOW = 3  # intervals: the best median and 90th-percentile error in the backtest (tools/backtest_forecast.py)
MIN_HISTORY = 3  # releases with dates needed before a forecast is made


@dataclass(frozen=True)
class ReleaseForecast:
    """The next release, estimated from the dated history."""

    last_update: str  # the newest dated release the estimate starts from
    last_released: float  # its date (seconds)
    cadence_days: float  # the median interval used
    intervals: int  # how many intervals the median was taken over
    next_expected: float  # seconds; may lie in the past when a release is overdue

    def expected(self, k: int, now: float) -> float:
        """When the k-th release from now (k >= 1) is expected.

        An overdue next release is expected any day, so the count restarts from ``now``.
        """
        return max(self.next_expected, now) + (k - 1) * self.cadence_days * DAY


def dated_releases(catalog: Catalog) -> list[tuple[str, float]]:
    """(update version, release date in seconds) for every release some source dates, oldest first.

    Releases known only because a stamp runs them carry no date and are left out.
    """
    return [(r.update, r.released.timestamp()) for r in catalog.releases if r.released is not None]


def forecast_from(history: Sequence[tuple[str, float]], window: int = WINDOW) -> ReleaseForecast | None:
    """The next release after ``history`` (oldest first), or None with too little history."""
    if len(history) < MIN_HISTORY:  # at least 2: one interval
        return None
    dates = [when for _, when in history]
    intervals = [(b - a) / DAY for a, b in itertools.pairwise(dates) if b > a]
    if not intervals:
        return None
    recent = intervals[-window:]
    cadence = statistics.median(recent)
    update, last = history[-1]
    return ReleaseForecast(update, last, cadence, len(recent), last + cadence * DAY)


def next_release(catalog: Catalog, window: int = WINDOW) -> ReleaseForecast | None:
    """The forecast from the catalog's dates, or None when it has too few.

    Releases newer than the newest dated one (undated, or seen only on a stamp) have already
    happened: the next release is the one after them, a cadence further on for each.
    """
    forecast = forecast_from(dated_releases(catalog), window)
    if forecast is None:
        return None
    undated_newer = len(catalog.newer_than(forecast.last_update))
    return replace(forecast, next_expected=forecast.next_expected + undated_newer * forecast.cadence_days * DAY)


def support_expected_end(versions_behind: int, supported_releases: int, forecast: ReleaseForecast, now: float) -> float:
    """When the release that takes a stamp ``versions_behind`` behind out of support is expected.

    A stamp k = supported_releases - versions_behind releases away from leaving support leaves
    it with the k-th release from now. Only meaningful for stamps in support (k >= 1).
    """
    k = supported_releases - versions_behind
    if k < 1:
        raise ValueError("the stamp is already out of support")
    return forecast.expected(k, now)


# ---------------------------------------------------------------- backtest


@dataclass(frozen=True)
class BacktestRow:
    update: str
    actual: dt.date
    forecast: dt.date
    error_days: float  # actual - forecast: positive when the release came later than forecast


@dataclass(frozen=True)
class Backtest:
    window: int
    rows: tuple[BacktestRow, ...]

    @property
    def absolute_errors(self) -> list[float]:
        return sorted(abs(r.error_days) for r in self.rows)

    @property
    def median_error_days(self) -> float:
        return statistics.median(self.absolute_errors)

    @property
    def p90_error_days(self) -> float:
        return quantile(self.absolute_errors, 0.9)


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), of sorted ``values``."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def backtest(history: Sequence[tuple[str, float]], window: int = WINDOW) -> Backtest:
    """Forecast every release from the releases before it, and compare with its real date."""
    rows = []
    for index in range(MIN_HISTORY, len(history)):
        forecast = forecast_from(history[:index], window)
        if forecast is None:
            continue
        update, actual = history[index]
        rows.append(
            BacktestRow(
                update,
                _day(actual),
                _day(forecast.next_expected),
                # Dates are whole days and cadences medians of them: errors are k or k.5 days.
                round((actual - forecast.next_expected) / DAY, 1),  # pragma: no mutate
            )
        )
    return Backtest(window, tuple(rows))


def _day(seconds: float) -> dt.date:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).date()
