"""What the exporter keeps across restarts: the day each learned release and hotfix was first seen.

A release learned from the update graph or a stamp has no date from any source; the day it
was first seen stands in for one (``seen_by``). Without ``state_file`` that day is forgotten at
every restart and counts again from then: a hotfix's grace period would start over. The file
is read like any input (bounded, every entry checked) and replaced atomically.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping

from .catalog import FIRST_YEAR, LAST_YEAR
from .files import read_bounded

log = logging.getLogger("exporter")

MAX_STATE_BYTES = 1024 * 1024
MAX_ENTRIES = 10_000
_KEY = re.compile(r"\A(?:[0-9]{4}|[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9})\Z")  # an update version or a build


def load_first_seen(path: str | None) -> dict[str, float]:
    """First-seen days from the state file; an unreadable or malformed file is said and ignored."""
    if not path or not os.path.exists(path):
        return {}
    try:
        document = json.loads(read_bounded(path, MAX_STATE_BYTES))
        entries = document["first_seen"]
        if not isinstance(entries, dict):
            raise TypeError("first_seen is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("State file ignored: it cannot be read", extra={"file": path, "err": str(err)[:200]})
        return {}
    seen: dict[str, float] = {}
    for key, day in list(entries.items())[:MAX_ENTRIES]:
        when = _day(day)
        if isinstance(key, str) and _KEY.match(key) and when is not None:
            seen[key] = when
    return seen


def save_first_seen(path: str | None, seen: Mapping[str, float]) -> bool:
    """Write the first-seen days (the file replaced at once); False when it cannot be written."""
    if not path:
        return True
    days = {key: dt.datetime.fromtimestamp(when, tz=dt.UTC).date().isoformat() for key, when in sorted(seen.items())}
    text = json.dumps({"version": 1, "first_seen": days}, indent=2) + "\n"
    directory = os.path.dirname(path) or "."
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(prefix=".state-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except OSError as err:
        log.warning("State file cannot be written", extra={"file": path, "err": err.strerror or str(err)})
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
        return False
    return True


def _day(value: object) -> float | None:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        return None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        return None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
