"""The running exporter's state in process: a supervised publisher, atomic reloads."""

from __future__ import annotations

import threading
import time

from conftest import eventually, write
from prometheus_client.exposition import generate_latest

from exporter.metrics import build_registry
from exporter.service import Exporter
from exporter.web import ExpositionRenderer


def scrape(exporter: Exporter) -> dict[str, float]:
    text = generate_latest(build_registry(exporter.snapshot)).decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("azurestack_exporter_")
    }


def test_an_evaluation_that_raises_is_counted_and_readiness_says_when_the_publisher_stalls(tmp_path):
    """A clock jumped to a time no calendar holds makes every evaluation raise: the previous verdicts
    keep serving, each failure is counted, and once the last evaluation is older than two refresh
    intervals the exporter says it is not ready. When evaluations succeed again, all is well again."""
    config = write(tmp_path / "c.yml", "refresh_interval: 1s\nstamps: [{name: a, version: 1.2506.2.24}]\n")
    offset = {"seconds": 0.0}
    exporter = Exporter(str(config), clock=lambda: time.time() + offset["seconds"])
    exporter.load()
    exporter.start()
    try:
        assert eventually(exporter.is_ready, True, timeout=10)
        before = exporter.snapshot().report
        offset["seconds"] = 1e20  # about three billion millennia on
        seen = eventually(lambda: scrape(exporter)["azurestack_exporter_evaluation_failures_total"] >= 2, True)
        assert seen
        assert exporter.snapshot().report is before  # the last good verdicts, still served
        assert exporter.is_ready() is False
        assert scrape(exporter)["azurestack_exporter_publisher_up"] == 0
        offset["seconds"] = 0.0
        assert eventually(lambda: exporter.snapshot().report is not before, True, timeout=10)
        assert exporter.is_ready() is True
        assert scrape(exporter)["azurestack_exporter_publisher_up"] == 1
    finally:
        exporter.stop(final=False)  # the process goes on: other tests make outbound requests


def test_a_wait_for_a_render_ends_when_the_renderer_stops(tmp_path):
    """A reload waits until /metrics shows it before new web users apply; at shutdown the
    renderer stops, and that wait must end at once rather than hold the exit for its timeout."""
    config = write(tmp_path / "c.yml", "stamps: [{name: a, version: 1.2506.2.24}]\n")
    exporter = Exporter(str(config))
    exporter.load()
    renderer = ExpositionRenderer(exporter, build_registry(exporter.snapshot, process_metrics=False, stamps=False))
    renderer.start()
    try:
        assert renderer.wait_rendered(exporter.snapshot(), timeout=10) is True  # the first render
        outcome: list[tuple[bool, float]] = []

        def wait() -> None:
            begun = time.monotonic()
            outcome.append((renderer.wait_rendered(object(), timeout=30), time.monotonic() - begun))

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        renderer.stop()
        waiter.join(5)
        assert outcome and outcome[0][0] is False
        assert outcome[0][1] < 3
    finally:
        renderer.stop()
        exporter.stop(final=False)
