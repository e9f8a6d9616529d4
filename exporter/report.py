"""The evaluated report: one immutable snapshot that every view reads.

``build_report`` turns what the collectors observed into verdicts (pure, no I/O);
``to_json``, ``render_table`` and ``exit_code`` are the ``check`` command's and the JSON
API's views of it, and the metrics collectors read the same object.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from . import forecast as fc
from .border import clean_text, escape_terminal, shared
from .catalog import (
    RELEASE_UNKNOWN,
    Catalog,
    Evidence,
    PartialDate,
    Release,
    UnknownBuild,
    corroborate,
    dated_text,
    merge,
)
from .health import Health
from .health import summary as health_summary
from .policy import OUT_OF_SUPPORT, Evaluation, EvaluationError, OemEvaluation, Policy, evaluate, evaluate_oem
from .readiness import Readiness, assess
from .runs import RunSummary, UpdateRun, fleet_typical, summarize, typical_duration
from .versions import Version, VersionError, parse_version

UNKNOWN = "unknown"
DOCUMENTING_SOURCES = ("inline", "file", "bundled")  # their releases carry the dates they have, or none


@dataclass(frozen=True, slots=True)
class AvailableUpdate:
    """One entry of a stamp's updates list (admin stamps)."""

    name: str
    version: str
    package_type: str
    state: str
    publisher: str = ""
    min_version: str | None = None  # minVersionRequired: the Microsoft build it must be installed on
    min_oem_version: str | None = None  # minOemVersionRequired: the OEM package it needs (an OEM version)

    def __post_init__(self) -> None:
        for name in ("name", "version", "package_type", "state", "publisher", "min_version", "min_oem_version"):
            object.__setattr__(self, name, shared(getattr(self, name)))

    @property
    def is_oem(self) -> bool:
        """OEM packages carry vendor versions that must never be read as Microsoft releases."""
        return self.package_type.lower() == "oem" or self.name.lower().startswith("oem")

    @property
    def installed(self) -> bool:
        return self.state.lower() == "installed"

    def microsoft_version(self) -> Version | None:
        """The Microsoft build this update installs, or None (OEM package, unparsable)."""
        if self.is_oem:
            return None
        try:
            return parse_version(self.version)
        except VersionError:
            return None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one successful collection of a stamp found (a static stamp: its config)."""

    version: Version
    oem_version: str | None = None
    collected_at: float = 0.0
    # From the update location and updates list of admin stamps:
    update_state: str | None = None
    last_updated: float | None = None
    last_checked: float | None = None
    updates: tuple[AvailableUpdate, ...] = ()
    api_version: str | None = None
    oem_family: str | None = None
    runs: tuple[UpdateRun, ...] = ()
    refused: tuple[str, ...] = ()  # values of the stamp's answer refused as implausible, in words
    health: Health | None = None  # admin stamps: the Health provider's alerts, or why they were not read


@dataclass(frozen=True, slots=True)
class StampStatus:
    """A stamp as the collectors last saw it: the last good observation and the last attempt."""

    name: str
    source: str
    labels: Mapping[str, str] = field(default_factory=dict)
    observation: Observation | None = None
    up: bool = False
    error: str | None = None
    last_attempt: float | None = None
    duration: float | None = None
    errors_total: Mapping[str, int] = field(default_factory=dict)
    oem_family: str | None = None  # from the configuration; else what the stamp reports


@dataclass(frozen=True)
class SourceStatus:
    """One catalog source: ``kind`` is a release_info source label, ``origin`` says which."""

    kind: str
    origin: str
    up: bool
    last_success: float | None
    releases: int
    error: str | None = None
    # When it last confirmed that the releases it lists are all there are (a live source when
    # it was read, or the day its maintainer gives): the basis of the catalog's freshness.
    confirmed: float | None = None


def current_health(status: StampStatus) -> Health | None:
    """An admin stamp's alerts as its last read found them; None when that read failed (a stamp
    that cannot be read has no alerts that are current) or it is no admin stamp."""
    obs = status.observation
    return obs.health if obs is not None and status.up else None


@dataclass(frozen=True, slots=True)
class StampReport:
    status: StampStatus
    evaluation: Evaluation | None
    problem: str | None  # why there is no evaluation, or why the stamp is down
    oem: OemEvaluation | None = None
    support_expected_end: float | None = None  # forecast: in-support stamps with a dated catalog
    runs: RunSummary | None = None  # admin stamps: update runs, time to compliance, start-by date
    unknown_builds: tuple[UnknownBuild, ...] = ()  # builds it alone claims: flagged, not fleet knowledge
    readiness: Readiness | None = None  # admin stamps: whether the next package could be started now

    @property
    def name(self) -> str:
        return self.status.name

    @property
    def health(self) -> Health | None:
        """The alerts of the stamp's last read (see ``current_health``)."""
        return current_health(self.status)

    @property
    def verdict(self) -> str:
        return self.evaluation.verdict if self.evaluation else UNKNOWN


