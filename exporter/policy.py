"""Microsoft's servicing policy, evaluated for one build against a catalog.

In support = running the latest released update version (N) or one of the
``supported_releases - 1`` before it. Releases are counted, not months; hotfixes are
not update versions; packages are not cumulative, so the update path lists every
newer release in order. Pure functions over plain data: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import Catalog, Hotfix, PartialDate
from .versions import Version

DEFAULT_SUPPORTED_RELEASES = 3
DEFAULT_HOTFIX_GRACE_SECONDS = 45 * 86400.0

IN_SUPPORT = "in_support"
ENDING_SOON = "ending_soon"
OUT_OF_SUPPORT = "out_of_support"


class EvaluationError(ValueError):
    """The build cannot be placed in the catalog (a legacy build older than every release)."""


@dataclass(frozen=True)
class Policy:
    supported_releases: int = DEFAULT_SUPPORTED_RELEASES
    hotfix_grace_period: float = DEFAULT_HOTFIX_GRACE_SECONDS


@dataclass(frozen=True)
class NextStep:
    """What to install next: the latest hotfix of the running version, or the next update."""

    kind: str  # "hotfix" or "update"
    update: str
    build: Version | None

    def __str__(self) -> str:
        if self.kind == "hotfix":
            return f"hotfix {self.build}"
        return f"{self.update} ({self.build})" if self.build else self.update


@dataclass(frozen=True)
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


def evaluate(version: Version, catalog: Catalog, policy: Policy) -> Evaluation:
    """Evaluate one build. The catalog must already include observed releases."""
    update = catalog.update_version_of(version)
    if update is None:
        raise EvaluationError(f"build {version} is older than every release the catalog knows")
    release = catalog.get(update)
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

    hotfixes = release.hotfixes if release else ()
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
    )
