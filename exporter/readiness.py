"""Update readiness: could the stamp start its next package now, and if not, what blocks it.

A pure function of one admin stamp's observation (its update location, updates list, runs and
Health provider alerts) and of the next step its evaluation names (the latest hotfix of its
release, or the next update version). Microsoft's update checklist asks the same questions:
no active critical alert, the OEM package the update needs, the build it must be installed
on, the package downloaded, no update under way, no failed attempt left unresolved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .runs import last_run
from .versions import Version, VersionError, oem_key, parse_version

if TYPE_CHECKING:  # types only: report imports this module
    from .health import Health
    from .policy import NextStep
    from .report import AvailableUpdate, Observation

# Label values of azurestack_stamp_update_blocked, in the order they are told.
REASONS = (
    "critical_alerts",
    "oem_prerequisite",
    "update_prerequisite",
    "not_downloaded",
    "update_in_progress",
    "failed_run",
)
# SPEC: an update is installing when the update location says UpdateInProgress, an update says
# Installing, or a run is in progress.
INSTALLING_LOCATION_STATES = ("updateinprogress",)
INSTALLING_UPDATE_STATES = ("installing",)
# Under way for readiness too: a package being prepared or health-checked has been started.
UNDER_WAY_LOCATION_STATES = (*INSTALLING_LOCATION_STATES, "preparationinprogress")
UNDER_WAY_UPDATE_STATES = (
    *INSTALLING_UPDATE_STATES,
    "preparing",
    "healthchecking",
    "notapplicablebecauseanotherupdateisinprogress",
)
NOT_DOWNLOADED_STATES = ("downloading", "downloadfailed", "recalled", "obsolete", "invalid")
PREREQUISITE_STATES = ("hasprerequisite",)
FAILED_UPDATE_STATES = ("preparationfailed", "installationfailed", "healthcheckfailed")
FAILED_LOCATION_STATES = ("updatefailed", "preparationfailed")
# An update seen installing is believed to go on this long without news (its admin endpoint
# restarts during an update); after that the stamp is shown for what it is: not heard from.
INSTALLING_BELIEVED_FOR = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer for one stamp. ``ready`` is None when there is nothing to install, or when
    nothing is known to block the package but the stamp's alerts could not be read."""

    package: str | None  # the next step in words ("hotfix 1.2506.3.30", "2601 (1.2601.0.4)"); None: nothing
    listed: str | None  # the listed package's version and state ("1.2601.0.4, Ready"), when listed
    in_progress: bool
    ready: bool | None
    blocked_by: tuple[str, ...] = ()
    why: tuple[str, ...] = ()  # each blocking reason in words, in the order of blocked_by
    unknown: str | None = None  # why readiness is not known


def installing(obs: Observation, now: float) -> bool:
    """An update is installing on the stamp, as its last successful read said (for a day at most)."""
    if now - obs.collected_at > INSTALLING_BELIEVED_FOR:
        return False
    if (obs.update_state or "").lower() in INSTALLING_LOCATION_STATES:
        return True
    if any(u.state.lower() in INSTALLING_UPDATE_STATES for u in obs.updates):
        return True
    return any(run.state.lower() == "inprogress" for run in obs.runs)


def assess(obs: Observation, step: NextStep | None, health: Health | None, now: float) -> Readiness:
    """Whether ``step`` could be started now. ``health``: this read's alerts (None: not read)."""
    in_progress = installing(obs, now)
    if step is None:
        return Readiness(None, None, in_progress, None)
    package = _package(obs, step)
    found: list[tuple[str, str]] = []
    if health is not None and health.known and health.critical:
        named = next((title for severity, title in health.titles if severity == "critical"), None)
        count = f"{health.critical} critical alert{'s' if health.critical > 1 else ''} active"
        found.append(("critical_alerts", f"{count}: {named}" if named else count))
    if package is not None:
        found.extend(_prerequisites(obs, package))
    if package is None:
        found.append(("not_downloaded", "the stamp does not list it: download or import the package"))
    elif package.state.lower() in NOT_DOWNLOADED_STATES:
        found.append(("not_downloaded", f"the stamp lists it as {package.state}"))
    if in_progress or _under_way(obs):
        found.append(("update_in_progress", f"an update is under way ({_under_way_words(obs)})"))
    failure = _unresolved_failure(obs, package)
    if failure:
        found.append(("failed_run", failure))
    order = {reason: i for i, reason in enumerate(REASONS)}
    found.sort(key=lambda pair: order[pair[0]])
    blocked = tuple(reason for reason, _ in found)
    listed = f"{package.version}, {package.state}" if package is not None else None
    if blocked:
        return Readiness(str(step), listed, in_progress, False, blocked, tuple(words for _, words in found))
    if health is None or not health.known:
        why = "the stamp's alerts were not read" + (f" ({health.error})" if health is not None else "")
        return Readiness(str(step), listed, in_progress, None, unknown=why)
    return Readiness(str(step), listed, in_progress, True)


