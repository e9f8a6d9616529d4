"""The release catalog: which update versions Microsoft released, their builds and dates.

Plain data and pure functions. Every source (the bundled file, operator files, inline
releases, later remote ones) is parsed into the same ``Release`` records; ``merge``
combines them, earlier sources winning where two give different known values; versions
stamps run or are offered that no source knows join as ``observed`` releases.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from .versions import Version, parse_update_version, parse_version

T = TypeVar("T")

# Source kinds, as they appear in the ``source`` label of azurestack_release_info.
SOURCE_KINDS = ("inline", "file", "url", "update_graph", "bundled", "observed")

# How a release date is known. Microsoft states no release day, so the bundled catalog's dates
# are the day a release was first documented (approximate: usually within days of shipping), or
# a day by which it was documented (it may be older).
# A release learned from the update graph or a stamp, with no date from any source, is dated the
# day an exporter first saw it (``seen_by``): it was released no later than that.
DATE_BASES = ("documented", "documented_by", "announced", "exact", "seen_by", "unknown")
DATE_BASIS_TEXT = {
    "documented": "first documented",
    "documented_by": "documented by",
    "announced": "announced for",
    "exact": "released",
    "seen_by": "first seen",
    "unknown": "date unknown",
}

_DATE = re.compile(r"\A([0-9]{4})-([0-9]{2})(?:-([0-9]{2}))?\Z")


class CatalogError(ValueError):
    """A catalog document that does not follow the schema; ``path`` is the key path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True, order=True, slots=True)
class PartialDate:
    """A release date known to the day, or only to the month (``day`` None)."""

    year: int
    month: int
    day: int | None = None

    def first_day(self) -> dt.date:
        """The earliest day the date can mean: a month-only date counts from the 1st."""
        return dt.date(self.year, self.month, self.day or 1)

    def timestamp(self) -> float:
        """Seconds since the epoch at 00:00 UTC of ``first_day``."""
        return float(calendar.timegm(self.first_day().timetuple()))

    def __str__(self) -> str:
        if self.day is None:
            return f"{self.year:04d}-{self.month:02d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


# Azure Stack Hub's first update was documented in 2018 (an earlier build in 2017); dates outside
# these years are typing mistakes or hostile, and would move forecasts by centuries.
FIRST_YEAR, LAST_YEAR = 2015, 2099


