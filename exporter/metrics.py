"""Prometheus collectors: metric families built fresh from the current snapshot.

No global mutable gauges: each collector reads one immutable ``Snapshot`` (the report
plus exporter state) and yields families, so a scrape sees one consistent evaluation
and never touches the network. ``describe`` returns no samples, so registering a
collector does no work.
"""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

from . import __version__, health
from .admin import REGION_UPDATE_STATES
from .report import Report, StampReport
from .runs import elapsed

log = logging.getLogger("exporter")

REFRESH_NOTE = "Refreshed in the background every refresh_interval; a scrape reads the latest evaluation."


@dataclass(frozen=True)
class Snapshot:
    """Everything a scrape shows, published atomically after each evaluation or reload."""

    report: Report
    reload_successful: bool
    reload_success_time: float
    publish_failures: int = 0  # evaluations that raised, whose previous snapshot kept serving
    reload_error: str | None = None  # why the last reload was refused
    refresh_interval: float = 300.0  # every stamp is re-evaluated at least this often
    clock: Callable[[], float] = time.time  # the publisher's clock

    def fresh(self) -> bool:
        """The publisher that made it still runs: it re-evaluates every refresh_interval."""
        return self.clock() - self.report.generated_at <= 2 * self.refresh_interval + 60


SnapshotSource = Callable[[], "Snapshot | None"]


class _Gauge(GaugeMetricFamily):
    """A gauge whose samples are floats when added: a value that cannot be one fails here, where
    one stamp's samples can be set aside, not later while the whole exposition is written."""

    def add_metric(self, labels, value, timestamp=None) -> None:  # type: ignore[no-untyped-def]
        super().add_metric(labels, float(value), timestamp)