@dataclass(frozen=True)
class ReloadOutcome:
    """The running exporter's configuration: when it was loaded, and the last reload's fate."""

    successful: bool
    loaded_at: float  # when the configuration serving now was loaded
    attempted_at: float  # when the last load or reload was tried
    error: str | None = None  # why the last reload was refused


@dataclass(frozen=True)
class Report:
    generated_at: float
    policy: Policy
    catalog: Catalog
    sources: tuple[SourceStatus, ...]
    stamps: tuple[StampReport, ...]
    forecast: fc.ReleaseForecast | None = None
    forecast_error: fc.Backtest | None = None  # the forecast replayed on this catalog's history
    fresh: Freshness | None = None  # how current the release knowledge is
    first_seen: Mapping[str, float] = field(default_factory=dict)  # learned releases and hotfixes: first seen
    reload: ReloadOutcome | None = None  # the running exporter's (check has none)

    def stamp(self, name: str) -> StampReport | None:
        for stamp in self.stamps:
            if stamp.name == name:
                return stamp
        return None


@dataclass(frozen=True)
class _Context:
    """What every stamp's evaluation shares."""

    catalog: Catalog
    base: Policy  # as configured
    policy: Policy  # in force now (a dated exception may change the count)
    now: float
    forecast: fc.ReleaseForecast | None
    fleet_typical: float | None
    oem_catalogs: Mapping[str, tuple[str, ...]]


def build_report(
    statuses: Sequence[StampStatus],
    sources: Sequence[tuple[SourceStatus, Sequence[Release]]],
    policy: Policy,
    now: float,
    oem_catalogs: Mapping[str, tuple[str, ...]] | None = None,
    seen: Mapping[str, float] | None = None,
) -> Report:
    """Merge the catalog sources (best first), add what stamps prove, evaluate every stamp.

    ``seen``: when releases and hotfixes learned without a date (from the update graph or a
    stamp) were first seen; the report's ``first_seen`` adds those seen for the first time now.

    Each stamp is evaluated on its own: whatever goes wrong with one (``EVALUATION_FAILED``
    in its problem) leaves every other stamp's verdict as it is.
    """
    return FleetEvaluator().report(statuses, sources, policy, now, oem_catalogs, seen)


@dataclass(frozen=True)
class _Shared:
    """What every stamp's evaluation shares, from the sources and what the stamps prove."""

    catalog: Catalog
    unknown: Mapping[str, tuple[UnknownBuild, ...]]
    first_seen: dict[str, float]
    planned: fc.ReleaseForecast | None  # the next release as the dates alone say
    backtest: fc.Backtest