def parse_date(value: object) -> PartialDate:
    """``YYYY-MM-DD`` or ``YYYY-MM`` (YAML may already have made the former a date), 2015 to 2099."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        value = value.isoformat()
    if isinstance(value, str):
        match = _DATE.match(value.strip())
        if match:
            year, month = int(match.group(1)), int(match.group(2))
            day = int(match.group(3)) if match.group(3) else None
            try:
                dt.date(year, month, day or 1)
            except ValueError:
                pass
            else:
                if not FIRST_YEAR <= year <= LAST_YEAR:
                    raise ValueError(f"date {value!r} is not between {FIRST_YEAR} and {LAST_YEAR}")
                return PartialDate(year, month, day)
    raise ValueError(f"date {value!r} must be YYYY-MM-DD, or YYYY-MM when only the month is known")


def parse_date_basis(value: object) -> str:
    if not isinstance(value, str) or value not in DATE_BASES:
        raise ValueError(f"date_basis {value!r} must be one of: {', '.join(DATE_BASES)}")
    return value


def parse_citation(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise ValueError("source must be a non-empty string (at most 500 characters) naming where the fact is from")
    return value.strip()


def dated_text(released: PartialDate | None, basis: str | None) -> str:
    """``first documented 2026-04-08`` / ``date unknown``: a date never shown without how it is known."""
    if released is None:
        return "date unknown"
    return f"{DATE_BASIS_TEXT.get(basis, 'released')} {released}"  # type: ignore[arg-type]


@dataclass(frozen=True)
class Hotfix:
    build: Version
    released: PartialDate | None = None
    date_basis: str | None = None
    citation: str | None = None


@dataclass(frozen=True)
class Release:
    """One update version. ``sources`` lists every source kind that knows it, best first."""

    update: str
    build: Version | None = None
    released: PartialDate | None = None
    hotfixes: tuple[Hotfix, ...] = ()
    sources: tuple[str, ...] = ()
    date_basis: str | None = None
    citation: str | None = None
    other_builds: tuple[Version, ...] = ()  # base builds too (a re-release, OEM baselines): never hotfixes

    @property
    def source(self) -> str:
        return self.sources[0] if self.sources else ""

    @property
    def latest_hotfix(self) -> Hotfix | None:
        return self.hotfixes[-1] if self.hotfixes else None


# ---------------------------------------------------------------- parsing


def _expect_mapping(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise CatalogError(path, f"must be a mapping, not {_type_name(value)}")
    return value


def _expect_list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise CatalogError(path, f"must be a list, not {_type_name(value)}")
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


def _check_keys(item: Mapping[str, object], allowed: Sequence[str], path: str) -> None:
    for key in item:
        if key not in allowed:
            raise CatalogError(f"{path}.{key}" if path else str(key), f"unknown key (allowed: {', '.join(allowed)})")


def _field(
    item: Mapping[str, object], key: str, path: str, parse: Callable[[object], T], *, required: bool = False
) -> T | None:
    """Parse one optional (or required) field, turning its error into a CatalogError at ``path.key``."""
    where = f"{path}.{key}" if path else key
    if item.get(key) is None:
        if required:
            raise CatalogError(where, "required key missing")
        return None
    try:
        return parse(item[key])
    except ValueError as err:  # VersionError is a ValueError
        raise CatalogError(where, str(err)) from None


def _parse_hotfix(value: object, path: str, update: str, base: Version | None) -> Hotfix:
    item = _expect_mapping(value, path)
    _check_keys(item, ("build", "released", "date_basis", "source"), path)
    build = _field(item, "build", path, parse_version, required=True)
    assert build is not None
    if build.is_legacy:
        # 1802-1804 hotfixes are 1.0.YYMMDD.N builds too: they belong where their base build is legacy.
        if base is None or not base.is_legacy:
            raise CatalogError(f"{path}.build", f"a 1.0.YYMMDD.N hotfix needs a 1.0.YYMMDD.N base build in {update}")
    elif build.update_version != update:
        raise CatalogError(f"{path}.build", f"hotfix {build} does not belong to update version {update}")
    if base is not None and build <= base:
        raise CatalogError(f"{path}.build", f"hotfix {build} is not above the base build {base}")
    released, basis = _dated(item, path)
    return Hotfix(build, released, basis, _field(item, "source", path, parse_citation))


def _dated(item: Mapping[str, object], path: str) -> tuple[PartialDate | None, str | None]:
    released = _field(item, "released", path, parse_date)
    basis = _field(item, "date_basis", path, parse_date_basis)
    if released is None and basis not in (None, "unknown"):
        raise CatalogError(f"{path}.date_basis", f"{basis!r} says how a date is known, but no released date is given")
    if released is not None and basis == "unknown":
        raise CatalogError(f"{path}.date_basis", "'unknown' contradicts the released date given")
    return released, basis


def parse_release(value: object, path: str, source: str) -> Release:
    item = _expect_mapping(value, path)
    _check_keys(item, ("update", "build", "other_builds", "released", "date_basis", "source", "hotfixes"), path)
    update = _field(item, "update", path, parse_update_version, required=True)
    assert update is not None
    build = _field(item, "build", path, parse_version)
    if build is not None and not build.is_legacy and build.update_version != update:
        raise CatalogError(f"{path}.build", f"base build {build} does not belong to update version {update}")
    others: list[Version] = []
    raw_others = item.get("other_builds")
    if raw_others is not None:
        for index, raw in enumerate(_expect_list(raw_others, f"{path}.other_builds")):
            where = f"{path}.other_builds[{index}]"
            try:
                other = parse_version(raw)
            except ValueError as err:
                raise CatalogError(where, str(err)) from None
            if other.update_version != update or other == build or other in others:
                raise CatalogError(where, f"{other} is not another build of update version {update}")
            others.append(other)
    hotfixes: dict[Version, Hotfix] = {}
    raw_hotfixes = item.get("hotfixes")
    if raw_hotfixes is not None:
        for index, raw in enumerate(_expect_list(raw_hotfixes, f"{path}.hotfixes")):
            hotfix = _parse_hotfix(raw, f"{path}.hotfixes[{index}]", update, build)
            if hotfix.build in hotfixes:
                raise CatalogError(f"{path}.hotfixes[{index}].build", f"hotfix {hotfix.build} is listed twice")
            hotfixes[hotfix.build] = hotfix
    clash = sorted(set(hotfixes) & set(others))
    if clash:
        raise CatalogError(f"{path}.other_builds", f"{clash[0]} is listed both as a hotfix and as another base build")
    released, basis = _dated(item, path)
    return Release(
        update=update,
        build=build,
        released=released,
        hotfixes=tuple(sorted(hotfixes.values(), key=lambda h: h.build)),
        sources=(source,),
        date_basis=basis,
        citation=_field(item, "source", path, parse_citation),
        other_builds=tuple(sorted(others)),
    )


def parse_releases(value: object, path: str, source: str) -> list[Release]:
    """Parse a list of releases in the catalog schema, rejecting duplicates."""
    if value is None:
        return []
    seen: set[str] = set()
    releases = []
    for index, raw in enumerate(_expect_list(value, path)):
        release = parse_release(raw, f"{path}[{index}]", source)
        if release.update in seen:
            raise CatalogError(f"{path}[{index}].update", f"update version {release.update} is listed twice")
        seen.add(release.update)
        releases.append(release)
    return releases


@dataclass(frozen=True)
class CatalogDocument:
    """A catalog file: its releases, and the day its maintainer last confirmed it lists every one."""

    releases: tuple[Release, ...] = ()
    confirmed: PartialDate | None = None


def parse_catalog(document: object, source: str) -> CatalogDocument:
    """A whole catalog file: a mapping with a ``releases`` list and an optional ``confirmed`` day."""
    if document is None:
        return CatalogDocument()
    item = _expect_mapping(document, "")
    _check_keys(item, ("confirmed", "releases"), "")
    confirmed = _field(item, "confirmed", "", parse_date)
    if confirmed is not None and confirmed.day is None:
        raise CatalogError("confirmed", "needs a day: YYYY-MM-DD")
    releases = parse_releases(item.get("releases"), "releases", source)
    return CatalogDocument(tuple(releases), confirmed)


def parse_catalog_document(document: object, source: str) -> list[Release]:
    """A whole catalog file's releases."""
    return list(parse_catalog(document, source).releases)


