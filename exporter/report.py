"""The evaluated report: one immutable snapshot that every view reads.

``build_report`` turns what the collectors observed into verdicts (pure, no I/O);
``to_json``, ``render_table`` and ``exit_code`` are the ``check`` command's and the JSON
API's views of it, and the metrics collectors read the same object.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .catalog import Catalog, Release, merge
from .policy import OUT_OF_SUPPORT, Evaluation, EvaluationError, Policy, evaluate
from .versions import Version, VersionError, parse_version

UNKNOWN = "unknown"


@dataclass(frozen=True)
class AvailableUpdate:
    """One entry of a stamp's updates list (admin stamps)."""

    name: str
    version: str
    package_type: str
    state: str
    publisher: str = ""

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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class SourceStatus:
    """One catalog source: ``kind`` is a release_info source label, ``origin`` says which."""

    kind: str
    origin: str
    up: bool
    last_success: float | None
    releases: int
    error: str | None = None


@dataclass(frozen=True)
class StampReport:
    status: StampStatus
    evaluation: Evaluation | None
    problem: str | None  # why there is no evaluation, or why the stamp is down

    @property
    def name(self) -> str:
        return self.status.name

    @property
    def verdict(self) -> str:
        return self.evaluation.verdict if self.evaluation else UNKNOWN


@dataclass(frozen=True)
class Report:
    generated_at: float
    policy: Policy
    catalog: Catalog
    sources: tuple[SourceStatus, ...]
    stamps: tuple[StampReport, ...]

    def stamp(self, name: str) -> StampReport | None:
        for stamp in self.stamps:
            if stamp.name == name:
                return stamp
        return None


def build_report(
    statuses: Sequence[StampStatus],
    sources: Sequence[tuple[SourceStatus, Sequence[Release]]],
    policy: Policy,
    now: float,
) -> Report:
    """Merge the catalog sources (best first), add observed releases, evaluate every stamp."""
    catalog = merge(releases for _, releases in sources)
    catalog = catalog.with_observed(observed_versions(statuses))
    stamps = []
    for status in statuses:
        evaluation, problem = None, status.error
        if status.observation is not None:
            try:
                evaluation = evaluate(status.observation.version, catalog, policy)
            except EvaluationError as err:
                problem = str(err)
        stamps.append(StampReport(status, evaluation, problem))
    return Report(now, policy, catalog, tuple(s for s, _ in sources), tuple(stamps))


def observed_versions(statuses: Sequence[StampStatus]) -> list[Version]:
    """Builds stamps run or are offered: evidence of releases. OEM packages never count."""
    versions = []
    for status in statuses:
        if status.observation is None:
            continue
        versions.append(status.observation.version)
        versions.extend(v for v in (u.microsoft_version() for u in status.observation.updates) if v is not None)
    return versions


def exit_code(report: Report) -> int:
    """0 all in support; 1 any out of support; 3 none out but some not evaluated or down."""
    if any(s.evaluation and s.evaluation.verdict == OUT_OF_SUPPORT for s in report.stamps):
        return 1
    if any(s.evaluation is None or not s.status.up for s in report.stamps):
        return 3
    return 0


# ---------------------------------------------------------------- views


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


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
        "labels": dict(status.labels),
        "last_success": _iso(obs.collected_at) if obs else None,
        "error": stamp.problem,
        "update_state": obs.update_state if obs else None,
        "last_updated": _iso(obs.last_updated) if obs else None,
        "last_checked": _iso(obs.last_checked) if obs else None,
        "updates_available": [
            {"name": u.name, "version": u.version, "package_type": u.package_type, "state": u.state}
            for u in (obs.updates if obs else ())
            if not u.installed
        ],
    }


def to_json(report: Report) -> dict[str, object]:
    """The ``check --output json`` document, also served at ``/api/v1/stamps``."""
    latest = report.catalog.latest
    return {
        "generated_at": _iso(report.generated_at),
        "policy": {
            "supported_releases": report.policy.supported_releases,
            "hotfix_grace_period_seconds": report.policy.hotfix_grace_period,
        },
        "catalog": {
            "latest": latest.update if latest else None,
            "latest_released": str(latest.released) if latest and latest.released else None,
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
    }


_VERDICT_TEXT = {"in_support": "in support", "ending_soon": "ending soon", "out_of_support": "OUT OF SUPPORT"}


def _next_text(ev: Evaluation | None) -> str:
    """``hotfix 1.2408.1.50, then 2 updates`` / ``2501 (1.2501.0.21), then 1 more``."""
    if ev is None:
        return "-"
    if ev.next_step is None:
        return "up to date"
    text = str(ev.next_step)
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
    lines = [
        f"Latest release: {latest.update if latest else 'none known'} "
        f"({len(report.catalog.releases)} releases known); supported: {window}",
        "",
    ]
    header = ("STAMP", "VERSION", "UPDATE", "BEHIND", "VERDICT", "NEXT UPDATE")
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
                _next_text(ev),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    problems = [s for s in report.stamps if s.problem]
    if problems:
        lines.append("")
        for stamp in problems:
            lines.append(f"{stamp.name}: {stamp.problem}")
    return "\n".join(lines) + "\n"
