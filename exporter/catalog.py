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

_DATE = re.compile(r"\A([0-9]{4})-([0-9]{2})(?:-([0-9]{2}))?\Z")


class CatalogError(ValueError):
    """A catalog document that does not follow the schema; ``path`` is the key path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True, order=True)
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


def parse_date(value: object) -> PartialDate:
    """``YYYY-MM-DD`` or ``YYYY-MM`` (YAML may already have made the former a date)."""
    if isinstance(value, dt.datetime):
        value = value.date()
    if isinstance(value, dt.date):
        return PartialDate(value.year, value.month, value.day)
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
                return PartialDate(year, month, day)
    raise ValueError(f"date {value!r} must be YYYY-MM-DD, or YYYY-MM when only the month is known")


@dataclass(frozen=True)
class Hotfix:
    build: Version
    released: PartialDate | None = None


@dataclass(frozen=True)
class Release:
    """One update version. ``sources`` lists every source kind that knows it, best first."""

    update: str
    build: Version | None = None
    released: PartialDate | None = None
    hotfixes: tuple[Hotfix, ...] = ()
    sources: tuple[str, ...] = ()

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
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _check_keys(item: Mapping[str, object], allowed: Sequence[str], path: str) -> None:
    for key in item:
        if key not in allowed:
            raise CatalogError(f"{path}.{key}" if path else str(key), f"unknown key (allowed: {', '.join(allowed)})")


def _field(
    item: Mapping[str, object], key: str, path: str, parse: Callable[[object], T], *, required: bool = False
) -> T | None:
    """Parse one optional (or required) field, turning its error into a CatalogError at ``path.key``."""
    if item.get(key) is None:
        if required:
            raise CatalogError(f"{path}.{key}", "required key missing")
        return None
    try:
        return parse(item[key])
    except ValueError as err:  # VersionError is a ValueError
        raise CatalogError(f"{path}.{key}", str(err)) from None


def _parse_hotfix(value: object, path: str, update: str, base: Version | None) -> Hotfix:
    item = _expect_mapping(value, path)
    _check_keys(item, ("build", "released"), path)
    build = _field(item, "build", path, parse_version, required=True)
    assert build is not None
    if build.update_version != update:
        raise CatalogError(f"{path}.build", f"hotfix {build} does not belong to update version {update}")
    if base is not None and build <= base:
        raise CatalogError(f"{path}.build", f"hotfix {build} is not above the base build {base}")
    return Hotfix(build, _field(item, "released", path, parse_date))


def parse_release(value: object, path: str, source: str) -> Release:
    item = _expect_mapping(value, path)
    _check_keys(item, ("update", "build", "released", "hotfixes"), path)
    update = _field(item, "update", path, parse_update_version, required=True)
    assert update is not None
    build = _field(item, "build", path, parse_version)
    if build is not None and not build.is_legacy and build.update_version != update:
        raise CatalogError(f"{path}.build", f"base build {build} does not belong to update version {update}")
    hotfixes: dict[Version, Hotfix] = {}
    raw_hotfixes = item.get("hotfixes")
    if raw_hotfixes is not None:
        for index, raw in enumerate(_expect_list(raw_hotfixes, f"{path}.hotfixes")):
            hotfix = _parse_hotfix(raw, f"{path}.hotfixes[{index}]", update, build)
            if hotfix.build in hotfixes:
                raise CatalogError(f"{path}.hotfixes[{index}].build", f"hotfix {hotfix.build} is listed twice")
            hotfixes[hotfix.build] = hotfix
    return Release(
        update=update,
        build=build,
        released=_field(item, "released", path, parse_date),
        hotfixes=tuple(sorted(hotfixes.values(), key=lambda h: h.build)),
        sources=(source,),
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


def parse_catalog_document(document: object, source: str) -> list[Release]:
    """A whole catalog file: a mapping with a ``releases`` list."""
    if document is None:
        return []
    item = _expect_mapping(document, "")
    _check_keys(item, ("releases",), "")
    return parse_releases(item.get("releases"), "releases", source)


# ---------------------------------------------------------------- merging


def _merge_pair(first: Release, second: Release) -> Release:
    """Combine two records of one update version; ``first`` wins where both know a field."""
    hotfixes = {h.build: h for h in second.hotfixes}
    for hotfix in first.hotfixes:
        other = hotfixes.get(hotfix.build)
        released = hotfix.released or (other.released if other else None)
        hotfixes[hotfix.build] = Hotfix(hotfix.build, released)
    base = first.build or second.build
    kept = tuple(sorted((h for h in hotfixes.values() if base is None or h.build > base), key=lambda h: h.build))
    sources = first.sources + tuple(s for s in second.sources if s not in first.sources)
    return Release(
        update=first.update,
        build=base,
        released=first.released or second.released,
        hotfixes=kept,
        sources=sources,
    )


@dataclass(frozen=True)
class Catalog:
    """Releases ordered oldest first, with lookups the policy needs."""

    releases: tuple[Release, ...] = ()
    _index: Mapping[str, Release] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, releases: Iterable[Release]) -> Catalog:
        ordered = tuple(sorted(releases, key=lambda r: r.update))
        return cls(ordered, {r.update: r for r in ordered})

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
                and all(h.build != version for h in release.hotfixes)
            ):
                hotfixes = tuple(sorted((*release.hotfixes, Hotfix(version)), key=lambda h: h.build))
                releases[update] = replace(release, hotfixes=hotfixes)
        return Catalog.of(releases.values())


def merge(sources: Iterable[Sequence[Release]]) -> Catalog:
    """Merge release lists given best source first; one record per update version."""
    merged: dict[str, Release] = {}
    for releases in sources:
        for release in releases:
            known = merged.get(release.update)
            merged[release.update] = release if known is None else _merge_pair(known, release)
    return Catalog.of(merged.values())