def current_update_version(now: float) -> str:
    """``YYMM`` of this month (UTC): no release can carry a later name."""
    today = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    return f"{today.year % 100:02d}{today.month:02d}"


def _tomorrow(now: float) -> dt.date:
    return dt.datetime.fromtimestamp(now, tz=dt.UTC).date() + dt.timedelta(days=1)


def future_confirmation(confirmed: PartialDate | None, now: float) -> str | None:
    """Why a ``confirmed`` day cannot be true yet, or None: nobody confirms tomorrow's releases."""
    if confirmed is not None and confirmed.first_day() > _tomorrow(now):
        return f"confirmed {confirmed} is in the future"
    return None


def future_problem(release: Release, now: float) -> str | None:
    """Why a release cannot be true yet (named beyond this month, dated after today), or None."""
    if release.update > current_update_version(now):
        return f"update version {release.update} is beyond the current month"
    tomorrow = _tomorrow(now)
    for label, date in [(release.update, release.released)] + [(str(h.build), h.released) for h in release.hotfixes]:
        if date is not None and date.first_day() > tomorrow:
            return f"{label} is dated {date}, in the future"
    return None


# ---------------------------------------------------------------- merging


def _merge_pair(first: Release, second: Release) -> Release:
    """Combine two records of one update version; ``first`` wins where both know a field."""
    hotfixes = {h.build: h for h in second.hotfixes}
    for hotfix in first.hotfixes:
        other = hotfixes.get(hotfix.build)
        # A date travels with how it is known and where from: take all three from one record.
        dated = hotfix if hotfix.released or other is None or other.released is None else other
        hotfixes[hotfix.build] = Hotfix(
            hotfix.build, dated.released, dated.date_basis, dated.citation or hotfix.citation
        )
    base = first.build or second.build
    others = tuple(sorted((set(first.other_builds) | set(second.other_builds)) - {base}))
    kept = tuple(
        sorted(
            (h for h in hotfixes.values() if (base is None or h.build > base) and h.build not in others),
            key=lambda h: h.build,
        )
    )
    sources = first.sources + tuple(s for s in second.sources if s not in first.sources)
    dated_release = first if first.released or second.released is None else second
    return Release(
        update=first.update,
        build=base,
        released=dated_release.released,
        hotfixes=kept,
        sources=sources,
        date_basis=dated_release.date_basis,
        citation=first.citation or second.citation,
        other_builds=others,
    )