class FleetEvaluator:
    """``build_report``, kept current at the cost of what changed.

    A read changes one stamp, and only that stamp is evaluated again; a change to what the
    fleet shares (the sources' releases, a build a stamp proves, the policy, the day, a run
    history that moves the fleet's typical run) evaluates every stamp. Some verdicts move
    with time (hotfix grace, the forecast), so a stamp is evaluated again at least every
    ``max_age`` seconds whatever happens. With ``max_age`` 0 the report is build_report's.
    """

    def __init__(self, max_age: float = 0.0) -> None:
        self.max_age = max_age
        self.evaluated = 0  # stamps the last report evaluated (the rest were still valid)
        self._derived: dict[str, tuple[StampStatus, Evidence, float | None]] = {}
        self._shared_key: tuple[object, ...] | None = None
        self._shared: _Shared | None = None
        self._stamps: dict[str, tuple[tuple[object, ...], float, StampReport]] = {}

    def report(
        self,
        statuses: Sequence[StampStatus],
        sources: Sequence[tuple[SourceStatus, Sequence[Release]]],
        policy: Policy,
        now: float,
        oem_catalogs: Mapping[str, tuple[str, ...]] | None = None,
        seen: Mapping[str, float] | None = None,
    ) -> Report:
        derived = [self._derive(status) for status in statuses]
        self._derived = {status.name: entry for status, entry in zip(statuses, derived, strict=True)}
        shared = self._shared_part(sources, tuple(evidence for _, evidence, _ in derived), now, seen or {})
        planned = shared.planned
        forecast = None if planned is None else fc.learned_late(planned, now)
        fleet = fleet_typical([t for status, (_, _, t) in zip(statuses, derived, strict=True) if _own_typical(status)])
        context = _Context(shared.catalog, policy, policy.at(now), now, forecast, fleet, dict(oem_catalogs or {}))
        shared_key = (context.base, context.policy, forecast, context.oem_catalogs)
        stamps, kept = [], {}
        self.evaluated = 0
        for status, (_, _, own) in zip(statuses, derived, strict=True):
            unknown = shared.unknown.get(status.name, ())
            # The fleet's typical run counts only for an admin stamp with none of its own: while a
            # first read fills the fleet in, the others are not evaluated again for it.
            key = (status, unknown, shared.catalog, *shared_key, fleet if _uses_fleet(status, own) else None)
            previous = self._stamps.get(status.name)
            if (
                previous is not None
                and previous[0][0] is status
                and previous[0][1] == unknown
                and previous[0][2] is shared.catalog
                and previous[0][3:] == key[3:]
                and 0 <= now - previous[1] < self.max_age
            ):
                stamp, evaluated_at = previous[2], previous[1]
            else:
                stamp, evaluated_at = _evaluate_isolated(status, unknown, context), now
                self.evaluated += 1
                if previous is not None and stamp == previous[2]:
                    stamp = previous[2]  # the same verdict: the same object, which views need not write again
            failed = stamp.problem is not None and stamp.problem.startswith(EVALUATION_FAILED)
            if not failed:  # a failed evaluation is tried again next time, and counted again
                kept[status.name] = (key, evaluated_at, stamp)
            stamps.append(stamp)
        self._stamps = kept
        return Report(
            now,
            context.policy,
            shared.catalog,
            tuple(s for s, _ in sources),
            tuple(stamps),
            forecast,
            shared.backtest if shared.backtest.rows else None,
            _freshness(shared.catalog, [s for s, _ in sources], planned, now),
            shared.first_seen,
        )

    def _derive(self, status: StampStatus) -> tuple[StampStatus, Evidence, float | None]:
        """What the fleet takes from one stamp (the builds it proves, its typical run), per status."""
        cached = self._derived.get(status.name)
        if cached is not None and cached[0] is status:
            return cached
        return status, _evidence(status), _typical(status)

    def _shared_part(
        self,
        sources: Sequence[tuple[SourceStatus, Sequence[Release]]],
        evidence: tuple[Evidence, ...],
        now: float,
        seen: Mapping[str, float],
    ) -> _Shared:
        # Only the sources' kinds and releases count, not when they were read; learned dates by the day.
        key = (tuple((s.kind, tuple(r)) for s, r in sources), evidence, int(now // 86400), dict(seen))
        if self._shared is not None and self._shared_key == key:
            return self._shared
        known = merge(releases for _, releases in sources)
        catalog, unknown = corroborate(known, evidence, now)
        catalog, first_seen = _date_learned(catalog, sources, seen, now)
        if self._shared is not None and catalog == self._shared.catalog:
            catalog = self._shared.catalog  # what a new stamp proved was known: its stamps stay valid
        history = fc.dated_releases(catalog)
        shared = _Shared(catalog, unknown, first_seen, fc.next_release(catalog), fc.backtest(history))
        self._shared_key, self._shared = key, shared
        return shared


EVALUATION_FAILED = "evaluation failed"


def _evaluate_isolated(status: StampStatus, unknown: tuple[UnknownBuild, ...], context: _Context) -> StampReport:
    try:
        return _evaluate(status, unknown, context)
    except Exception as err:  # one stamp's values, however odd, never stop the others' evaluation
        text = clean_text(f"{type(err).__name__}: {err}", 200)
        return StampReport(status, None, f"{EVALUATION_FAILED}: {text}", unknown_builds=unknown)


def _evaluate(status: StampStatus, unknown: tuple[UnknownBuild, ...], context: _Context) -> StampReport:
    evaluation, problem, oem = None, status.error, None
    obs = status.observation
    policy, now = context.policy, context.now
    if obs is not None:
        catalog = context.catalog
        own = [u.build for u in unknown if u.reason == RELEASE_UNKNOWN]
        if own:  # what this stamp alone claims counts for its own verdict only
            catalog = catalog.with_observed(own)
        try:
            evaluation = evaluate(obs.version, catalog, policy, now)
        except EvaluationError as err:
            problem = str(err)
        family = status.oem_family or obs.oem_family
        if family and obs.oem_version and context.oem_catalogs:
            versions = context.oem_catalogs.get(family.lower())
            if versions:
                oem = evaluate_oem(obs.oem_version, family, versions, policy.oem_supported_releases)
    end = None
    if evaluation is not None and evaluation.in_support and context.forecast is not None:
        end = _support_end(evaluation.versions_behind, context.base, policy, context.forecast, now)
    summary = None
    if status.source == "admin" and obs is not None:
        packages = len(evaluation.update_path) if evaluation else 0
        summary = summarize(obs.runs, packages, context.fleet_typical, end)
    readiness = None
    if status.source == "admin" and obs is not None:
        step = evaluation.next_step if evaluation is not None else None
        # The alerts of this read only: a stamp that cannot be read has none that are current.
        readiness = assess(obs, step, current_health(status), now)
    return StampReport(status, evaluation, problem, oem, end, summary, unknown, readiness)


def _support_end(behind: int, base: Policy, in_force: Policy, forecast: fc.ReleaseForecast, now: float) -> float:
    """The forecast end of support, under an exception too: when it lapses first, the usual count applies."""
    end = fc.support_expected_end(behind, in_force.supported_releases, forecast, now)
    exception = in_force.active_exception
    if exception is None:
        return end
    lapses = float(calendar.timegm((exception.end + dt.timedelta(days=1)).timetuple()))
    if end <= lapses:
        return end
    if behind >= base.supported_releases:
        return lapses  # in support only by the exception
    return max(lapses, fc.support_expected_end(behind, base.supported_releases, forecast, now))


def _date_learned(
    catalog: Catalog,
    sources: Sequence[tuple[SourceStatus, Sequence[Release]]],
    seen: Mapping[str, float],
    now: float,
) -> tuple[Catalog, dict[str, float]]:
    """Releases and hotfixes learned from the update graph, a remote catalog or a stamp, with no
    date from any source, dated the day they were first seen (``seen_by``: released no later).

    So hotfix grace, out-of-support-since and the forecast work for them. What a documenting
    source (the bundled catalog, a file, inline) lists undated stays undated: it is old, and
    "first seen today" would be wrong for it.
    """
    documented = {r.update for status, rels in sources if status.kind in DOCUMENTING_SOURCES for r in rels}
    documented_hotfixes = {
        h.build for status, rels in sources if status.kind in DOCUMENTING_SOURCES for r in rels for h in r.hotfixes
    }
    first_seen = dict(seen)
    today = _day_start(now)

    def day_of(key: str) -> PartialDate:
        when = first_seen.setdefault(key, today)
        moment = dt.datetime.fromtimestamp(when, tz=dt.UTC)
        return PartialDate(moment.year, moment.month, moment.day)

    releases = []
    for release in catalog.releases:
        if release.released is None and release.update not in documented:
            release = replace(release, released=day_of(release.update), date_basis="seen_by")
        hotfixes = tuple(
            replace(h, released=day_of(str(h.build)), date_basis="seen_by")
            if h.released is None and h.build not in documented_hotfixes
            else h
            for h in release.hotfixes
        )
        releases.append(replace(release, hotfixes=hotfixes))
    return Catalog.of(releases, catalog.disagreements), first_seen


def _day_start(now: float) -> float:
    return float(now - now % 86400)


def _own_typical(status: StampStatus) -> bool:
    return status.source == "admin" and status.observation is not None


def _uses_fleet(status: StampStatus, own: float | None) -> bool:
    """Whether a stamp's time to compliance rests on the fleet's typical run (``summarize``): an
    admin stamp with a reading and no typical run of its own."""
    return _own_typical(status) and not own


def _typical(status: StampStatus) -> float | None:
    """An admin stamp's own typical run duration, for the fleet's median; None when it has none."""
    if not _own_typical(status):
        return None
    try:
        return typical_duration(status.observation.runs)  # type: ignore[union-attr]
    except Exception:  # a stamp whose runs cannot be read adds nothing
        return None


def _evidence(status: StampStatus) -> Evidence:
    """Builds a stamp runs or is offered (OEM packages never count); admin stamps report their own.

    A stamp whose values cannot be read as builds proves nothing; its own evaluation says why.
    """
    obs = status.observation
    try:
        offered = [v for v in (u.microsoft_version() for u in obs.updates) if v is not None] if obs else []
        builds = tuple(b for b in (obs.version, *offered) if isinstance(b, Version)) if obs else ()
    except Exception:
        builds = ()
    return Evidence(status.name, builds, status.source == "admin")


def exit_code(report: Report) -> int:
    """0 all in support; 1 any out of support; 3 none out but some not evaluated or down;
    4 every stamp evaluated, none out of support, but the release knowledge is stale."""
    if any(s.evaluation and s.evaluation.verdict == OUT_OF_SUPPORT for s in report.stamps):
        return 1
    if any(s.evaluation is None or not s.status.up for s in report.stamps):
        return 3
    if report.fresh is not None and report.fresh.stale:
        return 4
    return 0


# ---------------------------------------------------------------- views


def _iso(timestamp: float | None) -> str | None:
    moment = _moment(timestamp)
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(timestamp: float) -> str:
    moment = _moment(timestamp)
    return "unknown" if moment is None else moment.date().isoformat()


def _moment(timestamp: float | None) -> dt.datetime | None:
    """The UTC moment of a timestamp; None for one no calendar holds (the border gives none such)."""
    if timestamp is None:
        return None
    try:
        return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _runs_json(stamp: StampReport) -> dict[str, object] | None:
    summary = stamp.runs
    if summary is None:
        return None
    run = summary.last
    return {
        "last": None
        if run is None
        else {
            "update": run.update,
            "state": run.state,
            "started": _iso(run.started),
            "duration_seconds": run.duration,
            "failed_step": run.failed_step,
            "error": run.error,
        },
        "typical_duration_seconds": summary.typical,
        "typical_basis": summary.typical_basis,
        "packages_to_latest": summary.packages,
        "time_to_compliance_seconds": summary.time_to_compliance,
        "start_by": None if summary.start_by is None else {"date": _day(summary.start_by), "estimate": True},
    }


def runs_text(stamp: StampReport) -> str | None:
    """``last run 2601 Failed at "Step" (3h); typical 14h; 2 packages, about 28h; start by ~2027-01-02``."""
    summary = stamp.runs
    if summary is None:
        return None
    parts = []
    run = summary.last
    if run is not None:
        text = f"last update run {run.update} {run.state}"
        if run.failed_step:
            text += f' at "{run.failed_step}"'
        if run.duration:
            text += f" ({_hours(run.duration)})"
        parts.append(text)
    if summary.typical:
        parts.append(f"typical run {_hours(summary.typical)} ({summary.typical_basis})")
    if stamp.evaluation is not None and not stamp.evaluation.update_path:
        parts.append("nothing to install")  # a start-by date would be about releases still to come
    elif stamp.evaluation is not None:
        if summary.time_to_compliance is not None:
            parts.append(f"{summary.packages} package(s) to the latest, about {_hours(summary.time_to_compliance)}")
        if summary.start_by is not None:
            parts.append(f"start updating by ~{_day(summary.start_by)}")
    return "; ".join(parts) or None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _stamp_json(stamp: StampReport) -> dict[str, object]:
    status, ev = stamp.status, stamp.evaluation
    obs = status.observation
    next_step = None
    if ev and ev.next_step:
        step = ev.next_step
        next_step = {"kind": step.kind, "update_version": step.update, "build": str(step.build) if step.build else None}
    return {
        "stamp": status.name,
        "source": status.source,
        "up": status.up,
        "version": str(obs.version) if obs else None,
        "update_version": ev.update_version if ev else None,
        "oem_version": obs.oem_version if obs else None,
        "versions_behind": ev.versions_behind if ev else None,
        "in_support": ev.in_support if ev else None,
        "verdict": stamp.verdict,
        "latest_hotfix": str(ev.latest_hotfix) if ev and ev.latest_hotfix else None,
        "latest_hotfix_installed": ev.latest_hotfix_installed if ev else None,
        "missing_hotfixes": [str(h.build) for h in ev.missing_hotfixes] if ev else [],
        "pending_hotfix_released": str(ev.pending_hotfix_released) if ev and ev.pending_hotfix_released else None,
        "update_path": list(ev.update_path) if ev else [],
        "next_update": next_step,
        "out_of_support_since": str(ev.out_of_support_since) if ev and ev.out_of_support_since else None,
        "superseded_by": ev.superseded_by if ev else None,
        "support_expected_end": None
        if stamp.support_expected_end is None
        else {"date": _day(stamp.support_expected_end), "estimate": True},
        "labels": dict(status.labels),
        "last_success": _iso(obs.collected_at) if obs else None,
        "error": stamp.problem,
        "hotfix_overdue": ev.hotfix_overdue if ev else None,
        "ahead_of_catalog": ev.ahead_of_catalog if ev else False,
        "oem_family": status.oem_family or (obs.oem_family if obs else None),  # what an OEM verdict used too
        "oem_versions_behind": stamp.oem.versions_behind if stamp.oem else None,
        "oem_in_support": stamp.oem.in_support if stamp.oem else None,
        "update_state": obs.update_state if obs else None,
        "last_updated": _iso(obs.last_updated) if obs else None,
        "last_checked": _iso(obs.last_checked) if obs else None,
        "update_runs": _runs_json(stamp),
        "unknown_builds": [
            {"build": str(u.build), "reason": u.reason, "typed_in": u.typed_in, "message": str(u)}
            for u in stamp.unknown_builds
        ],
        "refused_values": list(obs.refused) if obs else [],
        "updates_available": [
            {"name": u.name, "version": u.version, "package_type": u.package_type, "state": u.state}
            for u in (obs.updates if obs else ())
            if not u.installed
        ],
        **_readiness_json(stamp),
    }


def _readiness_json(stamp: StampReport) -> dict[str, object]:
    """SPEC §10: ``health``, ``update_ready`` and ``blocked_by`` for admin stamps (null and [] for others)."""
    status, ready = stamp.status, stamp.readiness
    health = None
    if status.source == "admin":
        seen = stamp.health
        known = seen is not None and seen.known
        health = {
            "critical": seen.critical if known else None,
            "warning": seen.warning if known else None,
            "up": known,
            "certificates_expiring": seen.certificates if known else None,
            "active": [{"severity": severity, "title": title} for severity, title in seen.titles] if known else [],
            "error": (seen.error if seen is not None else status.error) if not known else None,
        }
    return {
        "health": health,
        "update_ready": ready.ready if ready else None,
        "blocked_by": list(ready.blocked_by) if ready else [],
        "update_in_progress": ready.in_progress if ready else None,
        "readiness": None
        if ready is None or ready.package is None
        else {"package": ready.package, "listed": ready.listed, "why": list(ready.why), "unknown": ready.unknown},
    }


def readiness_text(stamp: StampReport) -> str | None:
    """``ready to install 2601 (1.2601.0.4)`` / ``2601 (1.2601.0.4) blocked: 1 critical alert active: …``."""
    ready = stamp.readiness
    if ready is None:
        return None
    installing = "an update is installing; " if ready.in_progress else ""
    if ready.package is None:
        return f"{installing}nothing to install".strip() if ready.in_progress else None
    if ready.ready:
        return f"{installing}ready to install {ready.package}"
    if ready.ready is None:
        return f"{installing}{ready.package}: readiness unknown, {ready.unknown}"
    return f"{ready.package} blocked: " + "; ".join(ready.why)


def health_text(stamp: StampReport) -> str | None:
    """An admin stamp that could be read: its alerts and its readiness, in words."""
    status = stamp.status
    if status.source != "admin" or status.observation is None or not status.up:
        return None
    seen = stamp.health
    text = f"health: {health_summary(seen)}"
    if seen is not None and seen.known and seen.titles:
        text += " (" + "; ".join(title for _, title in seen.titles[:2]) + ")"
    ready = readiness_text(stamp)
    return f"{text}; {ready}" if ready else text


def ready_cell(stamp: StampReport) -> str:
    """The READY column: yes, no, unknown, or - (nothing to install, or not an admin stamp)."""
    ready = stamp.readiness
    if ready is None or ready.package is None:
        return "-"
    return {True: "yes", False: "no", None: "unknown"}[ready.ready]


def to_json(report: Report) -> dict[str, object]:
    """The ``check --output json`` document, also served at ``/api/v1/stamps``."""
    latest = report.catalog.latest
    exception = report.policy.active_exception
    fresh = report.fresh
    forecast, error = report.forecast, report.forecast_error
    return {
        "generated_at": _iso(report.generated_at),
        "policy": {
            "supported_releases": report.policy.supported_releases,
            "hotfix_grace_period_seconds": report.policy.hotfix_grace_period,
            "oem_supported_releases": report.policy.oem_supported_releases,
            "exception": None
            if exception is None
            else {
                "from": exception.start.isoformat(),
                "until": exception.end.isoformat(),
                "supported_releases": exception.supported_releases,
                "reason": exception.reason,
            },
        },
        "catalog": {
            "latest": latest.update if latest else None,
            "latest_released": str(latest.released) if latest and latest.released else None,
            "latest_date_basis": latest.date_basis if latest and latest.released else None,
            "newest_release_date": str(fresh.released) if fresh and fresh.released else None,
            "newest_release_date_basis": fresh.date_basis if fresh else None,
            "newest_release_age_days": fresh.age_days if fresh else None,
            "confirmed": _iso(fresh.confirmed) if fresh else None,
            "confirmed_by": fresh.confirmed_by if fresh else None,
            "stale": fresh.stale if fresh else None,
            "stale_after": None
            if fresh is None or fresh.stale_after is None
            else {"date": _day(fresh.stale_after), "estimate": True},
            "forecast": None
            if forecast is None
            else {
                "estimate": True,
                "next_release_expected": _day(forecast.next_expected),
                "overdue": forecast.overdue,
                "due_by_cadence": _day(forecast.late_since or forecast.next_expected),
                "cadence_days": round(forecast.cadence_days, 1),
                "method": f"median of the last {forecast.intervals} intervals between dated releases, "
                f"added to {forecast.last_update}'s date"
                + (
                    "; past that day, the median of what the recent intervals that lasted as long had left"
                    if forecast.overdue
                    else ""
                ),
                "backtest_median_error_days": round(error.median_error_days, 1) if error else None,
                "backtest_p90_error_days": round(error.p90_error_days, 1) if error else None,
                "backtest_releases": len(error.rows) if error else 0,
            },
            "observed_only": [r.update for r in report.catalog.releases if r.sources == ("observed",)],
            "disagreements": [
                {"update_version": d.update, "what": d.what, "kept": d.kept, "ignored": d.ignored, "source": d.source}
                for d in report.catalog.disagreements
            ],
            "releases": [r.update for r in report.catalog.releases],
            "sources": [
                {
                    "source": s.kind,
                    "origin": s.origin,
                    "up": s.up,
                    "releases": s.releases,
                    "last_success": _iso(s.last_success),
                    "error": s.error,
                }
                for s in report.sources
            ],
        },
        "stamps": [_stamp_json(s) for s in report.stamps],
        "exporter": None
        if report.reload is None
        else {
            "config_loaded_at": _iso(report.reload.loaded_at),
            "last_reload_successful": report.reload.successful,
            "last_reload_at": _iso(report.reload.attempted_at),
            "last_reload_error": report.reload.error,
        },
    }


_VERDICT_TEXT = {"in_support": "in support", "ending_soon": "ending soon", "out_of_support": "OUT OF SUPPORT"}


def catalog_warnings(report: Report) -> list[str]:
    """What an operator must know about the catalog itself: unknown releases, failing sources."""
    warnings = []
    observed = [r.update for r in report.catalog.releases if r.sources == ("observed",)]
    if observed:
        names = sorted(
            stamp.name
            for stamp in report.stamps
            if stamp.status.observation is not None
            and {v.update_version for v in _evidence(stamp.status).builds} & set(observed)
        )
        warnings.append(
            f"stamps run or are offered {', '.join(observed)}, which no catalog source knows"
            + f" ({', '.join(names)})"
            + ": the catalog is out of date (add the release, fix its sources, or upgrade the exporter)"
        )
    warnings.extend(str(d) for d in report.catalog.disagreements)
    for source in report.sources:
        if not source.up:
            warnings.append(f"catalog source {source.kind} {source.origin} is failing: {source.error}")
    return warnings


@dataclass(frozen=True)
class Freshness:
    """How current the release knowledge is: when it was last confirmed complete, and whether
    Microsoft has probably released something since that it does not know (stale)."""

    update: str | None  # the newest dated release
    released: PartialDate | None
    date_basis: str | None
    age_days: int | None
    confirmed: float | None  # when a source last confirmed the releases it lists are all there are
    confirmed_by: str | None  # which source ("update_graph https://...", "bundled ...")
    stale_after: float | None  # FORECAST: when a release it lacks has probably come out since
    stale: bool | None  # None: too little history to tell

    @property
    def age(self) -> int | None:
        return self.age_days


def _freshness(
    catalog: Catalog, sources: Sequence[SourceStatus], forecast: fc.ReleaseForecast | None, now: float
) -> Freshness | None:
    """``forecast`` as the dates alone give it: staleness is the forecast made at the confirmation."""
    dated = [r for r in catalog.releases if r.released is not None]
    newest = max(dated, key=lambda r: (r.released, r.update)) if dated else None
    confirming = [s for s in sources if s.confirmed is not None]
    best = max(confirming, key=lambda s: s.confirmed or 0.0) if confirming else None
    if newest is None and best is None:
        return None
    released = newest.released if newest else None
    newest_at = released.timestamp() if released else None
    # Nothing newer than a documented release existed before it came out, so the knowledge was
    # complete at least until its date; a day first seen proves nothing of the kind.
    documented = [r.released.timestamp() for r in dated if r.date_basis != "seen_by" and r.released]
    floor = max(documented, default=None)
    confirmed = max(c for c in (best.confirmed if best else None, floor, 0.0) if c is not None)
    by = f"{best.kind} {best.origin}" if best and best.confirmed == confirmed else "its newest release's date"
    after = None
    if forecast is not None and confirmed > 0:
        after = fc.stale_after(forecast, confirmed)
    age = int((now - newest_at) // 86400) if newest_at is not None else None  # pragma: no mutate - truncates alike
    return Freshness(
        newest.update if newest else None,
        released,
        newest.date_basis if newest else None,
        age,
        confirmed or None,
        by if confirmed else None,
        after,
        None if after is None else now >= after,
    )


def freshness(report: Report) -> Freshness | None:
    return report.fresh


def newest_release_text(report: Report) -> str:
    """``newest known release 2601, documented by 2026-04-08 (229 days ago)``."""
    fresh = report.fresh
    if fresh is None or fresh.released is None:
        return "no release dates known"
    when = dated_text(fresh.released, fresh.date_basis)
    return f"newest known release {fresh.update}, {when} ({fresh.age_days} days ago)"


def freshness_text(report: Report) -> str:
    """How current the release knowledge is, the forecast, and what a stale catalog means, in words."""
    fresh, forecast = report.fresh, report.forecast
    text = newest_release_text(report)
    if fresh is not None and fresh.confirmed is not None:
        text = f"confirmed complete on {_day(fresh.confirmed)} by {fresh.confirmed_by}; " + text
    if forecast is not None:
        text += f"; next release expected about {_day(forecast.next_expected)} (forecast"
        if forecast.late_since is not None:
            late = int((report.generated_at - forecast.late_since) // 86400)  # pragma: no mutate - whole days
            text += f"; {late} days later than the usual interval, so the expectation moves with the wait"
        text += ")"
    text += "."
    if fresh is None or fresh.stale is None:
        text += " Too few dated releases to tell whether the catalog is stale."
    elif fresh.stale:
        text += (
            f" STALE since ~{_day(fresh.stale_after or 0.0)}: by Microsoft's release history, a release this"
            " catalog lacks has probably come out since it was last confirmed, so stamps shown in support may"
            " not be. Configure a live source (update_graph_url, or a current catalog in urls), point"
            " catalog.files at a current catalog, or upgrade the exporter."
        )
    else:
        text += (
            f" It counts as stale from ~{_day(fresh.stale_after or 0.0)} unless a source confirms it again"
            " (forecast: by then a release it lacks has probably come out)."
        )
    return text


def forecast_note(report: Report) -> str | None:
    """The footnote that labels ``~`` dates as forecasts, with their measured error."""
    forecast, error = report.forecast, report.forecast_error
    if forecast is None:
        return None
    note = (
        f"~ dates are forecasts: Microsoft's release cadence (median of the last {forecast.intervals} intervals, "
        f"{forecast.cadence_days:.0f} days) projected from the catalog's dates"
    )
    if error is not None:
        note += (
            f"; replayed on {len(error.rows)} past releases they erred by {error.median_error_days:.0f} days"
            f" (median), {error.p90_error_days:.0f} days (90th percentile)"
        )
    return note + "."


def support_end_text(stamp: StampReport) -> str:
    """``~2027-01-05`` (forecast), ``ended 2025-10-03`` or ``-``."""
    ev = stamp.evaluation
    if stamp.support_expected_end is not None:
        return "~" + _day(stamp.support_expected_end)
    if ev is not None and not ev.in_support:
        return f"ended {ev.out_of_support_since}" if ev.out_of_support_since else "ended"
    return "-"


def _next_text(ev: Evaluation | None) -> str:
    """``hotfix 1.2408.1.50, then 2 updates`` / ``2501 (1.2501.0.21), then 1 more``."""
    if ev is None:
        return "-"
    if ev.next_step is None:
        return "up to date"
    text = str(ev.next_step)
    if ev.hotfix_overdue:  # a missing hotfix is always the next step
        text += " (overdue)"
    remaining = len(ev.update_path) - (1 if ev.next_step.kind == "update" else 0)
    if remaining:
        noun = "update" if remaining == 1 else "updates"
        text += f", then {remaining} more {noun}" if ev.next_step.kind == "update" else f", then {remaining} {noun}"
    return text


def render_table(report: Report) -> str:
    """What an operator reads in a terminal."""
    latest = report.catalog.latest
    n = report.policy.supported_releases
    window = ", ".join(["N"] + [f"N-{i}" for i in range(1, n)])
    exception = report.policy.active_exception
    if exception is not None:
        window += f" (exception until {exception.end}{': ' + exception.reason if exception.reason else ''})"
    sources = ", ".join(f"{s.kind} {s.origin}" + ("" if s.up else " FAILING") for s in report.sources)
    lines = [
        f"Latest release: {latest.update if latest else 'none known'} "
        f"({len(report.catalog.releases)} releases known); supported: {window}",
        f"Catalog: {freshness_text(report)}",
        f"Catalog sources: {sources or 'none'}",
        "",
    ]
    header = ("STAMP", "VERSION", "UPDATE", "BEHIND", "VERDICT", "SUPPORT ENDS", "NEXT UPDATE", "READY")
    rows = []
    for stamp in report.stamps:
        ev, obs = stamp.evaluation, stamp.status.observation
        verdict = _VERDICT_TEXT.get(stamp.verdict, "UNKNOWN")
        if not stamp.status.up and ev is not None:
            verdict += " (stale)"
        rows.append(
            (
                stamp.name,
                str(obs.version) if obs else "-",
                ev.update_version if ev else "-",
                str(ev.versions_behind) if ev else "-",
                verdict,
                support_end_text(stamp),
                _next_text(ev),
                ready_cell(stamp),
            )
        )
    rows = [tuple(escape_terminal(cell) for cell in row) for row in rows]  # a stamp's text cannot forge the table
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        # pragma: no mutate start - every row has the header's seven cells: zip's strictness never matters
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        # pragma: no mutate end
    problems = [s for s in report.stamps if s.problem]
    oem = [s for s in report.stamps if s.oem is not None]
    warnings = catalog_warnings(report)
    note = forecast_note(report)
    flagged = [(s.name, text) for s in report.stamps for text in stamp_flags(s)]
    if problems or oem or warnings or note or flagged:
        lines.append("")
    if note and any(s.support_expected_end is not None for s in report.stamps):
        lines.append(note)
    runs = [(s.name, text) for s in report.stamps if (text := runs_text(s))]
    ready = [(s.name, text) for s in report.stamps if (text := health_text(s))]
    if (runs or ready) and not (problems or oem or warnings or note):
        lines.append("")
    for stamp in problems:
        lines.append(f"{stamp.name}: {stamp.problem}")
    for name, text in runs:
        lines.append(f"{name}: {text}")
    for name, text in ready:
        lines.append(f"{name}: {text}")
    for stamp in oem:
        assert stamp.oem is not None
        verdict = "in support" if stamp.oem.in_support else "OUT OF SUPPORT"
        behind = stamp.oem.versions_behind
        lines.append(f"{stamp.name}: OEM package ({stamp.oem.family}) {behind} behind {stamp.oem.latest}: {verdict}")
    for name, text in flagged:
        lines.append(f"{name}: {text}")
    for warning in warnings:
        lines.append(f"WARNING: {warning}")
    return "\n".join(escape_terminal(line) for line in lines) + "\n"


def stamp_flags(stamp: StampReport) -> list[str]:
    """What a stamp alone said that is not believed: builds the catalog lacks, values refused."""
    flags = [str(u) for u in stamp.unknown_builds]
    obs = stamp.status.observation
    if obs is not None:
        flags.extend(f"refused: {text}" for text in obs.refused)
    return flags
