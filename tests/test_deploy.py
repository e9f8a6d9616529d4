"""Shipped artefacts: alerting rules (promtool), Alertmanager example (amtool), Grafana dashboard."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from conftest import ROOT, require_tool

RULES = ROOT / "deploy" / "prometheus" / "azurestack-exporter.rules.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.test.yml"))
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
DASHBOARD = ROOT / "grafana" / "azurestack-servicing.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SPEC_ALERTS = {
    "AzureStackStampOutOfSupport": "critical",
    "AzureStackStampSupportEndingSoon": "warning",
    "AzureStackStampHotfixOverdue": "warning",
    "AzureStackStampUpdateFailed": "critical",
    "AzureStackStampCollectionFailing": "warning",
    "AzureStackCatalogStale": "warning",
    "AzureStackStampCriticalHealthAlert": "critical",
    "AzureStackStampCertificateExpiring": "warning",
    "AzureStackStampUpdateBlocked": "warning",
    "AzureStackStampUpdateInProgress": "info",
}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)


def alerts() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


# ---------------------------------------------------------------- rules


def test_promtool_check_rules():
    result = run(require_tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 16 rules found" in result.stdout


def test_promtool_rule_unit_tests_pass():
    assert RULE_TESTS, "no rule unit tests"
    result = run(require_tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests_can_fail(tmp_path):
    """A rule that fires together with OutOfSupport must make the unit tests fail."""
    broken = tmp_path / "azurestack-exporter.rules.yml"
    text = RULES.read_text()
    assert "\n          and azurestack_stamp_in_support == 1\n" in text
    broken.write_text(text.replace("\n          and azurestack_stamp_in_support == 1\n", "\n"))
    tests = tmp_path / "tests"
    tests.mkdir()
    for test in RULE_TESTS:
        (tests / test.name).write_text(test.read_text())
    result = run(require_tool("promtool"), "test", "rules", *(str(tests / t.name) for t in RULE_TESTS))
    assert result.returncode != 0
    assert "AzureStackStampSupportEndingSoon" in result.stdout + result.stderr


def test_every_spec_alert_exists_with_severity_and_annotations():
    found = {}
    for rule in alerts():
        found[rule["alert"]] = rule
        assert set(rule["annotations"]) >= {"summary", "description", "runbook_url"}, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        for value in rule["labels"].values():
            assert "{{" not in str(value), f"{rule['alert']}: query values in labels"
        assert rule.get("for"), f"{rule['alert']} has no 'for'"
    for name, severity in SPEC_ALERTS.items():
        assert found[name]["labels"]["severity"] == severity


def test_runbook_urls_point_at_existing_sections():
    headings = {
        re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("https://") and "/docs/runbooks.md#" in url
        assert url.split("#", 1)[1] in headings, url


# ---------------------------------------------------------------- alertmanager


def test_amtool_check_config():
    result = run(require_tool("amtool"), "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_pages_on_critical_and_inhibits_ending_soon():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    routes = {tuple(r["matchers"]): r["receiver"] for r in config["route"]["routes"]}
    assert routes[('severity="critical"',)] == "azurestack-pager"
    assert "stamp" in config["route"]["group_by"]
    inhibit = config["inhibit_rules"][0]
    assert inhibit["source_matchers"] == ['alertname="AzureStackStampOutOfSupport"']
    assert inhibit["target_matchers"] == ['alertname="AzureStackStampSupportEndingSoon"']
    assert inhibit["equal"] == ["job", "instance", "stamp"]


def test_an_update_in_progress_inhibits_only_what_it_causes_on_the_same_stamp():
    """SPEC §10: the same stamp's CollectionFailing, CriticalHealthAlert and UpdateBlocked; never the
    update's own failures or the support status (tests/test_inhibition_e2e.py runs it for real)."""
    config = yaml.safe_load(ALERTMANAGER.read_text())
    source = ['alertname="AzureStackStampUpdateInProgress"']
    [rule] = [r for r in config["inhibit_rules"] if r["source_matchers"] == source]
    assert rule["equal"] == ["job", "instance", "stamp"]
    [matcher] = rule["target_matchers"]
    assert matcher.startswith('alertname=~"') and matcher.endswith('"')
    targets = set(matcher.removeprefix('alertname=~"').removesuffix('"').split("|"))
    assert targets == {
        "AzureStackStampCollectionFailing",
        "AzureStackStampCriticalHealthAlert",
        "AzureStackStampUpdateBlocked",
    }
    names = {rule["alert"] for rule in alerts()}
    assert targets <= names


