"""The running exporter: configuration, stamp states, and the published snapshot.

Loading (at start and on reload) validates the whole new configuration before anything
changes; a refused one leaves the previous configuration and snapshot in place. Admin
stamps are read in the background (``collect.Refresher``); every finished read marks the
state dirty, and a publisher thread evaluates the stamps that changed and publishes a new
``Snapshot`` (at most once a second), which scrapes, ``/api/v1/stamps`` and the status page
read without waiting for anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from .admin import AdminClient, CollectionError, unexpected
from .catalog import CatalogDocument, Release
from .collect import Refresher, failed, observe, pending_status, succeeded
from .config import (
    AdminConfig,
    Config,
    ConfigError,
    StampConfig,
    config_warnings,
    load_bundled_document,
    load_config,
)
from .deadline import REAPER
from .metrics import Snapshot
from .report import (
    EVALUATION_FAILED,
    FleetEvaluator,
    Observation,
    ReloadOutcome,
    Report,
    SourceStatus,
    StampStatus,
    build_report,
)
from .sources import RemoteSource
from .state import load_first_seen, save_first_seen

log = logging.getLogger("exporter")

# A burst of finished reads becomes one snapshot: at most one a second, each rendered once.
PUBLISH_MIN_INTERVAL = 1.0

_bundled_cache: CatalogDocument | None = None


def bundled_document() -> CatalogDocument:
    global _bundled_cache
    if _bundled_cache is None:
        _bundled_cache = load_bundled_document()
    return _bundled_cache


def bundled_catalog() -> tuple[Release, ...]:
    return bundled_document().releases


def remote_sources(
    config: Config, previous: Mapping[tuple[str, str], RemoteSource] | None = None
) -> dict[tuple[str, str], RemoteSource]:
    """Remote catalogs, then the update graph; one that was configured before keeps its state."""
    specs = [("url", spec) for spec in config.catalog.urls]
    if config.catalog.update_graph is not None:
        specs.append(("update_graph", config.catalog.update_graph))
    sources = {}
    for kind, spec in specs:
        key = (kind, spec.url)
        old = (previous or {}).get(key)
        if old is not None and old.ca_file == spec.ca_file and old.timeout == config.catalog.timeout:
            sources[key] = old
        else:
            sources[key] = RemoteSource(kind, spec.url, spec.ca_file, config.catalog.timeout)
    return sources


def catalog_sources(
    config: Config, loaded_at: float, remote: Mapping[tuple[str, str], RemoteSource] | None = None
) -> list[tuple[SourceStatus, Sequence[Release]]]:
    """The catalog sources, best first: inline, files, remote catalogs, the update graph, bundled."""
    sources: list[tuple[SourceStatus, Sequence[Release]]] = []
    if config.catalog.releases:
        rel = config.catalog.releases
        sources.append((SourceStatus("inline", "config", True, loaded_at, len(rel)), rel))
    for file in config.catalog.files:
        confirmed = file.confirmed.timestamp() if file.confirmed else None
        status = SourceStatus("file", file.path, True, loaded_at, len(file.releases), confirmed=confirmed)
        sources.append((status, file.releases))
    sources.extend(source.entry() for source in (remote or {}).values())
    if config.catalog.bundled:
        bundled = bundled_document()
        confirmed = bundled.confirmed.timestamp() if bundled.confirmed else None
        status = SourceStatus(
            "bundled", "exporter/data/catalog.yml", True, loaded_at, len(bundled.releases), confirmed=confirmed
        )
        sources.append((status, bundled.releases))
    return sources


def static_status(stamp: StampConfig, now: float) -> StampStatus:
    """A static stamp: its configuration is its (always successful) collection."""
    assert stamp.version is not None
    observation = Observation(stamp.version, stamp.oem_version, now)
    return StampStatus(
        name=stamp.name,
        source="static",
        labels=stamp.labels,
        observation=observation,
        up=True,
        last_attempt=now,
        duration=0.0,
        oem_family=stamp.oem_family,
    )


def read_once(stamp: StampConfig, client: AdminClient, max_age: float) -> StampStatus:
    """One read of an admin stamp, as ``check`` does it (a shared client's fresh reading is reused)."""
    status = replace(pending_status(stamp.name, stamp.labels), oem_family=stamp.oem_family)
    started, t0 = time.time(), time.monotonic()
    try:
        observation = observe(client, started, max_age)
    except CollectionError as err:
        return failed(status, err, started, time.monotonic() - t0)
    return succeeded(status, observation, started, time.monotonic() - t0)


def evaluate_config(config: Config, now: float) -> Report:
    """Collect every stamp once (admin stamps concurrently) and evaluate: the ``check`` command."""
    statuses: dict[str, StampStatus] = {}
    admin = [s for s in config.stamps if s.admin is not None]
    remote = remote_sources(config)
    clients: dict[AdminConfig, AdminClient] = {}
    for stamp in admin:
        if stamp.admin not in clients:
            clients[stamp.admin] = AdminClient(stamp.admin)  # type: ignore[index,arg-type]
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(config.refresh_concurrency, len(admin) + len(remote)))) as pool:
            refreshed = [pool.submit(source.refresh, now) for source in remote.values()]
            reads = pool.map(lambda s: read_once(s, clients[s.admin], config.refresh_interval), admin)  # type: ignore[index]
            for status in reads:
                statuses[status.name] = status
            for future in refreshed:
                future.result()
    finally:
        for client in clients.values():
            client.close()
    ordered = [statuses[s.name] if s.admin is not None else static_status(s, now) for s in config.stamps]
    sources = catalog_sources(config, now, remote)
    seen = load_first_seen(config.state_file)  # read only: the running exporter keeps the file
    return build_report(ordered, sources, config.policy, now, config.catalog.oem, seen)


