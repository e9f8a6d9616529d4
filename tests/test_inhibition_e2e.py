"""An update in progress holds back what it causes, on its own stamp only: real Prometheus (the
shipped rules) -> real Alertmanager (the shipped routes and inhibit rules) -> webhook.

As in tests/test_alerting_e2e.py, the shipped files are used as they are with test-only changes:
every rule's ``for`` is 3 s and the update alert's 0 s (shipped, it waits less than every alert
it holds back), Alertmanager's group timers are 0s/1s, and every receiver, the notifier-less
``azurestack-info`` too, posts to a webhook in this test at ``/<receiver name>``.

The first test's metrics come from ``stamp_metrics``, a static exposition: one moment with every
problem on both stamps (a failed and a stuck run too). The second feeds the rules from the
exporter itself, reading fake stamps (tests/fake_azurestack.py), so the names and labels the
static exposition uses are the exporter's; the third runs the whole chain on the exporter's
series: fake stamps in the recorded bodies' shapes, the exporter, Prometheus and Alertmanager.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml
from conftest import SECRET, admin_stamp, eventually, exporter_process, http_get, require_tool
from fake_azurestack import FakeStamp, Update, certificate_expiring, critical
from processes import start_alertmanager, start_prometheus, stop
from test_alerting_e2e import RULES, Webhook, prom_query, write_alertmanager_config

A, B = "ams-a", "ber-b"  # A installs an update, B does not; both have the same problems
CAUSED_BY_UPDATES = {
    "AzureStackStampCollectionFailing",
    "AzureStackStampCriticalHealthAlert",
    "AzureStackStampUpdateBlocked",
}
HEALTH = {"AzureStackStampCertificateExpiring", "AzureStackStampUpdateInProgress"}
ALWAYS_NOTIFIED = {
    "AzureStackStampUpdateFailed",
    "AzureStackStampUpdateStuck",
    "AzureStackStampOutOfSupport",
    "AzureStackStampCertificateExpiring",
}


@contextlib.contextmanager
def stamp_metrics() -> Iterator[tuple[str, Callable[..., None]]]:
    """Yield the scrape target (host:port) and ``show(troubled=..., a_installing=...)``.

    Two admin stamps of one exporter, A and B, both out of support. ``troubled``: both admin
    endpoints unreadable (``azurestack_stamp_up`` 0), critical infrastructure alerts, a
    certificate about to expire, the next update blocked and the last run failed.
    ``a_installing``: A installs an update that has run for far longer than usual (its
    readiness, meanwhile, changes only with the trouble: never before the update alert fires).
    """
    state = {"troubled": False, "a_installing": False}

    def exposition() -> str:
        lines = [
            "azurestack_policy_supported_releases 3",
            "azurestack_policy_hotfix_grace_period_seconds 3888000",
        ]
        for stamp in (A, B):
            troubled, installing = state["troubled"], state["a_installing"] and stamp == A
            s = f'stamp="{stamp}"'
            lines += [
                f'azurestack_stamp_info{{{s},version="1.2408.1.50",update_version="2408",'
                'oem_version="2.4.2411.6",source="admin"} 1',
                f"azurestack_stamp_versions_behind{{{s}}} 3",
                f"azurestack_stamp_in_support{{{s}}} 0",
                f'azurestack_stamp_next_update_info{{{s},kind="update",update_version="2501",build="1.2501.0.21"}} 1',
                f"azurestack_stamp_up{{{s}}} {0 if troubled else 1}",
                f'azurestack_stamp_collection_errors_total{{{s},reason="timeout"}} {7 if troubled else 0}',
                f'azurestack_stamp_update_state{{{s},state="UpdateFailed"}} {1 if troubled else 0}',
                f'azurestack_stamp_update_state{{{s},state="UpdateInProgress"}} {1 if installing else 0}',
                f"azurestack_stamp_health_up{{{s}}} 1",
                f'azurestack_stamp_alerts{{{s},severity="critical"}} {2 if troubled else 0}',
                f'azurestack_stamp_alerts{{{s},severity="warning"}} {1 if troubled else 0}',
                f"azurestack_stamp_update_in_progress{{{s}}} {1 if installing else 0}",
                f"azurestack_stamp_update_ready{{{s}}} {0 if troubled else 1}",
            ]
            if troubled:
                lines += [
                    f'azurestack_stamp_alert_active{{{s},fault_type="FRP.Heartbeat.PhysicalNode",'
                    'severity="critical"} 2',
                    f'azurestack_stamp_alert_active{{{s},fault_type="CertificateExpiration.ExternalCert.Warning",'
                    'severity="warning"} 1',
                    f'azurestack_stamp_update_blocked{{{s},reason="critical_alerts"}} 1',
                    f'azurestack_stamp_update_blocked{{{s},reason="failed_run"}} 1',
                ]
            if troubled and installing:
                lines.append(f'azurestack_stamp_update_blocked{{{s},reason="update_in_progress"}} 1')
            if installing:
                lines += [
                    f'azurestack_stamp_last_update_run_info{{{s},update="1.2501.0.21",state="InProgress",'
                    'failed_step=""} 1',
                    f"azurestack_stamp_last_update_run_duration_seconds{{{s}}} 108000",
                    f'azurestack_stamp_update_run_typical_duration_seconds{{{s},basis="stamp"}} 43200',
                ]
        return "\n".join(lines) + "\n"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    def show(*, troubled: bool, a_installing: bool) -> None:
        state.update(troubled=troubled, a_installing=a_installing)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", show
    finally:
        server.shutdown()
        server.server_close()


def am_alerts(am_url: str) -> list[dict]:
    status, _, body = http_get(f"{am_url}/api/v2/alerts")
    assert status == 200, body
    return json.loads(body)


def seconds(duration: str) -> int:
    """A Prometheus duration of one unit (``15m``, ``1h``, ``0s``) in seconds."""
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]


@contextlib.contextmanager
def pipeline(tmp_path, target: str) -> Iterator[tuple[Webhook, str, str]]:
    """Prometheus (the shipped rules, with ``for`` of seconds) scraping ``target`` every second, sending
    to Alertmanager (the shipped routes and inhibit rules), whose every receiver posts to a webhook.
    Yields (webhook, Alertmanager's URL, Prometheus's URL); stops both by PID afterwards."""
    prometheus = require_tool("prometheus")
    alertmanager = require_tool("prometheus-alertmanager")
    webhook = Webhook()
    rules = yaml.safe_load(RULES.read_text())
    # The shipped update alert waits less than every alert it holds back, so it is in Alertmanager
    # first; here it waits 0 s and they 3 s (instead of minutes), keeping that order.
    shipped = {rule.get("alert"): seconds(rule.get("for", "0s")) for g in rules["groups"] for rule in g["rules"]}
    assert all(shipped["AzureStackStampUpdateInProgress"] < shipped[name] for name in CAUSED_BY_UPDATES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "0s" if rule["alert"] == "AzureStackStampUpdateInProgress" else "3s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    write_alertmanager_config(tmp_path, webhook)

    processes = []
    try:
        am_url, am = start_alertmanager(alertmanager, tmp_path)
        processes.append(am)
        prom_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am_url.removeprefix("http://")]}]}]},
            "scrape_configs": [{"job_name": "azurestack", "static_configs": [{"targets": [target]}]}],
        }
        prom_url, prom = start_prometheus(prometheus, tmp_path, prom_config)
        processes.append(prom)
        yield webhook, am_url, prom_url
    finally:
        for process in processes:
            stop(process)
        webhook.server.shutdown()


def inhibition(am_url: str, installing: str, names: set[str]) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """Alertmanager's alerts of ``names``: (state, inhibited by), "the update" standing for the
    update-in-progress alert of stamp ``installing``."""
    alerts = am_alerts(am_url)
    sources = [
        a["fingerprint"]
        for a in alerts
        if a["labels"]["alertname"] == "AzureStackStampUpdateInProgress" and a["labels"]["stamp"] == installing
    ]
    return {
        (a["labels"]["alertname"], a["labels"]["stamp"]): (
            a["status"]["state"],
            ["the update" if fp in sources else fp for fp in a["status"]["inhibitedBy"]],
        )
        for a in alerts
        if a["labels"]["alertname"] in names
    }


def test_an_update_in_progress_holds_back_only_what_it_causes_on_its_own_stamp(tmp_path):
    with stamp_metrics() as (target, show), pipeline(tmp_path, target) as (webhook, am_url, prom_url):
        show(troubled=False, a_installing=True)  # the update starts first
        # 1. A's update is information: it reaches the info receiver (which the shipped
        #    configuration leaves without a notifier), never the pager or the tickets.
        path, _, info = webhook.wait("firing", "AzureStackStampUpdateInProgress", A, target)
        assert path == "/azurestack-info" and info["labels"]["severity"] == "info"
        assert info["annotations"]["runbook_url"].endswith("#azurestackstampupdateinprogress")

        # 2. Trouble on both stamps. B's is notified, all of it, through the usual receivers;
        #    of A's, only what the update does not explain.
        show(troubled=True, a_installing=True)
        for alertname in sorted(CAUSED_BY_UPDATES | {"AzureStackStampOutOfSupport", "AzureStackStampUpdateFailed"}):
            webhook.wait("firing", alertname, B, target)
        for alertname in sorted(ALWAYS_NOTIFIED):
            webhook.wait("firing", alertname, A, target)
        assert webhook.find("firing", "AzureStackStampUpdateInProgress", B) is None
        path, _, page = webhook.wait("firing", "AzureStackStampCriticalHealthAlert", B, target)
        assert path == "/azurestack-pager"
        assert "(FRP.Heartbeat.PhysicalNode)" in page["annotations"]["description"]
        _, _, blocked = webhook.wait("firing", "AzureStackStampUpdateBlocked", B, target)
        assert (
            "critical infrastructure alerts are active; the last update run failed"
            in (blocked["annotations"]["description"])
        )

        # Alertmanager has A's three, inhibited by A's update alone; B's are active.
        def inhibited() -> dict[tuple[str, str], tuple[str, list[str]]]:
            return inhibition(am_url, A, CAUSED_BY_UPDATES | ALWAYS_NOTIFIED)

        expected = {
            **{(name, A): ("suppressed", ["the update"]) for name in CAUSED_BY_UPDATES},
            **{(name, B): ("active", []) for name in CAUSED_BY_UPDATES},
            **{(name, A): ("active", []) for name in ALWAYS_NOTIFIED},
        }
        expected[("AzureStackStampOutOfSupport", B)] = ("active", [])
        expected[("AzureStackStampUpdateFailed", B)] = ("active", [])
        expected[("AzureStackStampCertificateExpiring", B)] = ("active", [])
        assert eventually(inhibited, expected, timeout=20) == expected
        # Two more group intervals (1 s) later, A's three have still never been sent.
        time.sleep(2)
        for alertname in CAUSED_BY_UPDATES:
            assert webhook.find("firing", alertname, A) is None, alertname
        assert inhibited() == expected

        # 3. The update ends with the trouble still there: A's three notify now, so only the
        #    inhibition held them back.
        show(troubled=True, a_installing=False)
        path, _, _ = webhook.wait("resolved", "AzureStackStampUpdateInProgress", A, target)
        assert path == "/azurestack-info"
        for alertname in sorted(CAUSED_BY_UPDATES):
            webhook.wait("firing", alertname, A, target)
        firing = prom_query(prom_url, 'ALERTS{alertstate="firing",alertname="AzureStackStampUpdateInProgress"}')
        assert firing == []

        # Nothing of severity info ever reached the pager or the tickets.
        with webhook.lock:
            paged = [
                (path, alert["labels"]["alertname"])
                for path, payload in webhook.received
                for alert in payload["alerts"]
                if path != "/azurestack-info" and alert["labels"].get("severity") == "info"
            ]
            info_elsewhere = [
                path
                for path, payload in webhook.received
                for alert in payload["alerts"]
                if path == "/azurestack-info" and alert["labels"].get("severity") != "info"
            ]
        assert paged == [] and info_elsewhere == []


def test_the_rules_read_the_exporters_own_health_and_readiness_metrics(tmp_path, fake, pki):
    """Two fake admin stamps out of support: A with an active critical alert and an expiring
    certificate, B installing its next update. Prometheus, scraping the exporter, fires exactly
    the health and readiness alerts this story gives, described from the exporter's series."""
    prometheus = require_tool("prometheus")
    a = FakeStamp(A, secret=SECRET, alerts=[critical()[0], *certificate_expiring()])
    b = FakeStamp(
        B,
        secret=SECRET,
        state="UpdateInProgress",
        updates=[Update("1.2408.1.50", "Installed"), Update("1.2501.0.21", "Installing")],
    )
    stamps = [admin_stamp(fake, stamp, pki) for stamp in (a, b)]
    (tmp_path / "exporter.yml").write_text(yaml.safe_dump({"refresh_interval": "1s", "stamps": stamps}))
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))

    process = None
    try:
        with exporter_process(tmp_path / "exporter.yml", tmp_path=tmp_path) as exporter:
            prom_config = {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "rules.yml")],
                "scrape_configs": [
                    {"job_name": "azurestack", "static_configs": [{"targets": [exporter.url.removeprefix("http://")]}]}
                ],
            }
            prom_url, process = start_prometheus(prometheus, tmp_path, prom_config)

            def firing() -> dict[tuple[str, str], str]:
                status, _, body = http_get(f"{prom_url}/api/v1/alerts")
                assert status == 200, body
                return {
                    (alert["labels"]["alertname"], alert["labels"]["stamp"]): alert["annotations"]["description"]
                    for alert in json.loads(body)["data"]["alerts"]
                    if alert["state"] == "firing" and alert["labels"]["alertname"] in CAUSED_BY_UPDATES | HEALTH
                }

            expected = {
                ("AzureStackStampCriticalHealthAlert", A),
                ("AzureStackStampCertificateExpiring", A),
                ("AzureStackStampUpdateBlocked", A),
                ("AzureStackStampUpdateBlocked", B),
                ("AzureStackStampUpdateInProgress", B),
            }
            seen = eventually(lambda: set(firing()), expected, timeout=30)
            assert seen == expected
            described = firing()
            assert (
                "(StorageService.Share.is.inaccessible-Critical)"
                in (described[("AzureStackStampCriticalHealthAlert", A)])
            )
            assert (
                "1 active certificate-expiration alert (CertificateExpiration.ExternalCert.Warning)"
                in (described[("AzureStackStampCertificateExpiring", A)])
            )
            assert (
                "cannot start: critical infrastructure alerts are active"
                in (described[("AzureStackStampUpdateBlocked", A)])
            )
            assert "cannot start: an update is installing." in described[("AzureStackStampUpdateBlocked", B)]
            assert described[("AzureStackStampUpdateInProgress", B)].startswith(f"Stamp {B} is installing an update")
    finally:
        if process is not None:
            stop(process)