class _Counter(CounterMetricFamily):
    def add_metric(self, labels, value, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().add_metric(labels, float(value), *args, **kwargs)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return _Gauge(name, doc, labels=labels)


class _SnapshotCollector(Collector):
    """A collector reading the current snapshot; ``describe`` yields nothing, so registering costs nothing."""

    def __init__(self, source: SnapshotSource) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        return iter(())


class StampCollector(_SnapshotCollector):
    """Per-stamp compliance and collection health."""

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        if snapshot is None:
            return
        yield from stamp_families(snapshot.report.stamps, snapshot.report.generated_at)


def stamp_families(stamps: tuple[StampReport, ...] | list[StampReport], now: float) -> list[Metric]:
    """The per-stamp families for the given stamps (all of them, or one for /probe).

    ``now`` is the evaluation's time (a running update's duration counts up to it).
    """
    families, _ = _stamp_families(stamps, now, label_keys(stamps))
    return [family for family in families if family.samples]


def label_keys(stamps: tuple[StampReport, ...] | list[StampReport]) -> list[str]:
    """The configured label names of all these stamps: azurestack_stamp_info carries every one."""
    return sorted({key for s in stamps for key in s.status.labels})


def _stamp_families(
    stamps: tuple[StampReport, ...] | list[StampReport], now: float, extra: list[str]
) -> tuple[list[GaugeMetricFamily | CounterMetricFamily], set[str]]:
    """Every per-stamp family, empty ones included, and the stamps that could not be rendered."""
    info = _gauge(
        "azurestack_stamp_info",
        "Azure Stack Hub stamp: installed build, its update version, OEM package version and source. Always 1.",
        ["stamp", "version", "update_version", "oem_version", "source", *extra],
    )
    behind = _gauge(
        "azurestack_stamp_versions_behind",
        f"Released update versions newer than the stamp's (0 = latest). {REFRESH_NOTE}",
        ["stamp"],
    )
    in_support = _gauge(
        "azurestack_stamp_in_support",
        "1 when the stamp runs one of the supported update versions (N, N-1, N-2 by default), 0 when not.",
        ["stamp"],
    )
    hotfix = _gauge(
        "azurestack_stamp_latest_hotfix_installed",
        "1 when the latest known hotfix of the stamp's update version is installed; absent when none is known.",
        ["stamp"],
    )
    oos_since = _gauge(
        "azurestack_stamp_out_of_support_since_timestamp_seconds",
        "Release date of the release that took the stamp out of support; absent when in support or date unknown.",
        ["stamp"],
    )
    pending = _gauge(
        "azurestack_stamp_pending_hotfix_released_timestamp_seconds",
        "Release date of the oldest known hotfix the stamp lacks; absent when none is missing or its date is unknown.",
        ["stamp"],
    )
    next_update = _gauge(
        "azurestack_stamp_next_update_info",
        "What the stamp should install next: its latest hotfix (kind=hotfix) or the next update version "
        "(kind=update, build = its base build when known). Absent when up to date. Always 1.",
        ["stamp", "kind", "update_version", "build"],
    )
    oem_behind = _gauge(
        "azurestack_stamp_oem_versions_behind",
        "OEM packages of the stamp's OEM family newer than its own, where an OEM catalog for the family is "
        "configured (never compared with Microsoft versions).",
        ["stamp", "oem_family"],
    )
    oem_support = _gauge(
        "azurestack_stamp_oem_in_support",
        "1 when the stamp's OEM package is within the supported OEM releases (N-2 by default), where known.",
        ["stamp", "oem_family"],
    )
    up = _gauge(
        "azurestack_stamp_up",
        f"1 when the last collection of the stamp succeeded. {REFRESH_NOTE}",
        ["stamp"],
    )
    last_success = _gauge(
        "azurestack_stamp_last_success_timestamp_seconds",
        "Time of the last successful collection of the stamp.",
        ["stamp"],
    )
    duration = _gauge(
        "azurestack_stamp_collection_duration_seconds",
        "Duration of the last collection of the stamp.",
        ["stamp"],
    )
    errors = _Counter(
        "azurestack_stamp_collection_errors",
        "Failed collections of the stamp, by reason (timeout, tls, connection, auth, http, parse, size, error; "
        "evaluation and render: read, but its values could not be evaluated or shown).",
        labels=["stamp", "reason"],
    )
    update_state = _gauge(
        "azurestack_stamp_update_state",
        "State of the stamp's update location (admin stamps): 1 for the current state, 0 for the others.",
        ["stamp", "state"],
    )
    available = _gauge(
        "azurestack_stamp_update_available",
        "1 per update package the stamp lists that is not installed (admin stamps).",
        ["stamp", "version", "package_type", "state"],
    )
    last_updated = _gauge(
        "azurestack_stamp_last_updated_timestamp_seconds",
        "When the stamp was last updated, as its update location reports (admin stamps).",
        ["stamp"],
    )
    support_end = _gauge(
        "azurestack_stamp_support_expected_end_timestamp_seconds",
        "FORECAST: when the release that takes the stamp out of support is expected, from Microsoft's past "
        "release cadence (see azurestack_catalog_next_release_expected_timestamp_seconds). Absent when out of "
        "support or the catalog has too few dates.",
        ["stamp"],
    )
    run_info = _gauge(
        "azurestack_stamp_last_update_run_info",
        "The stamp's newest update run (admin stamps): the update it installs, its state (Succeeded, InProgress, "
        "Failed, Unknown) and, for a failed run, the failed step's name. Always 1.",
        ["stamp", "update", "state", "failed_step"],
    )
    run_start = _gauge(
        "azurestack_stamp_last_update_run_start_timestamp_seconds",
        "When the stamp's newest update run started (admin stamps).",
        ["stamp"],
    )
    run_duration = _gauge(
        "azurestack_stamp_last_update_run_duration_seconds",
        "Duration of the stamp's newest update run; for a run in progress, the time since it started.",
        ["stamp"],
    )
    typical = _gauge(
        "azurestack_stamp_update_run_typical_duration_seconds",
        "Median duration of the stamp's recent succeeded update runs (basis=stamp), or of the fleet's stamps' "
        "when it has none (basis=fleet).",
        ["stamp", "basis"],
    )
    ttc = _gauge(
        "azurestack_stamp_time_to_compliance_seconds",
        "Update packages on the stamp's path to the latest release times its typical run duration.",
        ["stamp"],
    )
    start_by = _gauge(
        "azurestack_stamp_update_start_by_timestamp_seconds",
        "FORECAST: the latest day updating can start and still reach the latest release before support is "
        "expected to end (support expected end minus time to compliance).",
        ["stamp"],
    )
    last_checked = _gauge(
        "azurestack_stamp_last_checked_timestamp_seconds",
        "When the stamp last checked for new updates, as its update location reports (admin stamps).",
        ["stamp"],
    )
    unknown = _gauge(
        "azurestack_stamp_unknown_build_info",
        "A build the stamp runs or is offered that no catalog source knows and that is believed for this stamp "
        "only (reason release_unknown: an update version older than the newest known release; build_unknown: "
        "neither the base build nor a known hotfix of its release; a static stamp's build: possibly a typo). "
        "Always 1.",
        ["stamp", "build", "reason"],
    )
    refused = _gauge(
        "azurestack_stamp_refused_values",
        "Values of the stamp's last answer refused as implausible (times in the future): see the status page "
        "or /api/v1/stamps for which.",
        ["stamp"],
    )
    run_error = _gauge(
        "azurestack_stamp_last_update_run_error_info",
        "The failed step and error message of the stamp's newest update run, when it failed (admin stamps). Always 1.",
        ["stamp", "update", "failed_step", "error"],
    )
    health_up = _gauge(
        "azurestack_stamp_health_up",
        "1 when the last read of the stamp's Health provider (its alerts) succeeded, 0 when it failed or the stamp "
        "could not be read (admin stamps). The stamp's version data does not depend on it.",
        ["stamp"],
    )
    alerts = _gauge(
        "azurestack_stamp_alerts",
        "Active (not closed) infrastructure alerts of the stamp by severity (critical, warning); absent when its "
        "alerts could not be read (admin stamps).",
        ["stamp", "severity"],
    )
    alert_active = _gauge(
        "azurestack_stamp_alert_active",
        f"Active infrastructure alerts of the stamp per fault type (faultTypeId) and severity; at most "
        f'{health.MAX_FAULT_TYPES} fault types per stamp, the rest summed into fault_type="other" (admin stamps).',
        ["stamp", "fault_type", "severity"],
    )
    in_progress = _gauge(
        "azurestack_stamp_update_in_progress",
        "1 while an update is installing on the stamp (update location UpdateInProgress, an update Installing, or "
        "a run in progress), else 0; believed for a day at most while the stamp cannot be read (admin stamps).",
        ["stamp"],
    )
    ready = _gauge(
        "azurestack_stamp_update_ready",
        "1 when the next package the stamp must install (azurestack_stamp_next_update_info) could be started now, "
        "0 when something blocks it (azurestack_stamp_update_blocked); absent when there is nothing to install, "
        "or nothing blocks it but its alerts could not be read (admin stamps).",
        ["stamp"],
    )
    blocked = _gauge(
        "azurestack_stamp_update_blocked",
        "1 per reason blocking the stamp's next package: critical_alerts, oem_prerequisite, update_prerequisite, "
        "not_downloaded, update_in_progress, failed_run (admin stamps).",
        ["stamp", "reason"],
    )
    families: list[Metric] = [
        info,
        behind,
        in_support,
        hotfix,
        oos_since,
        pending,
        support_end,
        next_update,
        oem_behind,
        oem_support,
        up,
        last_success,
        duration,
        errors,
        update_state,
        available,
        last_updated,
        last_checked,
        run_info,
        run_error,
        run_start,
        run_duration,
        typical,
        ttc,
        start_by,
        unknown,
        refused,
        health_up,
        alerts,
        alert_active,
        in_progress,
        ready,
        blocked,
    ]
    failed: set[str] = set()
    for stamp in stamps:
        status, ev = stamp.status, stamp.evaluation
        name = _label(status.name)
        obs = status.observation
        marks = [len(family.samples) for family in families]
        try:
            info.add_metric(
                [
                    name,
                    _label(str(obs.version)) if obs else "",
                    ev.update_version if ev else "",
                    _label(obs.oem_version or "") if obs else "",
                    status.source,
                    *(_label(status.labels.get(key, "")) for key in extra),
                ],
                1,
            )
            if ev is not None:
                behind.add_metric([name], ev.versions_behind)
                in_support.add_metric([name], 1 if ev.in_support else 0)
                if ev.latest_hotfix_installed is not None:
                    hotfix.add_metric([name], 1 if ev.latest_hotfix_installed else 0)
                if ev.out_of_support_since is not None:
                    oos_since.add_metric([name], ev.out_of_support_since.timestamp())
                if ev.pending_hotfix_released is not None:
                    pending.add_metric([name], ev.pending_hotfix_released.timestamp())
                if stamp.support_expected_end is not None:
                    support_end.add_metric([name], stamp.support_expected_end)
                if ev.next_step is not None:
                    step = ev.next_step
                    next_update.add_metric([name, step.kind, step.update, str(step.build) if step.build else ""], 1)
            if stamp.oem is not None:
                family = _label(stamp.oem.family)
                oem_behind.add_metric([name, family], stamp.oem.versions_behind)
                oem_support.add_metric([name, family], 1 if stamp.oem.in_support else 0)
            up.add_metric([name], 1 if status.up else 0)
            if obs is not None:
                last_success.add_metric([name], obs.collected_at)
            if status.duration is not None:
                duration.add_metric([name], status.duration)
            for reason, count in sorted(status.errors_total.items()):
                errors.add_metric([name, reason], count)
            for build in stamp.unknown_builds:
                unknown.add_metric([name, str(build.build), build.reason], 1)
            if obs is not None and status.source == "admin":
                refused.add_metric([name], len(obs.refused))
                if obs.update_state is not None:
                    states = REGION_UPDATE_STATES
                    if obs.update_state not in states:
                        states = (*states, obs.update_state)
                    for state in states:
                        update_state.add_metric([name, _label(state)], 1 if state == obs.update_state else 0)
                listed = [u for u in obs.updates if not u.installed][:MAX_AVAILABLE_SERIES]
                for update in listed:
                    labels = [name, update.version, update.package_type, update.state]
                    available.add_metric([_label(v) for v in labels], 1)
                if obs.last_updated is not None:
                    last_updated.add_metric([name], obs.last_updated)
                if obs.last_checked is not None:
                    last_checked.add_metric([name], obs.last_checked)
            summary = stamp.runs
            if summary is not None:
                run = summary.last
                if run is not None:
                    run_info.add_metric([name, _label(run.update), _label(run.state), _label(run.failed_step or "")], 1)
                    if run.failed_step or run.error:
                        text = _label((run.error or "")[:MAX_ERROR_LABEL])
                        run_error.add_metric([name, _label(run.update), _label(run.failed_step or ""), text], 1)
                    if run.started is not None:
                        run_start.add_metric([name], run.started)
                    took = elapsed(run, now)
                    if took is not None:
                        run_duration.add_metric([name], took)
                if summary.typical is not None:
                    typical.add_metric([name, summary.typical_basis or ""], summary.typical)
                if summary.time_to_compliance is not None:
                    ttc.add_metric([name], summary.time_to_compliance)
                if summary.start_by is not None:
                    start_by.add_metric([name], summary.start_by)
            if status.source == "admin":
                seen = stamp.health
                health_up.add_metric([name], 1 if seen is not None and seen.known else 0)
                if seen is not None and seen.known:
                    alerts.add_metric([name, "critical"], seen.critical)
                    alerts.add_metric([name, "warning"], seen.warning)
                    for fault, severity, count in seen.by_fault:
                        alert_active.add_metric([name, _label(fault), severity], count)
            readiness = stamp.readiness
            if readiness is not None:
                in_progress.add_metric([name], 1 if readiness.in_progress else 0)
                if readiness.ready is not None:
                    ready.add_metric([name], 1 if readiness.ready else 0)
                for reason in readiness.blocked_by:
                    blocked.add_metric([name, reason], 1)
        except Exception as err:  # one stamp that cannot be shown never hides the others
            for family, mark in zip(families, marks, strict=True):
                del family.samples[mark:]
            _render_failed(name, status.errors_total, err, up, errors)
            failed.add(status.name)
            try:  # still listed, with what it is configured as, so label filters and joins keep finding it
                labels = [_label(status.labels.get(key, "")) for key in extra]
                info.add_metric([name, "", "", "", status.source, *labels], 1)
            except Exception:  # pragma: no cover - labels were cleaned at the border; up 0 is shown anyway
                del info.samples[marks[0] :]
    return families, failed


MAX_AVAILABLE_SERIES = 50  # update_available series per stamp: a real stamp lists a handful not installed
MAX_ERROR_LABEL = 200


def _label(value: str) -> str:
    """A label value that can always be written as UTF-8 (values are cleaned at the border; this is the net)."""
    if value.isascii():
        return value
    return value.encode("utf-8", "replace").decode("utf-8")


_render_failures: dict[str, int] = {}
_render_lock = threading.Lock()


def _render_failed(
    name: str, errors_total: Mapping[str, int], err: Exception, up: GaugeMetricFamily, errors: CounterMetricFamily
) -> None:
    """The stamp shows as down, its failed renderings counted under reason ``render``."""
    with _render_lock:
        _render_failures[name] = _render_failures.get(name, 0) + 1
        count = _render_failures[name]
    log.error("A stamp's metrics could not be rendered", extra={"stamp": name, "err": f"{type(err).__name__}"})
    up.add_metric([name], 0)
    for reason, value in sorted({**errors_total, "render": count}.items()):
        errors.add_metric([name, reason], value)


TEXT = "text"
OPENMETRICS = "openmetrics"
_EOF = b"# EOF\n"


class _Families:
    """Families as prometheus_client's writers take them (anything with ``collect``)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _encode(families: list[Metric], fmt: str) -> bytes:
    if fmt == OPENMETRICS:
        data = openmetrics.generate_latest(_Families(families))  # type: ignore[arg-type]
        return data[: -len(_EOF)] if data.endswith(_EOF) else data
    return generate_latest(_Families(families))  # type: ignore[arg-type]


def _blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """An exposition cut into its families, in order: (the # lines, the samples)."""
    blocks: list[tuple[bytes, bytes]] = []
    header: list[bytes] = []
    body: list[bytes] = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"# HELP "):
            if header:
                blocks.append((b"".join(header), b"".join(body)))
            header, body = [line], []
        elif line.startswith(b"#"):
            header.append(line)
        else:
            body.append(line)
    if header:
        blocks.append((b"".join(header), b"".join(body)))
    return blocks


_Written = dict[str, dict[int, bytes]]  # format -> family index -> one stamp's samples of that family
# Per stamp of a render: its position in the previous one (kept), or what it wrote and where it was (-1: nowhere).
_Source = int | tuple[_Written, int]
_Block = tuple[bytes, array]  # a family's samples of every stamp, joined; where each stamp's end


class StampExposition:
    """The per-stamp part of /metrics, written stamp by stamp: the samples of a stamp whose report
    is the same object are not written again. Evaluation keeps the report of a stamp that did not
    change, so a snapshot after one read writes one stamp's samples, not the fleet's. The bytes
    are those of writing every stamp at once (the tests compare them).

    What is kept is the answer itself, once: per family, the samples of every stamp joined (a
    block), and where each stamp's samples end in it. A new render copies the unchanged stamps'
    samples from the old blocks and writes the changed ones: a family whose samples are the
    same bytes as before keeps its block (a read changes a few families of its stamp). A format
    whose samples of a family are the same bytes as another's (OpenMetrics and text, for every
    family so far) shares that block, so the two formats differ only in their # lines."""

    def __init__(self, formats: tuple[str, ...] = (TEXT, OPENMETRICS)) -> None:
        self.formats = formats
        self.written = 0  # stamps written by the last render (the rest were kept)
        self._kept: dict[str, tuple[tuple[object, ...], int]] = {}  # name -> (what it depends on, its position)
        self._count = 0  # stamps in the blocks
        self._blocks: dict[str, dict[int, _Block]] = {fmt: {} for fmt in formats}
        self._headers: dict[tuple[str, int], bytes] = {}  # a family's # lines, the same for every stamp

    def render(self, report: Report, tails: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
        """Each format's per-stamp part followed by its ``tails`` entry, joined (for tests and tools)."""
        return {fmt: b"".join(parts) for fmt, parts in self.render_parts(report, tails).items()}

    def render_parts(self, report: Report, tails: Mapping[str, bytes] | None = None) -> dict[str, tuple[bytes, ...]]:
        """Each format's per-stamp part as the parts of the answer (a family's # lines, its block,
        ...), followed by its ``tails`` entry (the rest of the exposition): written out as they are."""
        now, extra = report.generated_at, label_keys(report.stamps)
        sources: list[_Source] = []
        kept: dict[str, tuple[tuple[object, ...], int]] = {}
        self.written = 0
        for stamp in report.stamps:
            # What the samples depend on besides the stamp's report: the fleet's label names,
            # and the time only through a running update's duration.
            run = stamp.runs.last if stamp.runs is not None else None
            key = (stamp, extra, elapsed(run, now) if run is not None else None)
            cached = self._kept.get(stamp.name)
            source: _Source
            if cached is not None and cached[0][0] is stamp and cached[0][1:] == key[1:]:
                source = cached[1]
            else:
                written, failed = self._write(stamp, now, extra)
                source = (written, cached[1] if cached is not None else -1)
                self.written += 1
                if failed:  # written again next time: its failures are counted each time, as before
                    sources.append(source)
                    continue
            kept[stamp.name] = (key, len(sources))
            sources.append(source)
        unchanged = len(sources) == self._count and all(
            isinstance(source, int) and source == position for position, source in enumerate(sources)
        )
        if not unchanged:
            self._blocks = self._join(sources)
        self._kept, self._count = kept, len(sources)
        result = {}
        for fmt in self.formats:
            blocks = self._blocks[fmt]
            parts: list[bytes] = []
            for index in sorted(blocks):
                parts.append(self._headers[fmt, index])
                parts.append(blocks[index][0])
            parts.append((tails or {}).get(fmt, b""))
            result[fmt] = tuple(parts)
        return result

    def _join(self, sources: list[_Source]) -> dict[str, dict[int, _Block]]:
        """Every format's blocks for the stamps in this order, from the previous blocks and what was written."""
        result: dict[str, dict[int, _Block]] = {}
        written = [source[0] for source in sources if not isinstance(source, int)]
        # Every stamp where it was (the usual case: a few read again): only theirs are looked at.
        in_place: list[tuple[int, _Written]] | None = None
        if len(sources) == self._count:
            in_place = [(n, s[0]) for n, s in enumerate(sources) if not isinstance(s, int) and s[1] == n]
            if any((s if isinstance(s, int) else s[1]) != n for n, s in enumerate(sources)):
                in_place = None
        for number, fmt in enumerate(self.formats):
            previous = self._blocks[fmt]
            indexes = set(previous).union(*(source[fmt] for source in written))
            blocks: dict[int, _Block] = {}
            for index in sorted(indexes):
                # The same block as an earlier format's when it was before and every new sample is too.
                same = next(
                    (
                        other
                        for other in self.formats[:number]
                        if self._blocks[other].get(index) is previous.get(index)
                        and all(source[fmt].get(index) is source[other].get(index) for source in written)
                    ),
                    None,
                )
                if same is not None:
                    block = result[same].get(index)
                elif in_place is not None and index in previous:
                    block = _patch_block(previous[index], index, fmt, in_place)
                else:
                    block = _join_block(previous.get(index), index, fmt, sources)
                if block is not None:
                    blocks[index] = block
            result[fmt] = blocks
        return result

    def _write(self, stamp: StampReport, now: float, extra: list[str]) -> tuple[_Written, bool]:
        families, failed = _stamp_families([stamp], now, extra)
        present = [(index, family) for index, family in enumerate(families) if family.samples]
        written: _Written = {}
        seen: dict[bytes, bytes] = {}  # the formats write most samples alike: kept once
        for fmt in self.formats:
            blocks = _blocks(_encode([family for _, family in present], fmt))
            for (index, _), (header, _) in zip(present, blocks, strict=True):
                # The label values are in the samples; a family's # lines are the same for every stamp.
                self._headers.setdefault((fmt, index), header)
            written[fmt] = {
                index: seen.setdefault(body, body) for (index, _), (_, body) in zip(present, blocks, strict=True)
            }
        return written, bool(failed)


def _patch_block(previous: _Block, index: int, fmt: str, written: list[tuple[int, _Written]]) -> _Block | None:
    """One family's block when every stamp is where it was: the previous block with the samples of
    the stamps written anew put in, where they differ; the previous block itself when none does."""
    old, ends = previous
    view = memoryview(old)
    changes = []
    for position, samples in written:
        body = samples[fmt].get(index, b"")
        if view[ends[position] : ends[position + 1]] != body:
            changes.append((position, body))
    if not changes:
        return previous
    parts: list[bytes | memoryview] = []
    new_ends = array("I", ends)
    cursor = delta = 0
    for number, (position, body) in enumerate(changes):
        begin, end = ends[position], ends[position + 1]
        parts.append(view[cursor:begin])
        parts.append(body)
        cursor = end
        delta += len(body) - (end - begin)
        following = changes[number + 1][0] if number + 1 < len(changes) else len(ends) - 1
        for k in range(position + 1, following + 1):  # the ends up to the next change move by as much
            new_ends[k] = ends[k] + delta
    parts.append(view[cursor:])
    if not new_ends[-1]:
        return None
    return b"".join(parts), new_ends


def _join_block(previous: _Block | None, index: int, fmt: str, sources: list[_Source]) -> _Block | None:
    """One family's block: a kept stamp's samples sliced from the previous block (consecutive ones
    at once), as are a written stamp's that are what they were; the others as written. The
    previous block itself when nothing in it moved; None when no stamp has a sample of it."""
    old, ends = previous if previous is not None else (b"", None)
    view = memoryview(old)
    parts: list[bytes | memoryview] = []
    new_ends = array("I", bytes(array("I").itemsize * (len(sources) + 1)))
    size = start = stop = 0  # the run of the previous block being copied: [start, stop)
    for number, source in enumerate(sources):
        body: bytes | None = None
        if isinstance(source, int):
            was = source
        else:
            written, was = source
            body = written[fmt].get(index, b"")
            if ends is not None and was >= 0 and view[ends[was] : ends[was + 1]] == body:
                body = None  # written as it was: copied from there
        if body is None:
            if ends is not None:
                begin, end = ends[was], ends[was + 1]
                if begin != stop:  # not where the run ends: a new run
                    if stop > start:
                        parts.append(view[start:stop])
                    start = begin
                stop = end
                size += end - begin
        elif body:
            if stop > start:
                parts.append(view[start:stop])
            start = stop = 0
            parts.append(body)
            size += len(body)
        new_ends[number + 1] = size
    if stop > start:
        parts.append(view[start:stop])
    if not size:
        return None
    if len(parts) == 1 and isinstance(parts[0], memoryview) and len(parts[0]) == len(old):
        return old, new_ends  # the whole previous block, as it was
    return b"".join(parts), new_ends


class CatalogCollector(_SnapshotCollector):
    """The release catalog and the health of its sources."""

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        if snapshot is None:
            return
        report = snapshot.report
        releases = _gauge(
            "azurestack_release_info",
            "A released Azure Stack Hub update version known to the catalog, with its base build, best source and "
            "how its date is known (documented: first documented that day; documented_by: by that day). Always 1.",
            ["update_version", "build", "source", "date_basis"],
        )
        released = _gauge(
            "azurestack_release_released_timestamp_seconds",
            "Release date of each update version whose date is known; see date_basis on azurestack_release_info "
            "(Microsoft states no release day: most dates are the day a release was first documented).",
            ["update_version"],
        )
        for release in report.catalog.releases:
            basis = (release.date_basis or "exact") if release.released else "unknown"
            build = str(release.build) if release.build else ""
            releases.add_metric([release.update, build, release.source, basis], 1)
            if release.released is not None:
                released.add_metric([release.update], release.released.timestamp())
        yield releases
        yield released
        newest = report.catalog.latest
        if newest is not None:
            latest_info = _gauge(
                "azurestack_catalog_latest_release_info",
                "The newest update version the catalog knows (N), with its base build and best source. Always 1.",
                ["update_version", "build", "source"],
            )
            latest_info.add_metric([newest.update, str(newest.build) if newest.build else "", newest.source], 1)
            yield latest_info
        count = _gauge("azurestack_catalog_releases", "Number of update versions the merged catalog knows.", [])
        count.add_metric([], len(report.catalog.releases))
        yield count
        latest = _gauge(
            "azurestack_catalog_latest_release_timestamp_seconds",
            "Release date of the newest catalog release whose date is known; absent when no date is known.",
            [],
        )
        fresh = report.fresh
        if fresh is not None and fresh.released is not None:
            latest.add_metric([], fresh.released.timestamp())
            yield latest
        if fresh is not None and fresh.confirmed is not None:
            confirmed = _gauge(
                "azurestack_catalog_confirmed_timestamp_seconds",
                "When the release knowledge was last confirmed complete: a live source when last read (the update "
                "graph; a remote catalog at its confirmed: day, else when read), else the newest confirmed: day of "
                "a catalog file or the bundled catalog (or its newest release's date).",
                [],
            )
            confirmed.add_metric([], fresh.confirmed)
            yield confirmed
        if fresh is not None and fresh.stale is not None:
            stale = _gauge(
                "azurestack_catalog_stale",
                "1 when the release knowledge is stale: unconfirmed for so long that, by Microsoft's release "
                "history, a release it lacks has probably come out (verdicts may be wrong); 0 when not.",
                [],
            )
            stale.add_metric([], 1 if fresh.stale else 0)
            yield stale
            stale_after = _gauge(
                "azurestack_catalog_stale_after_timestamp_seconds",
                "FORECAST: when the release knowledge becomes stale unless a source confirms it again.",
                [],
            )
            stale_after.add_metric([], fresh.stale_after)
            yield stale_after
        source_up = _gauge(
            "azurestack_catalog_source_up",
            f"1 when the catalog source was read successfully the last time it was tried. {REFRESH_NOTE}",
            ["source", "origin"],
        )
        source_success = _gauge(
            "azurestack_catalog_source_last_success_timestamp_seconds",
            "Time the catalog source was last read successfully.",
            ["source", "origin"],
        )
        for src in report.sources:
            source_up.add_metric([src.kind, src.origin], 1 if src.up else 0)
            if src.last_success is not None:
                source_success.add_metric([src.kind, src.origin], src.last_success)
        yield source_up
        yield source_success
        disagreements = _gauge(
            "azurestack_catalog_disagreements",
            "Facts a catalog source read over the network contradicts in the bundled catalog (a base build, a "
            "date); the documented value is kept. See the status page for which.",
            ["source"],
        )
        counted: dict[str, int] = {}
        for disagreement in report.catalog.disagreements:
            counted[disagreement.source] = counted.get(disagreement.source, 0) + 1
        for kind, number in sorted(counted.items()):
            disagreements.add_metric([kind], number)
        if counted:
            yield disagreements
        forecast = report.forecast
        if forecast is not None:
            expected = _gauge(
                "azurestack_catalog_next_release_expected_timestamp_seconds",
                "FORECAST: when Microsoft's next update version is expected: the newest dated release plus the "
                "median of recent intervals between releases; once that day has passed, the median of what recent "
                "intervals that lasted as long had left. Never in the past.",
                [],
            )
            expected.add_metric([], forecast.next_expected)
            yield expected
            cadence = _gauge(
                "azurestack_catalog_release_interval_seconds",
                "FORECAST input: median interval between recent releases, from the catalog's dates.",
                [],
            )
            cadence.add_metric([], forecast.cadence_days * 86400)
            yield cadence
        yield from policy_families(report)


def policy_families(report: Report) -> list[Metric]:
    """The policy in force; /probe answers carry it too, so rules can join on each target's own."""
    supported = _gauge(
        "azurestack_policy_supported_releases",
        "Update versions in support by the policy in force now (3 = N, N-1, N-2; a dated exception may "
        "change it): a stamp is in support while its versions behind is below this.",
        [],
    )
    supported.add_metric([], report.policy.supported_releases)
    grace = _gauge(
        "azurestack_policy_hotfix_grace_period_seconds",
        "Time within which a released hotfix should be installed, by policy.",
        [],
    )
    grace.add_metric([], report.policy.hotfix_grace_period)
    return [supported, grace]


class ExporterCollector(_SnapshotCollector):
    """The exporter's own state."""

    def collect(self) -> Iterator[Metric]:
        build = _gauge("azurestack_exporter_build_info", "azurestack-exporter version. Always 1.", ["version"])
        build.add_metric([__version__], 1)
        yield build
        snapshot = self._source()
        if snapshot is None:
            return
        ok = _gauge(
            "azurestack_exporter_config_last_reload_successful",
            "1 when the last configuration load succeeded, 0 when it was refused (the previous one keeps serving).",
            [],
        )
        ok.add_metric([], 1 if snapshot.reload_successful else 0)
        yield ok
        when = _gauge(
            "azurestack_exporter_config_last_reload_success_timestamp_seconds",
            "Time of the last successful configuration load.",
            [],
        )
        when.add_metric([], snapshot.reload_success_time)
        yield when
        evaluated = _gauge(
            "azurestack_exporter_last_evaluation_timestamp_seconds",
            "Time of the evaluation this scrape shows.",
            [],
        )
        evaluated.add_metric([], snapshot.report.generated_at)
        yield evaluated
        failures = CounterMetricFamily(
            "azurestack_exporter_evaluation_failures",
            "Evaluations of the fleet that raised; the previous evaluation kept serving. A stamp whose own "
            "evaluation fails is counted among its collection errors instead (reason evaluation).",
            labels=[],
        )
        failures.add_metric([], snapshot.publish_failures)
        yield failures


class LivenessCollector(_SnapshotCollector):
    """Whether the background evaluation still runs: read at every scrape's render of the small,
    often refreshed part of /metrics, so it tells even when no new evaluation comes."""

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        if snapshot is None:
            return
        publisher = _gauge(
            "azurestack_exporter_publisher_up",
            "1 while the background evaluation runs (every stamp is re-evaluated at least every "
            "refresh_interval); 0 when its last evaluation is older than two intervals: values are frozen "
            "and /-/ready answers 503.",
            [],
        )
        publisher.add_metric([], 1 if snapshot.fresh() else 0)
        yield publisher


def build_registry(source: SnapshotSource, *, process_metrics: bool = True, stamps: bool = True) -> CollectorRegistry:
    """A registry of our collectors (plus process_* metrics), separate from the global one.

    Without ``stamps`` the per-stamp families are left to a ``StampExposition`` (the server's)."""
    registry = CollectorRegistry(auto_describe=False)
    if stamps:
        registry.register(StampCollector(source))
    registry.register(CatalogCollector(source))
    registry.register(ExporterCollector(source))
    if process_metrics:  # else the server renders these in the part it refreshes every few seconds
        from prometheus_client import PlatformCollector, ProcessCollector

        registry.register(LivenessCollector(source))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry
