"""Health and readiness end to end: the installed exporter reads the fake's Update and Health
providers (recorded bodies' shapes) and every view says the same: metrics, JSON, status page, check."""

from __future__ import annotations

import json

import fake_azurestack as fa
from conftest import SECRET, exporter_process, http_get, run_cli
from fake_azurestack import FakeStamp, Update
from test_admin_e2e import config_for, metrics, sample, stamps_json, wait_for


def stamps() -> dict[str, FakeStamp]:
    """Five stamps on 2408 with its latest hotfix, each offered 2501 (1.2501.0.21)."""

    def stamp(name: str, **kwargs: object) -> FakeStamp:
        return FakeStamp(name, secret=SECRET, **kwargs)  # type: ignore[arg-type]

    return {
        s.name: s
        for s in (
            stamp("ready"),
            stamp("critical", alerts=fa.critical()),
            stamp(
                "oem-old",
                current_oem_version="2.2.1907.2",
                updates=[Update("1.2408.1.50", "Installed"), Update("1.2501.0.21", "Ready", min_oem_version="2.4.0.0")],
            ),
            stamp(
                "installing",
                state="UpdateInProgress",
                alerts=fa.during_update(),
                updates=[Update("1.2408.1.50", "Installed"), Update("1.2501.0.21", "Installing")],
            ),
            stamp("no-health", alerts=fa.critical()),
        )
    }


def test_health_and_readiness_in_every_view_and_a_broken_health_provider_stays_confined(tmp_path, fake, pki):
    fleet = stamps()
    fleet["no-health"].health_faults.not_found = True  # the provider is not there: 404
    config = config_for(tmp_path, fake, pki, list(fleet.values()), static=False, interval="1s")
    with exporter_process(config, tmp_path=tmp_path) as running:
        body = metrics(running.url)
        for name in fleet:
            assert sample(body, "azurestack_stamp_up", stamp=name) == 1, name
            assert sample(body, "azurestack_stamp_versions_behind", stamp=name) is not None, name
        ready = {name: sample(body, "azurestack_stamp_update_ready", stamp=name) for name in fleet}
        assert ready == {"ready": 1, "critical": 0, "oem-old": 0, "installing": 0, "no-health": None}
        blocked = {
            line.split('reason="')[1].split('"')[0] + "@" + line.split('stamp="')[1].split('"')[0]
            for line in body.splitlines()
            if line.startswith("azurestack_stamp_update_blocked{")
        }
        assert blocked == {"critical_alerts@critical", "oem_prerequisite@oem-old", "update_in_progress@installing"}
        assert sample(body, "azurestack_stamp_alerts", stamp="critical", severity="critical") == 1
        assert sample(body, "azurestack_stamp_alerts", stamp="critical", severity="warning") == 0
        assert sample(body, "azurestack_stamp_alerts", stamp="ready", severity="critical") == 0
        fault = "StorageService.Share.is.inaccessible-Critical"
        assert sample(body, "azurestack_stamp_alert_active", stamp="critical", fault_type=fault) == 1
        assert sample(body, "azurestack_stamp_update_in_progress", stamp="installing") == 1
        assert sample(body, "azurestack_stamp_update_in_progress", stamp="ready") == 0
        # The Health provider's 404 is its own: the stamp is up, its health down, its alerts unknown.
        assert sample(body, "azurestack_stamp_health_up", stamp="no-health") == 0
        assert sample(body, "azurestack_stamp_health_up", stamp="critical") == 1
        assert sample(body, "azurestack_stamp_alerts", stamp="no-health", severity="critical") is None
        assert sample(body, "azurestack_stamp_collection_errors_total", stamp="no-health", reason="http") == 0

        report = stamps_json(running.url)
        assert report["critical"]["health"]["critical"] == 1 and report["critical"]["health"]["warning"] == 0
        assert (report["critical"]["update_ready"], report["critical"]["blocked_by"]) == (False, ["critical_alerts"])
        assert (report["ready"]["update_ready"], report["ready"]["blocked_by"]) == (True, [])
        assert report["oem-old"]["readiness"]["why"] == [
            "needs OEM package 2.4.0.0 or later (the stamp runs 2.2.1907.2)"
        ]
        assert report["no-health"]["update_ready"] is None and report["no-health"]["health"]["up"] is False
        assert "404" in report["no-health"]["health"]["error"]

        status, _, page = http_get(running.url + "/")
        text = page.decode()
        assert status == 200
        assert "needs OEM package 2.4.0.0 or later (the stamp runs 2.2.1907.2)" in text
        assert "update installing" in text and "ready to install" in text
        assert "1 critical alert" in text and "azurestackstampupdateblocked" in text

        # Time passes: the critical alert is closed on the stamp; the next refresh says it can update.
        fleet["critical"].alerts = fa.healthy()
        wait_for(
            lambda: sample(metrics(running.url), "azurestack_stamp_update_ready", stamp="critical") == 1,
            what="the stamp ready once its alert is closed",
        )
        after = metrics(running.url)
        assert sample(after, "azurestack_stamp_update_blocked", stamp="critical", reason="critical_alerts") is None
        assert sample(after, "azurestack_stamp_alerts", stamp="critical", severity="critical") == 0

    # check reads each stamp once and carries the same verdicts.
    result = run_cli("check", f"--config.file={config}", "--output=json")
    checked = {s["stamp"]: s for s in json.loads(result.stdout)["stamps"]}
    assert checked["oem-old"]["blocked_by"] == ["oem_prerequisite"]
    assert checked["installing"]["update_in_progress"] is True
    table = run_cli("check", f"--config.file={config}").stdout
    assert "oem-old: health: no active alerts; 2501 (1.2501.0.21) blocked: needs OEM package 2.4.0.0" in table
