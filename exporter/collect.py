"""Collecting admin stamps: a read turned into an observation, and the background scheduler.

Each stamp is scheduled on its own: it is read again ``refresh_interval`` (with 10 %
jitter) after its previous read finished, by a bounded pool of workers. So a slow or dead
stamp delays no other stamp, and never a scrape, which only reads the published report.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import MappingProxyType

from .admin import REASONS, AdminClient, CollectionError
from .border import not_future
from .catalog import current_update_version
from .report import Observation, StampStatus
from .versions import VersionError, parse_version

log = logging.getLogger("exporter")

JITTER = 0.1
# Every error counter at zero: one read-only mapping for every stamp until it first fails.
NO_ERRORS: Mapping[str, int] = MappingProxyType(dict.fromkeys(REASONS, 0))


def observe(client: AdminClient, now: float, max_age: float = 0.0) -> Observation:
    """Read the stamp once (or reuse a reading younger than ``max_age``); raises CollectionError."""
    reading = client.read(max_age)
    try:
        version = parse_version(reading.current_version)
    except VersionError as err:
        raise CollectionError("parse", f"currentVersion: {err}") from None
    # A build named after a month that has not come yet cannot be real: taken as a release it
    # would put every other stamp out of support. The reading is refused, and says why.
    month = current_update_version(now)
    offered = [(u.version, u.microsoft_version()) for u in reading.updates]
    for text, build in [(reading.current_version, version), *offered]:
        if build is not None and build.update_version is not None and build.update_version > month:
            raise CollectionError("parse", f"refused: the stamp reports build {text}, beyond the current month")
    # Times in the future (beyond clock skew) are refused one by one, and said.
    refused: list[str] = []

    def happened(timestamp: float | None, what: str) -> float | None:
        kept = not_future(timestamp, now)
        if kept is None and timestamp is not None:
            refused.append(f"{what} {_iso(timestamp)} is in the future")
        return kept

    runs = tuple(
        replace(run, started=happened(run.started, f"the start of an update run of {run.update}"))
        for run in reading.runs
    )
    return Observation(
        version=version,
        oem_version=reading.current_oem_version,
        collected_at=now,
        update_state=reading.state,
        last_updated=happened(reading.last_updated, "lastUpdated"),
        last_checked=happened(reading.last_checked, "lastChecked"),
        updates=reading.updates,
        api_version=reading.api_version,
        oem_family=reading.oem_family,
        health=reading.health,
        runs=runs,
        refused=tuple(refused),
    )


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pending_status(name: str, labels: dict[str, str] | object) -> StampStatus:
    """An admin stamp before its first read: down, no values, every error counter at zero."""
    return StampStatus(
        name=name,
        source="admin",
        labels=labels,  # type: ignore[arg-type]
        error="not collected yet",
        errors_total=NO_ERRORS,
    )


def succeeded(previous: StampStatus, observation: Observation, started: float, duration: float) -> StampStatus:
    return replace(previous, observation=observation, up=True, error=None, last_attempt=started, duration=duration)


def failed(previous: StampStatus, error: CollectionError, started: float, duration: float) -> StampStatus:
    """Down, with the reason counted; the last good observation stays."""
    errors = dict(previous.errors_total)
    errors[error.reason] = errors.get(error.reason, 0) + 1
    return replace(previous, up=False, error=str(error), last_attempt=started, duration=duration, errors_total=errors)


class Refresher:
    """Schedules each admin stamp's reads on a bounded worker pool."""

    def __init__(self, collect: Callable[[str], None]) -> None:
        self._collect = collect
        self._cond = threading.Condition()
        self._due: dict[str, float] = {}
        self._running: set[str] = set()
        self._wanted: set[str] = set()
        self._rerun: set[str] = set()  # restarted while being read: read again as soon as that ends
        self._interval = 300.0
        self._executor: ThreadPoolExecutor | None = None
        self._concurrency = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="refresher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sync(self, names: Iterable[str], interval: float, concurrency: int, restart: Iterable[str] = ()) -> None:
        """Adopt a (re)loaded configuration: new and ``restart`` stamps are due now, removed ones dropped."""
        names = list(names)
        with self._cond:
            self._interval = interval
            if concurrency != self._concurrency:
                old = self._executor
                self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="collect")
                self._concurrency = concurrency
                if old is not None:
                    old.shutdown(wait=False)
            self._wanted = set(names)
            for name in list(self._due):
                if name not in self._wanted:
                    del self._due[name]
            now = time.monotonic()
            for name in names:
                if name not in self._due and name not in self._running:
                    self._due[name] = now
            for name in restart:
                if name in self._running:
                    self._rerun.add(name)
                elif name in self._wanted:
                    self._due[name] = now
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        """Supervised: a bug in scheduling is logged and the schedule goes on, never dies silently."""
        while True:
            try:
                if self._step():
                    return
            except Exception:
                log.exception("Refresh scheduling failed; retrying")
                time.sleep(1.0)

    def _step(self) -> bool:
        """One pass: start what is due, or wait for the next due time. True when stopping."""
        with self._cond:
            if self._stopping:
                return True
            now = time.monotonic()
            ready = [n for n, due in self._due.items() if due <= now]
            for name in ready:
                del self._due[name]
                self._running.add(name)
            executor = self._executor
            if not ready:
                timeout = min(self._due.values(), default=now + 1.0) - now
                self._cond.wait(timeout=max(0.01, min(timeout, 1.0)))
                return False
        for name in ready:
            assert executor is not None
            executor.submit(self._run, name)
        return False

    def _run(self, name: str) -> None:
        try:
            self._collect(name)
        except Exception:  # a bug in one read must not stop the schedule
            log.exception("Collection crashed", extra={"stamp": name})
        finally:
            with self._cond:
                self._running.discard(name)
                if name in self._wanted and not self._stopping:
                    spread = 1 + random.uniform(-JITTER, JITTER)  # noqa: S311 - jitter, not security
                    delay = 0.0 if name in self._rerun else self._interval * spread
                    self._due[name] = time.monotonic() + delay
                self._rerun.discard(name)
                self._cond.notify_all()