def test_info_alerts_have_a_receiver_that_notifies_nobody():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    [info] = [r for r in config["route"]["routes"] if r["matchers"] == ['severity="info"']]
    assert not info.get("continue")
    [receiver] = [r for r in config["receivers"] if r["name"] == info["receiver"]]
    assert [key for key in receiver if key.endswith("_configs")] == []


def test_amtool_routes_alerts_as_documented():
    amtool = require_tool("amtool")
    for labels, receiver in [
        (["alertname=AzureStackStampOutOfSupport", "severity=critical", "stamp=a"], "azurestack-pager"),
        (["alertname=AzureStackStampHotfixOverdue", "severity=warning", "stamp=a"], "azurestack-tickets"),
        (["alertname=AzureStackStampCriticalHealthAlert", "severity=critical", "stamp=a"], "azurestack-pager"),
        (["alertname=AzureStackStampCertificateExpiring", "severity=warning", "stamp=a"], "azurestack-tickets"),
        (["alertname=AzureStackStampUpdateBlocked", "severity=warning", "stamp=a"], "azurestack-tickets"),
        (["alertname=AzureStackStampUpdateInProgress", "severity=info", "stamp=a"], "azurestack-info"),
    ]:
        result = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == receiver


# ---------------------------------------------------------------- dashboard


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_identity(dashboard):
    assert dashboard["uid"] == "azurestack-servicing"
    assert dashboard["id"] is None
    assert dashboard["title"]
    # Import asks for the data source; the panels still use the variable, never a fixed uid.
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
    assert "${DS_PROMETHEUS}" not in json.dumps(dashboard["panels"])


def test_dashboard_variables(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    stamp = variables["stamp"]
    assert stamp["type"] == "query"
    assert stamp["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert stamp["includeAll"] and stamp["multi"] and stamp["allValue"] == ".*"
    assert stamp["query"]["query"] == "label_values(azurestack_stamp_info{${labels}}, stamp)"
    assert variables["labels"]["type"] == "textbox" and variables["labels"]["query"] == 'stamp=~".+"'


def test_dashboard_panels_have_unique_ids_and_use_the_datasource_variable(dashboard):
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":  # a heading: no query of its own
            assert "targets" not in panel and "datasource" not in panel, panel["title"]
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert target["expr"].strip()
    text = DASHBOARD.read_text()
    uids = set(re.findall(r'"uid":\s*"([^"]*)"', text))
    assert uids <= {"azurestack-servicing", "${datasource}", "-- Grafana --"}, uids


def test_dashboard_panels_do_not_overlap(dashboard):
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))


def test_dashboard_covers_the_fleet_view(dashboard):
    titles = {p["title"] for p in dashboard["panels"]}
    assert {
        "Out of support",
        "Support ending soon",
        "In support",
        "Fleet",
        "Versions behind over time",
        "Update state",
        "Collection health",
        "Catalog sources",
        "Known releases",
    } <= titles
    stamp_panels = [
        p for p in dashboard["panels"] if any("azurestack_stamp_" in t["expr"] for t in p.get("targets", []))
    ]
    for panel in stamp_panels:
        for target in panel["targets"]:
            if "azurestack_stamp_" in target["expr"]:
                assert 'stamp=~"$stamp"' in target["expr"], panel["title"]