LIVE_SOURCES = ("url", "update_graph")  # read over the network: they may add, never unsay the bundled catalog


@dataclass(frozen=True)
class Disagreement:
    """A live source said otherwise than the bundled catalog documents; the documented value is kept."""

    update: str
    what: str  # "base build", "release date", "date of hotfix 1.2506.2.24"
    kept: str
    ignored: str
    source: str  # the live source kind that said ``ignored``

    def __str__(self) -> str:
        return (
            f"{self.source} source gives {self.update}'s {self.what} as {self.ignored}; "
            f"the bundled catalog documents {self.kept}, which is kept"
        )


def _protect(live: Release, bundled: Release) -> tuple[Release, list[Disagreement]]:
    """``live`` with every field it contradicts the bundled record on set to the bundled value."""
    found: list[Disagreement] = []
    source = live.source
    if live.build is not None and bundled.build is not None and live.build != bundled.build:
        found.append(Disagreement(live.update, "base build", str(bundled.build), str(live.build), source))
        live = replace(live, build=bundled.build)
    if live.released is not None and bundled.released is not None and live.released != bundled.released:
        found.append(Disagreement(live.update, "release date", str(bundled.released), str(live.released), source))
        live = replace(live, released=bundled.released, date_basis=bundled.date_basis)
    documented = {h.build: h for h in bundled.hotfixes}
    hotfixes = []
    for hotfix in live.hotfixes:
        other = documented.get(hotfix.build)
        if other is not None and other.released and hotfix.released and other.released != hotfix.released:
            what = f"date of hotfix {hotfix.build}"
            found.append(Disagreement(live.update, what, str(other.released), str(hotfix.released), source))
            hotfix = other
        hotfixes.append(hotfix)
    return replace(live, hotfixes=tuple(hotfixes)), found


@dataclass(frozen=True)
class Catalog:
    """Releases ordered oldest first, with lookups the policy needs."""

    releases: tuple[Release, ...] = ()
    _index: Mapping[str, Release] = field(default_factory=dict, compare=False, repr=False)
    disagreements: tuple[Disagreement, ...] = ()  # what live sources said against the bundled catalog

    @classmethod
    def of(cls, releases: Iterable[Release], disagreements: Sequence[Disagreement] = ()) -> Catalog:
        ordered = tuple(sorted(releases, key=lambda r: r.update))
        return cls(ordered, {r.update: r for r in ordered}, tuple(disagreements))

    def get(self, update: str) -> Release | None:
        return self._index.get(update)

    @property
    def latest(self) -> Release | None:
        return self.releases[-1] if self.releases else None

    def newer_than(self, update: str) -> tuple[Release, ...]:
        return tuple(r for r in self.releases if r.update > update)

    def update_version_of(self, version: Version) -> str | None:
        """The update version a build belongs to; legacy builds map through base builds."""
        if not version.is_legacy:
            return version.update_version
        candidates = [r for r in self.releases if r.build is not None and r.build.is_legacy and r.build <= version]
        return max(candidates, key=lambda r: r.build).update if candidates else None  # type: ignore[arg-type,return-value]

    def with_observed(self, versions: Iterable[Version]) -> Catalog:
        """Add what running or offered builds prove: their release, and hotfixes above a known base."""
        releases = dict(self._index)
        for version in versions:
            update = version.update_version
            if update is None:
                continue
            release = releases.get(update)
            if release is None:
                releases[update] = Release(update=update, sources=("observed",))
            elif (
                release.build is not None
                and version > release.build
                and version not in release.other_builds
                and all(h.build != version for h in release.hotfixes)
            ):
                hotfixes = tuple(sorted((*release.hotfixes, Hotfix(version)), key=lambda h: h.build))
                releases[update] = replace(release, hotfixes=hotfixes)
        return Catalog.of(releases.values(), self.disagreements)


# ---------------------------------------------------------------- what stamps prove

RELEASE_UNKNOWN = "release_unknown"  # its update version is no release any source knows
BUILD_UNKNOWN = "build_unknown"  # a build of a known release that is neither its base build nor a known hotfix


