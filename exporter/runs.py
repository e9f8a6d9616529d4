"""Update runs: how long an update takes on a stamp, whether the last one failed and where,
and so how long a stamp needs to reach the latest release. Pure functions, no I/O.

The Update admin API lists each update's runs with a state, a start, a duration and a tree
of steps; a failed run's failed step is the deepest step whose status is Error or Failed.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .border import MAX_RUN_SECONDS, clean_text, finite, shared
from .versions import Version, VersionError, parse_version

MAX_STEP_NAME = 64  # the failed step's name is a label: bounded
MAX_ERROR_TEXT = 500  # the error text goes to JSON and the status page only
FAILED_STATUSES = ("error", "failed")
# Digits are bounded: a 400-digit count of days is not a duration anyone measured.
_NUMBER = r"[0-9]{1,12}(?:\.[0-9]{1,12})?"
_DURATION = re.compile(
    rf"\AP(?:(?P<days>{_NUMBER})D)?(?:T(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?"
    rf"(?:(?P<seconds>{_NUMBER})S)?)?\Z"
)


@dataclass(frozen=True, slots=True)
class UpdateRun:
    """One run of one update on one stamp."""

    update: str  # the update's version, e.g. 1.2506.0.15
    state: str  # Succeeded, InProgress, Failed, Unknown (or what the stamp says)
    started: float | None
    duration: float | None  # seconds, as the stamp reports it
    failed_step: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "update", shared(self.update))
        object.__setattr__(self, "state", shared(self.state))


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a stamp's runs say, with the fleet's help where its own history is empty."""

    last: UpdateRun | None
    typical: float | None  # seconds: the median of the stamp's succeeded runs, else the fleet's
    typical_basis: str | None  # "stamp" or "fleet"
    packages: int  # updates on the stamp's path to the latest release
    time_to_compliance: float | None  # packages x typical
    start_by: float | None  # FORECAST: when updating must start to finish before support is expected to end


def parse_duration(value: object) -> float | None:
    """ISO 8601 durations as the API sends them (``PT14H43M50.0644552S``, ``P1DT2H``), up to a year.

    None when unreadable or implausible (``P3000000D``): such a figure is absent, never spread.
    """
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value.strip())
    if not match or value.strip() in ("P", "PT"):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    seconds = (
        parts.get("days", 0) * 86400
        + parts.get("hours", 0) * 3600
        + parts.get("minutes", 0) * 60
        + parts.get("seconds", 0)
    )
    return finite(seconds, 0.0, MAX_RUN_SECONDS)


def failed_step(progress: object, depth: int = 0) -> tuple[str, str] | None:
    """(name, error text) of the deepest failed step of a run's step tree, or None."""
    if not isinstance(progress, Mapping) or depth > 32:
        return None
    for child in progress.get("steps") or ():
        found = failed_step(child, depth + 1)
        if found:
            return found
    if str(progress.get("status")).lower() in FAILED_STATUSES:  # a missing status is "none": not failed
        name = clean_text(progress.get("name"), MAX_STEP_NAME) or "unnamed step"
        text = clean_text(progress.get("errorMessage"), MAX_ERROR_TEXT) or clean_text(
            progress.get("description"), MAX_ERROR_TEXT
        )
        return name, text or ""
    return None


def _run_order(run: UpdateRun) -> tuple[Version, bool, float]:
    """Newest last: the newest update's runs (updates install in order), then by start time.

    A run without a start (a failed preparation records none) counts, before the dated runs of
    its update: it is the only trace of that attempt, and a dated run is known to be later.
    """
    try:
        version = parse_version(run.update)
    except VersionError:
        version = Version(0, 0, 0, 0)
    return version, run.started is not None, run.started or 0.0


def last_run(runs: Iterable[UpdateRun]) -> UpdateRun | None:
    return max(runs, key=_run_order, default=None)


def typical_duration(runs: Iterable[UpdateRun], count: int = 5) -> float | None:
    """The median duration of the newest ``count`` succeeded runs."""
    done = sorted(
        (r for r in runs if r.state.lower() == "succeeded" and _plausible(r.duration) and r.started is not None),
        key=lambda r: r.started,  # type: ignore[arg-type,return-value]
    )[-count:]
    return statistics.median(r.duration for r in done if r.duration) if done else None


def _plausible(duration: float | None) -> bool:
    """A measured run: longer than nothing, finite, at most a year (the border gives no other)."""
    return bool(finite(duration, 1e-9, MAX_RUN_SECONDS))


def fleet_typical(per_stamp: Sequence[float | None]) -> float | None:
    """The median of the stamps' own typical durations: for stamps with no history of their own."""
    known = [t for t in per_stamp if _plausible(t)]
    return statistics.median(known) if known else None


def summarize(runs: Sequence[UpdateRun], packages: int, fleet: float | None, support_end: float | None) -> RunSummary:
    own = typical_duration(runs)
    typical, basis = (own, "stamp") if own else (fleet, "fleet" if fleet else None)
    ttc = packages * typical if typical is not None else None
    start_by = support_end - ttc if support_end is not None and ttc is not None else None
    return RunSummary(last_run(runs), typical, basis, packages, ttc, start_by)


def elapsed(run: UpdateRun, now: float) -> float | None:
    """How long the run has taken: its reported duration, or for a running one, time since it started."""
    if run.state.lower() == "inprogress" and run.started is not None:
        return max(run.duration or 0.0, now - run.started)
    return run.duration
