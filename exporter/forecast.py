"""When will Microsoft release next, and so when does each stamp's support end? An estimate.

Microsoft publishes no release schedule. The catalog's dates (the day each release was first
documented) give the cadence: the forecast takes the median of the last ``WINDOW`` intervals
between releases and adds it to the newest release date. Once that day has passed without a
release, the forecast learns it is late: the next release is expected after the median of the
remaining waits the recent intervals that lasted at least that long had left (the conditional
distribution of the remaining wait given the time already elapsed), so an expected date never
lies in the past. The same conditional wait says when release knowledge confirmed on some day
has probably been overtaken by a release it does not know: when it is *stale*. Plain functions
over plain data, no clock and no I/O; every view labels the results as a forecast.
``backtest`` replays the real history (forecast each release from the ones before it) to
publish how wrong this has been.
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
HISTORY = 10  # recent intervals whose lengths say how long a late release may still take
MIN_CONFIRMATION_DAYS = 1.0  # confirmed knowledge is fresh for at least a day


@dataclass(frozen=True)
class ReleaseForecast:
    """The next release, estimated from the dated history."""

    last_update: str  # the newest dated release the estimate starts from
    last_released: float  # its date (seconds)
    cadence_days: float  # the median interval used
    intervals: int  # how many intervals the median was taken over
    next_expected: float  # seconds: the newest date plus the cadence, or (late) the conditional estimate
    late_since: float | None = None  # when the cadence said it was due, if that day has passed
    recent: tuple[float, ...] = ()  # the recent intervals (days) the late estimate draws on

    @property
    def overdue(self) -> bool:
        return self.late_since is not None

    def expected(self, k: int, now: float) -> float:
        """When the k-th release from now (k >= 1) is expected: never before ``now``."""
        return max(self.next_expected, now) + (k - 1) * self.cadence_days * DAY


def remaining_wait(elapsed_days: float, recent: Sequence[float]) -> float | None:
    """Days still to wait for a release that has not come ``elapsed_days`` after the last one.

    The median of what the recent intervals that lasted longer than that had left; beyond every
    recent interval, the history says nothing about the rest, so a whole median interval.
    None without history.
    """
    if not recent:
        return None
    longer = [interval - elapsed_days for interval in recent if interval > elapsed_days]
    return statistics.median(longer) if longer else statistics.median(recent)


def learned_late(forecast: ReleaseForecast, now: float) -> ReleaseForecast:
    """The forecast as of ``now``: once its day has passed, the conditional estimate instead."""
    if forecast.next_expected >= now:
        return forecast
    remaining = remaining_wait((now - forecast.last_released) / DAY, forecast.recent)
    assert remaining is not None  # a forecast always has recent intervals
    return replace(forecast, next_expected=now + remaining * DAY, late_since=forecast.next_expected)


def stale_after(forecast: ReleaseForecast, confirmed: float) -> float:
    """When release knowledge confirmed complete at ``confirmed`` has probably been overtaken:
    the day the forecast made at that confirmation expected the next release (a late release's
    expectation already moved on by then). At least a day after the confirmation."""
    return max(confirmed + MIN_CONFIRMATION_DAYS * DAY, learned_late(forecast, confirmed).next_expected)


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
    return ReleaseForecast(update, last, cadence, len(recent), last + cadence * DAY, None, tuple(intervals[-HISTORY:]))


def next_release(catalog: Catalog, now: float | None = None, window: int = WINDOW) -> ReleaseForecast | None:
    """The forecast from the catalog's dates, or None when it has too few; with ``now``, as of then
    (a late release's expectation moved past ``now``).

    Releases newer than the newest dated one (undated) have already happened: the next release
    is the one after them, a cadence further on for each.
    """
    forecast = forecast_from(dated_releases(catalog), window)
    if forecast is None:
        return None
    undated_newer = len(catalog.newer_than(forecast.last_update))
    forecast = replace(forecast, next_expected=forecast.next_expected + undated_newer * forecast.cadence_days * DAY)
    return forecast if now is None else learned_late(forecast, now)


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