@dataclass(frozen=True, slots=True)
class UnknownBuild:
    """A build one stamp runs or is offered that the catalog lacks and the fleet does not take as fact."""

    build: Version
    update: str
    reason: str  # RELEASE_UNKNOWN or BUILD_UNKNOWN
    typed_in: bool  # from the configuration (a static stamp), not from the stamp's update service

    def __str__(self) -> str:
        if self.reason == RELEASE_UNKNOWN:
            text = f"{self.build}: update version {self.update} is no release any catalog source knows"
            why = "older than the newest known release"
        else:
            text = f"{self.build} is neither the base build nor a known hotfix of {self.update}"
            why = "not above the newest known build of its release"
        if self.typed_in:
            return f"{text}; typed in, so believed for this stamp only: check it for a typo"
        return f"{text}; {why}, so believed for this stamp only"


@dataclass(frozen=True, slots=True)
class Evidence:
    """The builds one stamp runs or is offered. ``reported``: by its own update service (an admin stamp)."""

    stamp: str
    builds: tuple[Version, ...]
    reported: bool


def corroborate(
    known: Catalog, evidence: Iterable[Evidence], now: float
) -> tuple[Catalog, dict[str, tuple[UnknownBuild, ...]]]:
    """What stamps' builds add to the catalog for everyone, and what each stamp alone claims.

    A stamp's update service is Microsoft's own channel, but one stamp must not be able to
    move every other stamp: only what is consistent with every source is taken as fact --
    an update version newer than every release the sources know (Microsoft released since)
    and not named beyond this month, or a build above every known build of its release (a
    new hotfix). Anything else (a release between known ones, a build between known hotfixes)
    and every build typed into the configuration is flagged on its stamp and believed for it
    alone. ``known`` holds the sources' releases only; the result adds ``observed`` ones.
    """
    newest = max((r.update for r in known.releases), default="")
    month = current_update_version(now)
    items = list(evidence)
    accepted: list[Version] = []
    for item in items:
        if not item.reported:
            continue
        for build in item.builds:
            update = known.update_version_of(build)
            release = known.get(update) if update else None
            if update is None:
                continue  # a legacy build older than every release: its evaluation says so
            if release is None:
                if newest < update <= month:
                    accepted.append(build)
            elif release.build is not None and build > max(_builds(release)):
                accepted.append(build)
    catalog = known.with_observed(accepted)
    unknown: dict[str, tuple[UnknownBuild, ...]] = {}
    for item in items:
        flagged: list[UnknownBuild] = []
        for build in dict.fromkeys(item.builds):  # each build once, in order
            update = catalog.update_version_of(build)
            if update is None:
                continue
            release = catalog.get(update)
            if release is None:
                flagged.append(UnknownBuild(build, update, RELEASE_UNKNOWN, not item.reported))
            elif release.build is not None and build not in _builds(release):
                flagged.append(UnknownBuild(build, update, BUILD_UNKNOWN, not item.reported))
        if flagged:
            unknown[item.stamp] = tuple(flagged)
    return catalog, unknown


def _builds(release: Release) -> set[Version]:
    """Every build the catalog knows of a release: base builds and hotfixes."""
    return {b for b in (release.build, *release.other_builds, *(h.build for h in release.hotfixes)) if b is not None}


def merge(sources: Iterable[Sequence[Release]]) -> Catalog:
    """Merge release lists given best source first; one record per update version.

    A source read over the network (a remote catalog, the update graph) adds releases,
    builds, hotfixes and dates, but where it contradicts what the bundled catalog documents
    the documented value is kept and the disagreement recorded: whoever can alter a download
    must not be able to erase an overdue hotfix or move the forecast. The operator's own
    files and inline releases still win: they are the operator's corrections.
    """
    merged: dict[str, Release] = {}
    disagreements: list[Disagreement] = []
    for releases in sources:
        for release in releases:
            known = merged.get(release.update)
            if known is None:
                merged[release.update] = release
                continue
            if "bundled" in release.sources and set(known.sources) <= set(LIVE_SOURCES):
                known, found = _protect(known, release)
                disagreements.extend(found)
            merged[release.update] = _merge_pair(known, release)
    return Catalog.of(merged.values(), disagreements)
