"""The whole chain, real programs: exporter -> Prometheus (shipped rules) -> Alertmanager (shipped
routes) -> webhook; and every Grafana panel query run against that Prometheus.

The shipped files are used as they are, with two test-only changes: every rule's ``for`` is
set to 0s and Alertmanager's group timers to 0s/1s, so that notifications arrive in seconds
(the ``for`` durations themselves are covered by the promtool unit tests), and the
receivers' URLs point at a webhook in this test.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from conftest import ROOT, eventually, exporter_process, http_get, http_post, require_tool, write
from fake_azurestack import FakeAzureStack, FakeStamp, Run, Update, during_update
from pki import make_ca, make_server_cert
from processes import start_alertmanager, start_prometheus, stop

RULES = ROOT / "deploy" / "prometheus" / "azurestack-exporter.rules.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "grafana" / "azurestack-servicing.json"
ARTIFACTS = Path(__file__).parent / "artifacts"
SECRET = "e2e-Client-Secret-9d2b41"


class Webhook:
    """Collects Alertmanager's webhook notifications, by path (= receiver)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(
        self, status: str, alertname: str, stamp: str, instance: str | None = None
    ) -> tuple[str, dict, dict] | None:
        with self.lock:
            for path, payload in self.received:
                for alert in payload["alerts"]:
                    labels = alert["labels"]
                    if (
                        alert["status"] == status
                        and labels["alertname"] == alertname
                        and labels.get("stamp") == stamp
                        and instance in (None, labels.get("instance"))
                    ):
                        return path, payload, alert
        return None

    def wait(
        self, status: str, alertname: str, stamp: str, instance: str | None = None, timeout: float = 60
    ) -> tuple[str, dict, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find(status, alertname, stamp, instance)
            if found:
                return found
            time.sleep(0.2)
        with self.lock:
            seen = [
                (p, a["status"], a["labels"].get("alertname"), a["labels"].get("stamp"))
                for p, payload in self.received
                for a in payload["alerts"]
            ]
        raise AssertionError(f"no {status} {alertname} for {stamp} within {timeout}s; received: {seen}")


def hours_ago(hours: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_alertmanager_config(tmp_path: Path, webhook: Webhook) -> Path:
    """The shipped alertmanager.yml with test timers (group_wait 0s, group_interval 1s) and every
    receiver posting to ``webhook`` at ``/<receiver name>``, as tmp_path/alertmanager.yml."""
    am_config = yaml.safe_load(ALERTMANAGER.read_text())
    for route in [am_config["route"], *am_config["route"]["routes"]]:
        route.update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    for receiver in am_config["receivers"]:
        for key in [k for k in receiver if k.endswith("_configs")]:
            del receiver[key]
        receiver["webhook_configs"] = [{"url": f"{webhook.url}/{receiver['name']}", "send_resolved": True}]
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(am_config, sort_keys=False))
    return path


def prom_query(base: str, expr: str) -> list[dict]:
    status, _, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    data = json.loads(body)
    assert status == 200 and data["status"] == "success", (expr, data)
    return data["data"]["result"]


def test_two_exporters_page_by_their_own_policy_resolve_after_reload_and_every_panel_has_data(tmp_path):
    """Two exporters with different policies and the same stamp names, behind one Prometheus.

    Exporter A has the default policy (N-2, 45-day grace); exporter B supports N-3 with a
    30-day grace. Every rule that uses the policy must join on each exporter's own.
    """
    prometheus = require_tool("prometheus")
    alertmanager = require_tool("prometheus-alertmanager")

    # A fake admin stamp (update state, collection counters) beside static stamps.
    ca = make_ca()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "secret").write_text(SECRET)
    fake = FakeAzureStack(make_server_cert(ca)).start()
    # west: installing 2601 for 30 hours, with no run history of its own: stuck by the fleet's
    # typical run, which north's succeeded runs give (12.5 h); its Health provider has the warning
    # an update raises. north sits at N-2, so its updates would have to start now to beat the
    # (overdue) next release, and nothing blocks them.
    west = FakeStamp(
        "west",
        secret=SECRET,
        current_version="1.2506.2.24",
        state="UpdateInProgress",
        alerts=during_update(),
        updates=[Update("1.2506.2.24", "Installed"), Update("1.2601.0.4", "Installing")],
        runs={"1.2601.0.4": [Run("InProgress", hours_ago(30), "PT1H")]},
    )
    endpoint = fake.add_stamp(west)
    north = FakeStamp(
        "north",
        secret=SECRET,
        current_version="1.2501.1.47",
        updates=[Update("1.2501.1.47", "Installed"), Update("1.2506.0.15")],
        runs={"1.2501.1.47": [Run("Succeeded", hours_ago(900), "PT12H"), Run("Succeeded", hours_ago(400), "PT13H")]},
    )
    north_endpoint = fake.add_stamp(north)
    exporter_config = tmp_path / "exporter.yml"
    # A 2601 hotfix released 40 days ago (test data in both catalogs): overdue under a 30-day
    # grace, not under 45 days. 2601 itself dated 169 days ago (an operator's correction wins over
    # the bundled date): with the usual 174 days between releases the next is expected in 5 days,
    # so north's support is expected to end then, and its updates must start now.
    today = dt.datetime.now(dt.UTC).date()
    forty_days_ago = (today - dt.timedelta(days=40)).isoformat()
    recent_hotfix = f"""
    catalog:
      releases:
        - update: "2601"
          released: {(today - dt.timedelta(days=169)).isoformat()}
          date_basis: exact
          hotfixes:
            - {{build: 1.2601.2.20, released: {forty_days_ago}, date_basis: exact}}
    """
    body = (
        recent_hotfix
        + f"""
    refresh_interval: 1s
    stamps:
      - name: dub-lab
        version: 1.2408.1.50
      - name: lon-dr
        version: 1.2501.1.47
      - name: ams-prod
        version: 1.2601.1.14
        labels: {{site: ams}}
      - name: west
        admin:
          endpoint: {endpoint}
          tenant: adfs
          client_id: {west.client_id}
          client_secret_file: {tmp_path / "secret"}
          ca_file: {tmp_path / "ca.pem"}
      - name: north
        admin:
          endpoint: {north_endpoint}
          tenant: adfs
          client_id: {north.client_id}
          client_secret_file: {tmp_path / "secret"}
          ca_file: {tmp_path / "ca.pem"}
    """
    )
    write(exporter_config, body)
    other_config = write(
        tmp_path / "exporter-b.yml",
        recent_hotfix
        + """
    policy:
      supported_releases: 4
      hotfix_grace_period: 30d
    stamps:
      - name: dub-lab
        version: 1.2408.1.50
      - name: lon-dr
        version: 1.2501.1.47
      - name: ams-prod
        version: 1.2601.1.14
    """,
    )

    webhook = Webhook()
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))

    write_alertmanager_config(tmp_path, webhook)

    processes = []
    try:
        with (
            exporter_process(exporter_config, tmp_path=tmp_path) as exporter,
            exporter_process(other_config, tmp_path=tmp_path) as other,
        ):
            am_url, am = start_alertmanager(alertmanager, tmp_path)
            processes.append(am)
            a, b = exporter.url.removeprefix("http://"), other.url.removeprefix("http://")
            prom_config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "rules.yml")],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_url.removeprefix("http://")]}]}]},
                "scrape_configs": [{"job_name": "azurestack", "static_configs": [{"targets": [a, b]}]}],
            }
            prom_url, prom = start_prometheus(prometheus, tmp_path, prom_config)
            processes.append(prom)

            # 1. The out-of-support stamp pages: critical, through the pager receiver.
            path, payload, alert = webhook.wait("firing", "AzureStackStampOutOfSupport", "dub-lab", a)
            assert path == "/azurestack-pager"
            assert alert["labels"]["severity"] == "critical"
            assert alert["labels"]["job"] == "azurestack"
            assert alert["annotations"]["summary"] == "Azure Stack Hub stamp dub-lab is out of support."
            assert alert["annotations"]["description"].startswith(
                "Stamp dub-lab runs 1.2408.1.50 (update version 2408), 3 update versions behind the latest release"
            )
            assert alert["annotations"]["description"].endswith("Next: update 2501 (1.2501.0.21).")
            assert alert["annotations"]["runbook_url"].endswith("#azurestackstampoutofsupport")
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "webhook-firing.json").write_text(json.dumps(payload, indent=2))
            # The stamp at N-2 gets a warning, to the ticket receiver; no stamp gets both.
            path, _, alert = webhook.wait("firing", "AzureStackStampSupportEndingSoon", "lon-dr", a)
            assert path == "/azurestack-tickets" and alert["labels"]["severity"] == "warning"
            # Under B's N-3 window the same builds sit one place further from the edge.
            webhook.wait("firing", "AzureStackStampSupportEndingSoon", "dub-lab", b)
            webhook.wait("firing", "AzureStackStampHotfixOverdue", "ams-prod", b)
            # The overdue 2506 hotfix (documented by 2025-10-03) on west, under A's 45 days.
            webhook.wait("firing", "AzureStackStampHotfixOverdue", "west", a)
            # The release knowledge is complete at least until 2601's date, 169 days ago, and the
            # next release is expected in 5 days: not stale.
            assert webhook.find("firing", "AzureStackCatalogStale", None) is None
            # Update runs: west has run for 30 h against a typical 12.5 h; north must start now.
            _, _, stuck = webhook.wait("firing", "AzureStackStampUpdateStuck", "west", a)
            assert stuck["annotations"]["description"].startswith(
                "The update run on stamp west has been running for 1d 6h"
            )
            _, _, must_start = webhook.wait("firing", "AzureStackStampUpdateMustStart", "north", a)
            assert "take about 1d 1h 0m 0s" in must_start["annotations"]["description"]  # 2 packages x 12.5 h
            assert webhook.find("firing", "AzureStackStampUpdateStuck", "north") is None
            # Must not fire: both the paging rule and the joins keep each exporter's verdicts apart.
            # Every rule was evaluated many times by now (1 s intervals, for: 0s).
            for alertname, stamp, instance in [
                ("AzureStackStampSupportEndingSoon", "dub-lab", a),
                ("AzureStackStampSupportEndingSoon", "lon-dr", b),
                ("AzureStackStampOutOfSupport", "dub-lab", b),
                ("AzureStackStampOutOfSupport", "lon-dr", None),
                ("AzureStackStampOutOfSupport", "ams-prod", None),
                ("AzureStackStampHotfixOverdue", "ams-prod", a),
                ("AzureStackStampSupportExpectedToEnd", "dub-lab", a),
                # At N-2, SupportEndingSoon speaks for lon-dr: never the forecast alert for the same reason.
                ("AzureStackStampSupportExpectedToEnd", "lon-dr", a),
            ]:
                assert webhook.find("firing", alertname, stamp, instance) is None, (alertname, stamp, instance)
            firing = prom_query(prom_url, 'ALERTS{alertstate="firing",alertname="AzureStackStampSupportEndingSoon"}')
            assert sorted((r["metric"]["stamp"], r["metric"]["instance"]) for r in firing) == sorted(
                [("lon-dr", a), ("dub-lab", b), ("north", a)]
            )

            # 2. Every dashboard panel query returns data from this Prometheus, and every metric
            #    it names exists (so "count(...) or vector(0)" cannot hide a typo).
            dashboard = json.loads(DASHBOARD.read_text())
            variables = {
                "$stamp": ".*",
                "${labels}": 'stamp=~".+"',
                "$__rate_interval": "1m",
                "$__interval": "1s",
                "$__range": "5m",
            }

            def panels_without_data() -> list[tuple[str, str]]:
                empty = []
                for panel in dashboard["panels"]:
                    for target in panel.get("targets", []):  # a row has none
                        expr = target["expr"]
                        for name, value in variables.items():
                            expr = expr.replace(name, value)
                        assert not re.search(r"\$\{?[A-Za-z_]", expr), expr  # $1: label_replace's group
                        if not prom_query(prom_url, expr):
                            empty.append((panel["title"], expr))
                        for name in set(re.findall(r"\b(azurestack_\w+)", expr)):
                            if not prom_query(prom_url, f"count({name})"):
                                empty.append((panel["title"], name))
                return empty

            # Rates over 1m need two scrapes of each series: wait for the very state asserted.
            empty = eventually(panels_without_data, [], timeout=20, interval=1)
            assert empty == [], f"panels without data: {empty}"
            templating = {v["name"]: v for v in dashboard["templating"]["list"]}
            stamp_query = templating["stamp"]["query"]["query"]
            assert stamp_query == "label_values(azurestack_stamp_info{${labels}}, stamp)"

            def stamps_for(selector: str) -> list[str]:
                match = urllib.parse.quote(f"azurestack_stamp_info{{{selector}}}")
                status, _, values = http_get(f"{prom_url}/api/v1/label/stamp/values?match[]={match}")
                assert status == 200
                return sorted(json.loads(values)["data"])

            assert stamps_for(templating["labels"]["query"]) == ["ams-prod", "dub-lab", "lon-dr", "north", "west"]
            assert stamps_for('site="ams"') == ["ams-prod"]  # the stamp labels filter the fleet
            # The fleet table's verdict: 0 out, 1 ending soon, 2 in support, by each exporter's policy.
            verdict = next(
                t["expr"] for p in dashboard["panels"] if p["id"] == 7 for t in p["targets"] if t["refId"] == "C"
            )
            per_exporter = (
                verdict.replace('"$stamp"', '".*"')
                .replace("${labels}", variables["${labels}"])
                .replace("max by (stamp)", "max by (stamp, instance)")
            )
            verdicts = {
                (r["metric"]["stamp"], r["metric"]["instance"]): r["value"][1]
                for r in prom_query(prom_url, per_exporter)
            }
            assert {k: v for k, v in verdicts.items() if k[0] not in ("west", "north")} == {
                ("dub-lab", a): "0", ("lon-dr", a): "1", ("ams-prod", a): "2",
                ("dub-lab", b): "1", ("lon-dr", b): "2", ("ams-prod", b): "2",
            }  # fmt: skip

            # 3. Update the stamp, reload the exporter: the alert resolves.
            write(exporter_config, body.replace("version: 1.2408.1.50", "version: 1.2601.1.14"))
            assert http_post(f"{exporter.url}/-/reload")[0] == 200
            path, payload, alert = webhook.wait("resolved", "AzureStackStampOutOfSupport", "dub-lab", a)
            assert path == "/azurestack-pager"
            (ARTIFACTS / "webhook-resolved.json").write_text(json.dumps(payload, indent=2))
    finally:
        for process in processes:
            stop(process)
        fake.stop()
        webhook.server.shutdown()
