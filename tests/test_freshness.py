"""Freshness from evidence, verdicts that move with the date, and learned releases that carry dates."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from catalog_server import CatalogServer, Document
from conftest import eventually, exporter_process, http_post, run_cli, write
from test_sources_e2e import metrics, value

from exporter.report import to_json
from exporter.service import Exporter

TODAY = dt.datetime.now(dt.UTC).date()
GRAPH = b"""<AzureStackUpdates>
  <CurrentVersion Version="1.2601.1.14"><ApplicableUpdate Version="1.2608.0.3"/></CurrentVersion>
</AzureStackUpdates>"""


@pytest.fixture
def server():
    catalog = CatalogServer().start()
    yield catalog
    catalog.stop()


def test_check_exits_4_when_only_stale_knowledge_vouches_and_a_current_catalog_file_clears_it(tmp_path):
    """The bundled catalog was last confirmed on 2026-05-13; by its release history a release it lacks
    has probably come out since 2026-09-29. A stamp on the latest release is in support by what the
    exporter knows, but the verdict may be wrong: exit 4, and the table says why."""
    config = write(tmp_path / "c.yml", "stamps: [{name: a, version: 1.2601.1.14}]\n")
    result = run_cli("check", f"--config.file={config}")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "STALE since ~2026-09-29" in result.stdout and "Configure a live source" in result.stdout
    report = json.loads(run_cli("check", f"--config.file={config}", "--output=json").stdout)
    assert (report["catalog"]["stale"], report["catalog"]["confirmed"]) == (True, "2026-05-13T00:00:00Z")
    # The runbook's second action: a catalog file its maintainer confirmed today.
    write(tmp_path / "current.yml", f"confirmed: {TODAY}\nreleases: []\n")
    config.write_text(f"catalog: {{files: [{tmp_path / 'current.yml'}]}}\n" + config.read_text())
    current = run_cli("check", f"--config.file={config}", "--output=json")
    assert current.returncode == 0
    catalog = json.loads(current.stdout)["catalog"]
    assert (catalog["stale"], catalog["confirmed_by"]) == (False, f"file {tmp_path / 'current.yml'}")


def test_a_confirmed_day_in_the_future_or_without_a_day_is_refused_with_its_key_path(tmp_path):
    """A confirmation dated ahead would silence staleness for good: refused, like a month alone."""
    future = write(tmp_path / "future.yml", f"confirmed: {TODAY + dt.timedelta(days=30)}\nreleases: []\n")
    month = write(tmp_path / "month.yml", "confirmed: 2026-05\nreleases: []\n")
    for document, problem in ((future, "is in the future"), (month, "needs a day: YYYY-MM-DD")):
        config = write(tmp_path / "c.yml", f"catalog: {{files: [{document}]}}\nstamps: []\n")
        result = run_cli("--config.check", f"--config.file={config}")
        assert result.returncode == 2, result.stdout
        assert f"{document}: confirmed: " in result.stderr and problem in result.stderr


def test_the_update_graph_confirms_the_knowledge_at_every_read_and_clears_the_alert_at_once(tmp_path, server):
    """Adding a live source is the runbook's first action: the next evaluation is fresh."""
    server.documents["/graph.xml"] = Document(GRAPH, content_type="application/xml")
    config = write(tmp_path / "c.yml", "refresh_interval: 1s\nstamps: [{name: a, version: 1.2601.1.14}]\n")
    with exporter_process(config, tmp_path=tmp_path) as running:
        assert value(metrics(running.url), "azurestack_catalog_stale") == 1
        config.write_text(f'catalog: {{update_graph_url: "{server.url}/graph.xml"}}\n' + config.read_text())
        assert http_post(f"{running.url}/-/reload")[0] == 200
        body = metrics(running.url)
        assert value(body, "azurestack_catalog_stale") == 0
        confirmed = value(body, "azurestack_catalog_confirmed_timestamp_seconds")
        assert confirmed is not None and time.time() - confirmed < 60
        # The graph's new release carries the day it was first seen: released no later than today.
        today = dt.datetime.combine(TODAY, dt.time(), tzinfo=dt.UTC).timestamp()
        assert value(body, "azurestack_release_released_timestamp_seconds", update_version="2608") == today
        assert value(body, "azurestack_release_info", update_version="2608", date_basis="seen_by") == 1


def test_first_seen_days_are_kept_across_restarts_in_the_state_file(tmp_path, server):
    server.documents["/graph.xml"] = Document(GRAPH, content_type="application/xml")
    state = tmp_path / "state" / "state.json"
    state.parent.mkdir()
    config = write(
        tmp_path / "c.yml",
        f"""
        refresh_interval: 1s
        state_file: {state}
        catalog: {{update_graph_url: "{server.url}/graph.xml"}}
        stamps: [{{name: a, version: 1.2601.1.14}}]
        """,
    )
    with exporter_process(config, tmp_path=tmp_path):
        saved = eventually(
            lambda: json.loads(state.read_text())["first_seen"] if state.exists() else {}, {"2608": str(TODAY)}
        )
        assert saved == {"2608": str(TODAY)}
    # Kept: a restart later still dates 2608 by the day it was first seen, not by the restart.
    state.write_text(
        json.dumps({"version": 1, "first_seen": {"2608": "2026-09-01", "junk": "x", "2609": "1900-01-01"}})
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        body = metrics(running.url)
        first = dt.datetime(2026, 9, 1, tzinfo=dt.UTC).timestamp()
        assert value(body, "azurestack_release_released_timestamp_seconds", update_version="2608") == first
    assert json.loads(state.read_text())["first_seen"] == {"2608": "2026-09-01"}  # junk never written back


def test_every_stamp_is_re_evaluated_as_the_date_moves_without_a_restart(tmp_path):
    """A static stamp one hotfix short (1.2601.1.14, documented by 2026-05-13): not overdue on
    2026-06-20, overdue on 2026-07-01 (45 days' grace), seen by the running exporter at once."""
    config = write(tmp_path / "c.yml", "refresh_interval: 1s\nstamps: [{name: a, version: 1.2601.1.13}]\n")
    day = {"now": dt.datetime(2026, 6, 20, 12, tzinfo=dt.UTC).timestamp()}
    exporter = Exporter(str(config), clock=lambda: day["now"])
    exporter.load()
    exporter.start()
    try:
        assert eventually(exporter.is_ready, True, timeout=10)
        before = to_json(exporter.snapshot().report)
        assert (before["generated_at"], before["stamps"][0]["hotfix_overdue"]) == ("2026-06-20T12:00:00Z", False)
        day["now"] = dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC).timestamp()
        after = eventually(lambda: to_json(exporter.snapshot().report)["stamps"][0]["hotfix_overdue"], True)
        assert after is True
        assert to_json(exporter.snapshot().report)["generated_at"] == "2026-07-01T12:00:00Z"
    finally:
        exporter.stop(final=False)
