"""Azure Stack Hub build numbers: parsing, ordering and update versions.

A build is four dot-separated decimal fields. From 1805 on the second field is the
update version ``YYMM`` (``1.2408.1.50`` belongs to 2408). Releases 1802-1804 used
``1.0.YYMMDD.N``: their update version cannot be read off the number and is found
through the catalog's base builds (see ``catalog.Catalog.update_version_of``).
Nothing here decides whether a build is a hotfix: only the catalog knows that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BUILD = re.compile(r"\A([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})\Z")
_UPDATE = re.compile(r"\A[0-9]{4}\Z")
_OEM = re.compile(r"\A[0-9]{1,9}(?:\.[0-9]{1,9}){1,5}\Z")


class VersionError(ValueError):
    """A value that is not an Azure Stack Hub build or update version."""


def _valid_yymm(value: int) -> bool:
    return 1601 <= value <= 9912 and 1 <= value % 100 <= 12


def _valid_yymmdd(value: int) -> bool:
    return _valid_yymm(value // 100) and 1 <= value % 100 <= 31


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """An Azure Stack Hub build, ordered field by field as integers."""

    major: int
    minor: int
    patch: int
    build: int

    @property
    def is_legacy(self) -> bool:
        """True for the ``1.0.YYMMDD.N`` builds of releases 1802-1804."""
        return self.minor == 0

    @property
    def update_version(self) -> str | None:
        """``YYMM`` for modern builds; None for legacy ones (ask the catalog)."""
        return None if self.is_legacy else f"{self.minor:04d}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}.{self.build}"


# Builds parsed so far: a fleet runs and is offered a few, read again at every refresh and
# evaluation; each is kept once (its Version and its numbers), not once per stamp and read.
_parsed: dict[str, Version] = {}
MAX_PARSED = 4096


def parse_version(value: object) -> Version:
    """Parse a build such as ``1.2408.1.50`` (leading zeros allowed: ``1.2406.0.08``)."""
    if type(value) is str:
        known = _parsed.get(value)
        if known is not None:
            return known
        version = _parse_version(value)
        if len(_parsed) < MAX_PARSED:
            _parsed[value] = version
        return version
    return _parse_version(value)


def _parse_version(value: object) -> Version:
    if not isinstance(value, str):
        raise VersionError(f"version {value!r} must be a string of four numbers such as 1.2408.1.50")
    text = value.strip()
    match = _BUILD.match(text)
    if not match:
        raise VersionError(
            f"version {value!r} is not an Azure Stack Hub build: "
            "expected four dot-separated numbers such as 1.2408.1.50"
        )
    major, minor, patch, build = (int(field) for field in match.groups())
    if minor == 0:
        if not _valid_yymmdd(patch):
            raise VersionError(
                f"version {value!r}: a 1.0.x.y build needs a YYMMDD date as its third field (as in 1.0.180302.1)"
            )
    elif not _valid_yymm(minor):
        raise VersionError(
            f"version {value!r}: update version {minor} is not a YYMM release number (as 2408 in 1.2408.1.50)"
        )
    return Version(major, minor, patch, build)


def parse_update_version(value: object) -> str:
    """Parse an update version (release train) such as ``"2408"``; returns ``YYMM``."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise VersionError(f'update version {value!r} must be a YYMM string such as "2408"')
    text = str(value).strip()
    if not _UPDATE.match(text) or not _valid_yymm(int(text)):
        raise VersionError(f'update version {value!r} is not a YYMM release number such as "2408"')
    return text


def oem_key(version: str) -> tuple[int, ...] | None:
    """OEM versions are dotted numbers defined by each vendor: order them field by field."""
    if not _OEM.match(version.strip()):
        return None  # "2.4.\u00b2": str.isdigit says yes, int() says no; only ASCII digits are a version
    return tuple(int(p) for p in version.strip().split("."))