def _package(obs: Observation, step: NextStep) -> AvailableUpdate | None:
    """The listed, not installed package of ``step``: the lowest build that takes it (a newer
    hotfix than the catalog knows installs the same fixes)."""
    candidates: list[tuple[Version, AvailableUpdate]] = []
    for update in obs.updates:
        build = update.microsoft_version()
        if build is None or update.installed or build <= obs.version:
            continue
        if step.kind == "hotfix":
            same_release = build.update_version == obs.version.update_version
            wanted = step.build is not None and build >= step.build and same_release
        else:
            wanted = build.update_version == (step.build.update_version if step.build is not None else step.update)
        if wanted:
            candidates.append((build, update))
    return min(candidates, key=lambda pair: pair[0])[1] if candidates else None


def _prerequisites(obs: Observation, package: AvailableUpdate) -> list[tuple[str, str]]:
    found = []
    required_oem, running_oem = oem_key(package.min_oem_version or ""), oem_key(obs.oem_version or "")
    # OEM versions are compared with OEM versions only: vendors number their packages their own way.
    if required_oem is not None and running_oem is not None and required_oem > running_oem:
        found.append(
            (
                "oem_prerequisite",
                f"needs OEM package {package.min_oem_version} or later (the stamp runs {obs.oem_version})",
            )
        )
    try:
        required = parse_version(package.min_version) if package.min_version else None
    except VersionError:
        required = None
    if required is not None and required > obs.version:
        found.append(("update_prerequisite", f"needs build {required} first (the stamp runs {obs.version})"))
    elif package.state.lower() in PREREQUISITE_STATES:
        found.append(("update_prerequisite", f"the stamp lists it as {package.state}: a prerequisite is missing"))
    return found


def _under_way(obs: Observation) -> bool:
    if (obs.update_state or "").lower() in UNDER_WAY_LOCATION_STATES:
        return True
    return any(u.state.lower() in UNDER_WAY_UPDATE_STATES for u in obs.updates)


def _under_way_words(obs: Observation) -> str:
    busy = [u for u in obs.updates if u.state.lower() in UNDER_WAY_UPDATE_STATES]
    if busy:
        return f"{busy[0].version} is {busy[0].state}"
    running = [run for run in obs.runs if run.state.lower() == "inprogress"]
    if running:
        return f"a run of {running[0].update} is in progress"
    return f"the update location says {obs.update_state}"


def _unresolved_failure(obs: Observation, package: AvailableUpdate | None) -> str | None:
    """A failed attempt not followed by success: the newest run failed on a build the stamp
    does not run yet, the package says it failed, or the update location says so."""
    run = last_run(obs.runs)
    if run is not None and run.state.lower() == "failed":
        try:
            later = parse_version(run.update) > obs.version
        except VersionError:
            later = False
        if later:
            where = f" at '{run.failed_step}'" if run.failed_step else ""
            return f"the last run of {run.update} failed{where}: resume or retry it"
    if package is not None and package.state.lower() in FAILED_UPDATE_STATES:
        return f"the stamp lists {package.version} as {package.state}"
    if (obs.update_state or "").lower() in FAILED_LOCATION_STATES:
        return f"the update location says {obs.update_state}"
    return None
