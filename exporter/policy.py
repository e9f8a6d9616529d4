"""Microsoft's servicing policy, evaluated for one build against a catalog.

In support = running the latest released update version (N) or one of the
``supported_releases - 1`` before it. Releases are counted, not months; hotfixes are
not update versions; packages are not cumulative, so the update path lists every
newer release in order. Pure functions over plain data: no clock, no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from .catalog import Catalog, Hotfix, PartialDate
from .versions import Version, oem_key

DEFAULT_SUPPORTED_RELEASES = 3
DEFAULT_HOTFIX_GRACE_SECONDS = 45 * 86400.0

IN_SUPPORT = "in_support"
ENDING_SOON = "ending_soon"
OUT_OF_SUPPORT = "out_of_support"


class EvaluationError(ValueError):
    """The build cannot be placed in the catalog (a legacy build older than every release)."""


@dataclass(frozen=True)
class PolicyException:
    """A period in which Microsoft supported a different number of releases (2020: N-3)."""

    start: dt.date
    end: dt.date  # inclusive
    supported_releases: int
    reason: str = ""


@dataclass(frozen=True)
class Policy:
    supported_releases: int = DEFAULT_SUPPORTED_RELEASES
    hotfix_grace_period: float = DEFAULT_HOTFIX_GRACE_SECONDS
    oem_supported_releases: int = DEFAULT_SUPPORTED_RELEASES
    exceptions: tuple[PolicyException, ...] = ()
    active_exception: PolicyException | None = None

    def at(self, timestamp: float) -> Policy:
        """The policy in force at that moment: an exception covering its (UTC) day replaces the count."""
        day = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).date()
        for exception in self.exceptions:
            if exception.start <= day <= exception.end:
                return replace(self, supported_releases=exception.supported_releases, active_exception=exception)
        return replace(self, active_exception=None)


@dataclass(frozen=True, slots=True)
class NextStep:
    """What to install next: the latest hotfix of the running version, or the next update."""

    kind: str  # "hotfix" or "update"
    update: str
    build: Version | None

    def __str__(self) -> str:
        if self.kind == "hotfix":
            return f"hotfix {self.build}"
        return f"{self.update} ({self.build})" if self.build else self.update


@dataclass(frozen=True, slots=True)
class Evaluation:
    update_version: str
    versions_behind: int
    in_support: bool
    verdict: str
    latest_hotfix: Version | None
    latest_hotfix_installed: bool | None
    missing_hotfixes: tuple[Hotfix, ...]
    update_path: tuple[str, ...]
    next_step: NextStep | None
    out_of_support_since: PartialDate | None
    superseded_by: str | None
    pending_hotfix_released: PartialDate | None
    hotfix_overdue: bool | None = None  # None: no dated hotfix missing, or no clock given
    ahead_of_catalog: bool = False  # its release is known only because a stamp runs or offers it


@dataclass(frozen=True, slots=True)
class OemEvaluation:
    family: str
    versions_behind: int
    in_support: bool
    latest: str


def evaluate_oem(oem_version: str, family: str, versions: tuple[str, ...], supported: int) -> OemEvaluation | None:
    """OEM packages within N-2 of the family's known packages; None when the version cannot be read."""
    key = oem_key(oem_version)
    if key is None or not versions:
        return None
    newer = sum(1 for v in versions if (oem_key(v) or ()) > key)
    return OemEvaluation(family, newer, newer <= supported - 1, versions[-1])


def evaluate(version: Version, catalog: Catalog, policy: Policy, now: float | None = None) -> Evaluation:
    """Evaluate one build. The catalog must already include observed releases.

    ``now`` (seconds) decides whether a missing hotfix is overdue (released longer ago than
    the grace period); policy exceptions are applied by the caller (``Policy.at``).
    """
    update = catalog.update_version_of(version)
    if update is None:
        raise EvaluationError(f"build {version} is older than every release the catalog knows")
    release = catalog.get(update)
    assert release is not None  # update_version_of only answers versions the catalog holds
    newer = catalog.newer_than(update)
    behind = len(newer)
    allowed = policy.supported_releases - 1
    in_support = behind <= allowed
    if not in_support:
        verdict = OUT_OF_SUPPORT
    elif behind == allowed:
        verdict = ENDING_SOON
    else:
        verdict = IN_SUPPORT

    hotfixes = release.hotfixes
    missing = tuple(h for h in hotfixes if h.build > version)
    latest_hotfix = hotfixes[-1].build if hotfixes else None
    installed = None if latest_hotfix is None else version >= latest_hotfix

    # The release that took the stamp out of support is the supported_releases-th newer one.
    superseded = newer[policy.supported_releases - 1] if not in_support else None
    dated_missing = sorted(h.released for h in missing if h.released is not None)

    if installed is False:
        next_step: NextStep | None = NextStep("hotfix", update, latest_hotfix)
    elif newer:
        next_step = NextStep("update", newer[0].update, newer[0].build)
    else:
        next_step = None

    return Evaluation(
        update_version=update,
        versions_behind=behind,
        in_support=in_support,
        verdict=verdict,
        latest_hotfix=latest_hotfix,
        latest_hotfix_installed=installed,
        missing_hotfixes=missing,
        update_path=tuple(r.update for r in newer),
        next_step=next_step,
        out_of_support_since=superseded.released if superseded else None,
        superseded_by=superseded.update if superseded else None,
        pending_hotfix_released=dated_missing[0] if dated_missing else None,
        hotfix_overdue=(
            None
            if now is None or not dated_missing
            else now - dated_missing[0].timestamp() > policy.hotfix_grace_period
        ),
        ahead_of_catalog=update > max((r.update for r in catalog.releases if r.sources != ("observed",)), default=""),
    )
