"""The running exporter: configuration, stamp states, and the published snapshot.

Loading (at start and on reload) validates the whole new configuration before
anything changes; a refused one leaves the previous configuration and snapshot in
place. Each evaluation builds a new ``Report`` and publishes it as one ``Snapshot``
that scrapes, ``/api/v1/stamps`` and the status page read without locking.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from .catalog import Release
from .config import Config, ConfigError, load_bundled_catalog, load_config
from .metrics import Snapshot
from .report import Observation, Report, SourceStatus, StampStatus, build_report

log = logging.getLogger("exporter")

_bundled_cache: tuple[Release, ...] | None = None


def bundled_catalog() -> tuple[Release, ...]:
    global _bundled_cache
    if _bundled_cache is None:
        _bundled_cache = load_bundled_catalog()
    return _bundled_cache


def catalog_sources(config: Config, loaded_at: float) -> list[tuple[SourceStatus, Sequence[Release]]]:
    """The configured catalog sources, best first: inline, files in order, then bundled."""
    sources: list[tuple[SourceStatus, Sequence[Release]]] = []
    if config.catalog.releases:
        rel = config.catalog.releases
        sources.append((SourceStatus("inline", "config", True, loaded_at, len(rel)), rel))
    for file in config.catalog.files:
        sources.append((SourceStatus("file", file.path, True, loaded_at, len(file.releases)), file.releases))
    if config.catalog.bundled:
        rel = bundled_catalog()
        sources.append((SourceStatus("bundled", "exporter/data/catalog.yml", True, loaded_at, len(rel)), rel))
    return sources


def static_statuses(config: Config, now: float) -> list[StampStatus]:
    """Static stamps: their configuration is their (always successful) collection.

    Stamps read from an admin endpoint start as not yet collected.
    """
    statuses = []
    for stamp in config.stamps:
        if stamp.version is None:
            statuses.append(
                StampStatus(name=stamp.name, source=stamp.source, labels=stamp.labels, error="not collected yet")
            )
            continue
        observation = Observation(stamp.version, stamp.oem_version, now)
        statuses.append(
            StampStatus(
                name=stamp.name,
                source="static",
                labels=stamp.labels,
                observation=observation,
                up=True,
                last_attempt=now,
                duration=0.0,
            )
        )
    return statuses


def evaluate_config(config: Config, now: float) -> Report:
    """Evaluate a configuration once (the ``check`` command's path for static stamps)."""
    return build_report(static_statuses(config, now), catalog_sources(config, now), config.policy, now)


class Exporter:
    """Holds the current configuration and publishes snapshots."""

    def __init__(self, config_file: str, clock: Callable[[], float] = time.time) -> None:
        self.config_file = config_file
        self._clock = clock
        self._lock = threading.Lock()
        self._config: Config | None = None
        self._statuses: list[StampStatus] = []
        self._sources: list[tuple[SourceStatus, Sequence[Release]]] = []
        self._reload_ok = True
        self._reload_time = 0.0
        self._snapshot: Snapshot | None = None
        self.ready = threading.Event()

    @property
    def config(self) -> Config | None:
        return self._config

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def load(self) -> None:
        """First load: a bad configuration raises ``ConfigError`` (the caller exits 2)."""
        config = load_config(self.config_file)
        self._apply(config)
        log.info(
            "Loaded configuration",
            extra={"file": self.config_file, "stamps": len(config.stamps)},
        )

    def reload(self) -> tuple[bool, str]:
        """Re-read the configuration; on failure keep serving the previous one."""
        try:
            config = load_config(self.config_file)
        except ConfigError as err:
            with self._lock:
                self._reload_ok = False
                self._publish()
            log.error("Reload refused; the previous configuration keeps serving", extra={"err": str(err)})
            return False, str(err)
        self._apply(config)
        log.info("Reloaded configuration", extra={"file": self.config_file, "stamps": len(config.stamps)})
        return True, "configuration reloaded"

    def _apply(self, config: Config) -> None:
        now = self._clock()
        with self._lock:
            self._config = config
            self._statuses = static_statuses(config, now)
            self._sources = catalog_sources(config, now)
            self._reload_ok = True
            self._reload_time = now
            self._publish()
        self.ready.set()

    def _publish(self) -> None:
        """Evaluate and publish; the caller holds the lock."""
        config = self._config
        assert config is not None
        report = build_report(self._statuses, self._sources, config.policy, self._clock())
        self._snapshot = Snapshot(report, self._reload_ok, self._reload_time)