@dataclass(slots=True)
class _Entry:
    """One configured stamp while the exporter runs."""

    config: StampConfig
    status: StampStatus
    client: AdminClient | None = None
    attempted: bool = False


@dataclass
class _Prepared:
    """A configuration built and evaluated off to the side, ready to be swapped in."""

    config: Config
    entries: dict[str, _Entry]
    remote: dict[tuple[str, str], RemoteSource]
    sources: list[tuple[SourceStatus, Sequence[Release]]]
    restart: list[str]
    now: float
    seen: dict[str, float]


class Exporter:
    """Holds the current configuration and stamp states, and publishes snapshots."""

    def __init__(self, config_file: str, clock: Callable[[], float] = time.time) -> None:
        self.config_file = config_file
        self._clock = clock
        self._lock = threading.RLock()
        self._config: Config | None = None
        self._entries: dict[str, _Entry] = {}
        self._sources: list[tuple[SourceStatus, Sequence[Release]]] = []
        self._reload_ok = True
        self._reload_error: str | None = None
        self._reload_time = 0.0
        self._reload_attempt = 0.0
        self._snapshot: Snapshot | None = None
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._remote: dict[tuple[str, str], RemoteSource] = {}
        self._logged_observed: set[str] = set()
        self._logged_unknown: set[tuple[str, object]] = set()
        self._refresher = Refresher(self.collect)
        self._source_refresher = Refresher(self.collect_source)
        self._publisher = threading.Thread(target=self._publish_loop, name="publisher", daemon=True)
        self._publish_failures = 0  # evaluations that raised: the previous snapshot kept serving
        self._evaluation_failures: dict[str, int] = {}  # per stamp: its own evaluation raised
        self._seen: dict[str, float] = {}  # learned releases and hotfixes: the day first seen
        self._evaluator = FleetEvaluator()  # evaluates again only the stamps whose inputs changed
        self._state_file: str | None = None
        self.ready = threading.Event()

    @property
    def config(self) -> Config | None:
        return self._config

    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def publisher_up(self) -> bool:
        """The background evaluation is alive: its thread runs and its last snapshot is recent.

        Every stamp is re-evaluated every ``refresh_interval``, so a snapshot older than two
        intervals (and a minute) means the publisher has stopped or hangs.
        """
        snapshot, config = self._snapshot, self._config
        if snapshot is None or config is None:
            return False
        if self._publisher.ident is not None and not self._publisher.is_alive() and not self._stopping.is_set():
            return False
        return snapshot.fresh()

    def is_ready(self) -> bool:
        """/-/ready: the first evaluation is done and the publisher still runs."""
        return self.ready.is_set() and self.publisher_up()

    # ------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """First load: a bad configuration raises ``ConfigError`` (the caller exits 2)."""
        config = load_config(self.config_file)
        prepared = self._prepare(config)
        if isinstance(prepared, str):
            raise ConfigError(self.config_file, "", prepared)
        self._commit(prepared)
        log.info("Loaded configuration", extra={"file": self.config_file, "stamps": len(config.stamps)})
        for warning in config_warnings(config):
            log.warning("Configuration warning", extra={"file": self.config_file, "warning": warning})

    def start(self) -> None:
        """Start background reads of admin stamps and publishing."""
        self._publisher.start()
        self._refresher.start()
        self._source_refresher.start()
        self._sync_refresher(restart=())

    def stop(self, final: bool = True) -> None:
        """Stop reading and publishing. ``final`` (the process ends): every later outbound request
        fails at once too; otherwise only the reads in flight are cut."""
        self._stopping.set()
        self._dirty.set()
        if final:
            REAPER.close()  # in-flight reads end now; none start: shutdown never waits on a slow peer
        else:
            REAPER.abort_all()
        self._refresher.stop()
        self._source_refresher.stop()
        with self._lock:
            for entry in self._entries.values():
                if entry.client:
                    entry.client.close()

    def reload(self, also: Callable[[], None] | None = None) -> tuple[bool, str]:
        """Re-read the configuration; on failure keep serving the previous one, unchanged.

        The new configuration is loaded, validated (``also`` validates more: the web
        configuration) and evaluated completely off to the side; only when all of that
        succeeds is it swapped in, at once. Background reads go on whatever the outcome.
        """
        try:
            config = load_config(self.config_file)
            if also is not None:
                also()
        except ConfigError as err:
            return self._refuse(str(err))
        prepared = self._prepare(config)
        if isinstance(prepared, str):
            return self._refuse(f"{self.config_file}: {prepared}")
        restart = self._commit(prepared)
        if self._publisher.is_alive():
            self._sync_refresher(restart)
        log.info("Reloaded configuration", extra={"file": self.config_file, "stamps": len(config.stamps)})
        for warning in config_warnings(config):
            log.warning("Configuration warning", extra={"file": self.config_file, "warning": warning})
        return True, "configuration reloaded"

    def _refuse(self, message: str) -> tuple[bool, str]:
        with self._lock:
            self._reload_ok = False
            self._reload_error = message
            self._reload_attempt = self._clock()
            self._publish_or_count()
        log.error("Reload refused; the previous configuration keeps serving", extra={"err": message})
        return False, message

    def _prepare(self, config: Config) -> _Prepared | str:
        """Everything a configuration needs, built and evaluated without touching the running state.

        Returns why it cannot be used instead, when building or evaluating it raises.
        """
        now = self._clock()
        created: list[AdminClient] = []
        try:
            with self._lock:
                old = dict(self._entries)
                previous_remote = dict(self._remote)
            # One client per endpoint and credentials (shared token, discovery and readings),
            # kept across reloads; a stamp keeps its last values while its client stays the same.
            previous_clients = {e.config.admin: e.client for e in old.values() if e.client and e.config.admin}
            clients: dict[AdminConfig, AdminClient] = {}
            entries: dict[str, _Entry] = {}
            restart = []
            for stamp in config.stamps:
                if stamp.admin is None:
                    entries[stamp.name] = _Entry(stamp, static_status(stamp, now))
                    continue
                client = clients.get(stamp.admin) or previous_clients.get(stamp.admin)
                if client is None:
                    client = AdminClient(stamp.admin)
                    created.append(client)
                clients[stamp.admin] = client
                previous = old.get(stamp.name)
                if previous is not None and previous.client is client:
                    status = replace(previous.status, labels=stamp.labels)
                    entries[stamp.name] = _Entry(stamp, status, client, previous.attempted)
                else:
                    entries[stamp.name] = _Entry(stamp, pending_status(stamp.name, stamp.labels), client)
                    restart.append(stamp.name)
            remote = remote_sources(config, previous_remote)
            sources = catalog_sources(config, now, remote)
            seen = self._seen
            if config.state_file and config.state_file != self._state_file:
                seen = {**load_first_seen(config.state_file), **self._seen}
            # The proof that it can serve: one whole evaluation of it, now.
            statuses = [e.status for e in entries.values()]
            build_report(statuses, sources, config.policy, now, config.catalog.oem, seen)
        except Exception as err:  # whatever goes wrong, nothing of it is applied
            for client in created:
                client.close()
            log.debug("Configuration cannot be evaluated", exc_info=True)
            return f"the configuration cannot be evaluated: {type(err).__name__}: {err}"
        return _Prepared(config, entries, remote, sources, restart, now, seen)

    def _commit(self, prepared: _Prepared) -> list[str]:
        """Swap in a prepared configuration at once; returns admin stamps whose endpoint settings changed."""
        with self._lock:
            for name, entry in prepared.entries.items():
                # A read that finished while the configuration was prepared is kept, not lost.
                previous = self._entries.get(name)
                if previous is not None and entry.client is not None and previous.client is entry.client:
                    entry.status = replace(previous.status, labels=entry.config.labels)
                    entry.attempted = previous.attempted
            kept = {id(e.client) for e in prepared.entries.values() if e.client}
            for entry in self._entries.values():
                if entry.client and id(entry.client) not in kept:
                    entry.client.close()
                    kept.add(id(entry.client))  # close a shared client once
            for entry in prepared.entries.values():
                if entry.client is not None:  # keeps its connections only if the server would
                    entry.client.next_read_in = prepared.config.refresh_interval
            self._config = prepared.config
            # Verdicts that move with time are at most half a refresh interval old.
            self._evaluator.max_age = prepared.config.refresh_interval / 2
            self._seen = {**prepared.seen, **self._seen}
            if prepared.config.state_file != self._state_file and self._seen:
                save_first_seen(prepared.config.state_file, self._seen)  # a new file starts with what is known
            self._state_file = prepared.config.state_file
            self._entries = prepared.entries
            self._remote = prepared.remote
            self._sources = prepared.sources
            self._reload_ok = True
            self._reload_error = None
            self._reload_time = prepared.now
            self._reload_attempt = prepared.now
            self._evaluation_failures = {
                name: count for name, count in self._evaluation_failures.items() if name in prepared.entries
            }
            self._publish_or_count()
        return prepared.restart

    def _sync_refresher(self, restart: Sequence[str]) -> None:
        config = self._config
        assert config is not None
        admin = [s.name for s in config.stamps if s.admin is not None]
        self._refresher.sync(admin, config.refresh_interval, config.refresh_concurrency, restart)
        origins = [f"{kind} {url}" for kind, url in self._remote]
        self._source_refresher.sync(origins, config.refresh_interval, 4)

    # ------------------------------------------------------------ collection

    def collect(self, name: str) -> None:
        """Read one admin stamp and record the result (runs on a refresher worker)."""
        with self._lock:
            entry = self._entries.get(name)
            client = entry.client if entry else None
        if entry is None or client is None:
            return
        started, t0 = self._clock(), time.monotonic()
        error: CollectionError | None = None
        try:
            # A reading another stamp with the same endpoint and credentials made this round is reused.
            observation = observe(client, started, max_age=self._config.refresh_interval / 2)  # type: ignore[union-attr]
        except CollectionError as err:
            error = err
        except Exception as err:  # whatever goes wrong, the stamp goes down with a reason
            error = unexpected(err)
        duration = time.monotonic() - t0
        with self._lock:
            current = self._entries.get(name)
            if current is None or current.client is not client:
                return  # reloaded meanwhile with other settings: this read belongs to a client that is gone
            entry = current  # a reload that kept the client keeps the read (a new entry, new labels)
            was_up, previous_error = entry.status.up, entry.status.error
            if error is None:
                entry.status = succeeded(entry.status, observation, started, duration)
            else:
                entry.status = failed(entry.status, error, started, duration)
            entry.attempted = True
        fields = {"stamp": name, "duration_seconds": round(duration, 3)}
        if error is not None:
            # Warn when a stamp goes down or fails differently; the same failure again is debug.
            level = logging.DEBUG if previous_error == str(error) else logging.WARNING
            log.log(level, "Collection failed", extra={**fields, "reason": error.reason, "err": error.message})
        elif not was_up and entry.status.observation is not None:
            log.info("Collection succeeded", extra={**fields, "version": str(observation.version)})
        else:
            log.debug("Collection succeeded", extra=fields)
        self._dirty.set()

    def collect_source(self, name: str) -> None:
        """Refresh one remote catalog source (runs on the source refresher)."""
        kind, _, url = name.partition(" ")
        with self._lock:
            source = self._remote.get((kind, url))
        if source is None:
            return
        was_up, previous_error = source.up, source.error
        source.refresh(self._clock())
        if not source.up:
            # As for stamps: warn when a source goes down or fails differently; the same failure again is debug.
            level = logging.DEBUG if previous_error == source.error else logging.WARNING
            log.log(
                level,
                "Catalog source failed; its last good copy stays in use",
                extra={"source": kind, "origin": source.origin, "err": source.error},
            )
        elif source.up and not was_up:
            log.info(
                "Catalog source read", extra={"source": kind, "origin": source.origin, "releases": len(source.releases)}
            )
        with self._lock:
            if self._remote.get((kind, url)) is source:
                self._sources = catalog_sources(self._config, self._reload_time, self._remote)  # type: ignore[arg-type]
        self._dirty.set()

    # ------------------------------------------------------------ publishing

    def _publish_loop(self) -> None:
        """Evaluate when reads finish (coalesced) and at least every ``refresh_interval``: verdicts
        that depend on the date move without a restart. Supervised: an evaluation that raises is
        logged and counted, the previous snapshot keeps serving, and the loop goes on."""
        while not self._stopping.is_set():
            config = self._config
            self._dirty.wait(timeout=config.refresh_interval if config else 60.0)
            if self._stopping.is_set():
                return
            self._dirty.clear()
            with self._lock:
                self._publish_or_count()
            time.sleep(PUBLISH_MIN_INTERVAL)  # coalesce bursts of finished reads into one evaluation

    def _publish_or_count(self) -> None:
        """Publish; an evaluation that raises is logged and counted, and the previous snapshot stays."""
        try:
            self._publish()
        except Exception:
            self._publish_failures += 1
            log.exception("Evaluation failed; the previous one keeps serving")
            if self._snapshot is not None:  # the same verdicts, and the failure counted where it shows
                self._snapshot = replace(
                    self._snapshot,
                    publish_failures=self._publish_failures,
                    reload_successful=self._reload_ok,
                    reload_error=self._reload_error,
                )

    def _publish(self) -> None:
        """Evaluate and publish; the caller holds the lock."""
        config = self._config
        assert config is not None
        statuses = [entry.status for entry in self._entries.values()]
        report = self._evaluator.report(
            statuses, self._sources, config.policy, self._clock(), config.catalog.oem, self._seen
        )
        if report.first_seen.keys() - self._seen.keys():  # learned something new: remember when
            self._seen = dict(report.first_seen)
            save_first_seen(config.state_file, self._seen)
        report = self._count_evaluation_failures(report)
        outcome = ReloadOutcome(self._reload_ok, self._reload_time, self._reload_attempt, self._reload_error)
        report = replace(report, reload=outcome)
        self._snapshot = Snapshot(
            report,
            self._reload_ok,
            self._reload_time,
            self._publish_failures,
            self._reload_error,
            config.refresh_interval,
            self._clock,
        )
        for release in report.catalog.releases:
            if release.sources == ("observed",) and release.update not in self._logged_observed:
                self._logged_observed.add(release.update)
                log.warning(
                    "A stamp runs or is offered a release no catalog source knows; the catalog is out of date",
                    extra={"update_version": release.update},
                )
        for stamp in report.stamps:
            for unknown in stamp.unknown_builds:
                if (stamp.name, unknown.build) not in self._logged_unknown:
                    self._logged_unknown.add((stamp.name, unknown.build))
                    log.warning(
                        "A stamp runs or is offered a build no catalog source knows; believed for that stamp only",
                        extra={"stamp": stamp.name, "build": str(unknown.build), "reason": unknown.reason},
                    )
        stamps_read = all(entry.attempted or entry.client is None for entry in self._entries.values())
        if stamps_read and all(source.attempted for source in self._remote.values()):
            self.ready.set()

    def _count_evaluation_failures(self, report: Report) -> Report:
        """A stamp whose evaluation raised shows as down, counted under reason ``evaluation``."""
        stamps = []
        for stamp in report.stamps:
            name = stamp.name
            failed = stamp.problem is not None and stamp.problem.startswith(EVALUATION_FAILED)
            if failed:
                self._evaluation_failures[name] = self._evaluation_failures.get(name, 0) + 1
                log.error("A stamp's evaluation failed", extra={"stamp": name, "err": stamp.problem})
            count = self._evaluation_failures.get(name)
            if count is not None:
                status = replace(stamp.status, errors_total={**stamp.status.errors_total, "evaluation": count})
                if failed:
                    status = replace(status, up=False, error=stamp.problem)
                stamp = replace(stamp, status=status)
            stamps.append(stamp)
        return replace(report, stamps=tuple(stamps))