def test_a_stamp_installing_an_update_holds_back_its_own_pages_as_the_exporter_reads_it(tmp_path, fake, pki):
    """The whole chain on the exporter's own series: fake stamps sending the recorded bodies'
    shapes -> the exporter -> Prometheus -> Alertmanager. A installs its next update, B does not;
    then both raise a critical infrastructure alert, and then both stop answering (as A's admin
    endpoint does while it restarts during the update). A's collection, health and blocked-update
    alerts are held back by its own update; B's all notify; A's support status still does."""
    a = FakeStamp(
        A,
        secret=SECRET,
        state="UpdateInProgress",
        updates=[Update("1.2408.1.50", "Installed"), Update("1.2501.0.21", "Installing")],
    )
    b = FakeStamp(B, secret=SECRET)
    stamps = [admin_stamp(fake, stamp, pki, timeout="1s") for stamp in (a, b)]
    (tmp_path / "exporter.yml").write_text(yaml.safe_dump({"refresh_interval": "1s", "stamps": stamps}))
    with exporter_process(tmp_path / "exporter.yml", tmp_path=tmp_path) as exporter:
        target = exporter.url.removeprefix("http://")
        with pipeline(tmp_path, target) as (webhook, am_url, _):
            # The update is seen first, as it is in the field (its `for` is the shortest).
            path, _, _ = webhook.wait("firing", "AzureStackStampUpdateInProgress", A, target)
            assert path == "/azurestack-info"
            for stamp in (a, b):
                stamp.alerts = critical()
            for name in ("AzureStackStampCriticalHealthAlert", "AzureStackStampUpdateBlocked"):
                webhook.wait("firing", name, B, target)
            for stamp in (a, b):
                stamp.faults.status = 503  # the admin endpoint is away
            webhook.wait("firing", "AzureStackStampCollectionFailing", B, target)
            webhook.wait("firing", "AzureStackStampOutOfSupport", A, target)  # never held back

            names = CAUSED_BY_UPDATES | {"AzureStackStampOutOfSupport"}
            expected = {
                **{(name, A): ("suppressed", ["the update"]) for name in CAUSED_BY_UPDATES},
                **{(name, B): ("active", []) for name in names},
                ("AzureStackStampOutOfSupport", A): ("active", []),
            }
            assert eventually(lambda: inhibition(am_url, A, names), expected, timeout=20) == expected
            time.sleep(2)  # two more group intervals: A's three have still never been sent
            for name in CAUSED_BY_UPDATES:
                assert webhook.find("firing", name, A) is None, name
            assert webhook.find("firing", "AzureStackStampUpdateInProgress", B) is None
