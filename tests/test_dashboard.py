"""The dashboard's filters: every variable filters every per-stamp panel.

Statically, every per-stamp query references each filter variable: ``$stamp`` on each of its
per-stamp series, the stamp-label selector through a join on ``azurestack_stamp_info``; the
panels exempt from filtering are those about release knowledge, and they say so.

Behaviourally, against a real Prometheus scraping two real exporters: each query is run with
Grafana's substitution of concrete values (``site="ams"``, one stamp, several stamps, both
filters at once) and must give exactly what the same query gives over the series of the stamps
that the configurations say match (nothing of another stamp), and with the defaults (All)
what it gives over every stamp. The two exporters know stamps of the same name with different
labels (a staging exporter beside the production one): a stamp is matched as its own
exporter labels it. The admin stamps are in every state the readiness row shows (installing,
ready, critical alerts, blocked for two reasons, health unread, not collected), so no count
there is 0 by default, and its counts and joined reasons are checked where they are known.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Iterable, Iterator

import fake_azurestack as fa
import yaml
from conftest import EXAMPLES, ROOT, SECRET, admin_stamp, eventually, exporter_process, http_get, require_tool
from fake_azurestack import FakeStamp, Run, Update
from processes import start_prometheus, stop

DASHBOARD = ROOT / "grafana" / "azurestack-servicing.json"
DOCS = ROOT / "docs" / "alerting.md"
# How the stamp-label selector reaches a per-stamp query: only the series of stamps whose
# azurestack_stamp_info, from the same exporter, matches the selector.
JOIN = "and on(job, instance, stamp) azurestack_stamp_info{${labels}}"
EXEMPT_NOTE = "Not filtered by stamp or stamp labels"
PER_STAMP = re.compile(r"\bazurestack_stamp_\w+")
# A per-stamp selector: metric name, optional matchers, optional range.
SELECTOR = re.compile(r"\b(azurestack_stamp_\w+)(\{[^{}]*\})?(\[[^\]]*\])?")
# A variable reference; `$1` is label_replace's capture group, which Grafana leaves as it is.
REFERENCE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$([A-Za-z_]\w*)|\[\[(\w+)\]\]")
READINESS_ROW = "Health and update readiness"
BUILTINS = {"__rate_interval": "1m", "__interval": "1s", "__range": "5m"}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def panels(dashboard: dict) -> list[dict]:
    """The panels with queries: every one but the rows (which only head the panels below them)."""
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def targets(dashboard: dict) -> Iterator[tuple[dict, dict]]:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            yield panel, target


def per_stamp_targets(dashboard: dict) -> list[tuple[str, str]]:
    """(name, expression) of every query that reads per-stamp series."""
    return [
        (f"{panel['title']} [{target['refId']}]", target["expr"])
        for panel, target in targets(dashboard)
        if PER_STAMP.search(target["expr"])
    ]


def referenced(expr: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in REFERENCE.finditer(expr)}


# ---------------------------------------------------------------- static


def test_the_filter_variables_are_the_stamp_label_selector_and_the_stamp_list():
    """Every variable but the data source is a filter this file knows how to substitute."""
    found = variables(load())
    assert set(found) - {"datasource"} == {"labels", "stamp"}, "a new variable: teach this test what it selects"
    assert found["labels"]["type"] == "textbox" and not found["labels"].get("multi")
    stamp = found["stamp"]
    assert stamp["multi"] and stamp["includeAll"] and stamp["allValue"] == ".*"
    # The stamp list follows the label selector: its All means the stamps the selector leaves.
    assert referenced(stamp["query"]["query"]) == {"labels"}


def test_every_per_stamp_query_references_every_filter():
    dashboard = load()
    filters = set(variables(dashboard)) - {"datasource"}
    missing = []
    for name, expr in per_stamp_targets(dashboard):
        if referenced(expr) - set(BUILTINS) != filters:
            missing.append((name, sorted(filters - referenced(expr))))
        # $stamp on each per-stamp series, the label selector through the join on the stamp's info.
        without_join = expr.replace(JOIN, "")
        for match in SELECTOR.finditer(without_join):
            if 'stamp=~"$stamp"' not in (match.group(2) or ""):
                missing.append((name, f"{match.group(0)} without $stamp"))
        if JOIN not in expr or "labels" in referenced(without_join):
            missing.append((name, f"the label selector other than through {JOIN!r}"))
    assert missing == []


def test_only_release_knowledge_is_exempt_and_says_so():
    """A panel that reads no per-stamp series shows the release catalog, which belongs to the
    exporters: with /probe nothing links a stamp to the exporter whose catalog judged it."""
    dashboard = load()
    exempt = [p for p in panels(dashboard) if not any(PER_STAMP.search(t["expr"]) for t in p["targets"])]
    assert exempt, "no exempt panel: drop this test's exemption"
    section = " ".join(DOCS.read_text().split("## Grafana dashboard", 1)[1].split())
    for panel in exempt:
        for target in panel["targets"]:
            metrics = set(re.findall(r"\bazurestack_\w+", target["expr"]))
            assert metrics and all(m.startswith(("azurestack_catalog_", "azurestack_release_")) for m in metrics), (
                panel["title"],
                metrics,
            )
            assert not referenced(target["expr"]) & {"labels", "stamp"}, panel["title"]
        assert EXEMPT_NOTE in panel["description"], panel["title"]
        assert f"*{panel['title']}*" in section, f"docs/alerting.md does not name {panel['title']!r} as unfiltered"
    for panel in panels(dashboard):
        if panel not in exempt:
            assert EXEMPT_NOTE not in panel["description"], panel["title"]


# The readiness row's panels: Grafana puts a row's panels below it, up to the next row.
READINESS_PANELS = {
    "Must update, can start",
    "Must update, blocked",
    "Installing now",
    "Critical alerts",
    "Certificates expiring",
    "Health read failing",
    "Update readiness (admin stamps)",
    "Active alerts by fault type",
    "Active alerts over time",
}
READINESS_STATS = range(20, 26)  # their ids
READINESS_METRICS = re.compile(
    r"\bazurestack_stamp_(health_up|alerts|alert_active|update_in_progress|update_ready|update_blocked)\b"
)


def test_the_readiness_row_heads_the_panels_of_health_and_update_readiness():
    """Not collapsed: a collapsed row keeps its panels inside it, out of sight of the checks here."""
    dashboard = load()
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == [READINESS_ROW]
    row = rows[0]
    assert row["collapsed"] is False and row["panels"] == [] and "targets" not in row
    assert row["gridPos"] == {"x": 0, "y": row["gridPos"]["y"], "w": 24, "h": 1}
    below = {p["title"] for p in panels(dashboard) if p["gridPos"]["y"] > row["gridPos"]["y"]}
    assert below == READINESS_PANELS
    for panel in panels(dashboard):
        reads = any(READINESS_METRICS.search(t["expr"]) for t in panel["targets"])
        assert reads == (panel["title"] in READINESS_PANELS), panel["title"]
        assert panel["description"].strip(), panel["title"]


# ---------------------------------------------------------------- behaviour


def grafana_regex_escape(value: str) -> str:
    """Grafana's escaping of a multi-value or All variable's value for a Prometheus regex."""
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def interpolate(expr: str, dashboard: dict, stamps: list[str] | None, labels: str | None) -> str:
    """The query Grafana sends with these values (None: the variable's All or default)."""
    found = variables(dashboard)
    if stamps is None:
        stamp_value = found["stamp"]["allValue"]
    elif len(stamps) == 1:
        stamp_value = grafana_regex_escape(stamps[0])
    else:
        stamp_value = "(" + "|".join(grafana_regex_escape(s) for s in stamps) + ")"
    if labels is None:
        labels = found["labels"]["query"]
    # A textbox is neither multi-value nor All: Grafana escapes backslashes and single quotes only.
    values = {"stamp": stamp_value, "labels": labels.replace("\\", "\\\\").replace("'", "\\\\'"), **BUILTINS}

    def value(match: re.Match[str]) -> str:
        return values[next(g for g in match.groups() if g)]

    result = REFERENCE.sub(value, expr)
    assert not REFERENCE.search(result), result
    return result


def matches(selector: str, labels: dict[str, str]) -> bool:
    """Prometheus' matching of a selector's matchers against a stamp's labels (absent = "")."""
    matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector)
    assert matchers, selector
    for name, op, expected in matchers:
        actual = labels.get(name, "")
        ok = {
            "=": actual == expected,
            "!=": actual != expected,
            "=~": re.fullmatch(expected, actual) is not None,
            "!~": re.fullmatch(expected, actual) is None,
        }[op]
        if not ok:
            return False
    return True


def only(pairs: Iterable[tuple[str, str]]) -> str:
    """A vector with one series per (instance, stamp), built from literals, not from the exporters."""
    parts = [
        f'label_replace(label_replace(vector(1), "instance", "{instance}", "", ""), "stamp", "{stamp}", "", "")'
        for instance, stamp in sorted(pairs)
    ]
    return "(" + " or ".join(parts) + ")" if parts else "(vector(1) < 0)"


def over(expr: str, dashboard: dict, pairs: Iterable[tuple[str, str]]) -> str:
    """The query without its filters (the label join taken out, $stamp at All), evaluated over
    the series of these stamps only: each per-stamp selector, or the range function reading
    it, keeps only their series."""
    keep = f"and on(instance, stamp) {only(pairs)}"
    expr = interpolate(expr.replace(f" {JOIN}", ""), dashboard, None, None)
    expr = re.sub(r"\b\w+\((azurestack_stamp_\w+(?:\{[^{}]*\})?\[[^\]]*\])\)", lambda m: f"({m.group(0)} {keep})", expr)

    def restrict(m: re.Match[str]) -> str:
        return m.group(0) if m.group(3) else f"({m.group(0)} {keep})"

    return SELECTOR.sub(restrict, expr)


# Exporter A: the demo fleet (site and environment labels), admin stamps with update runs and a
# failing one, and a stamp without labels whose name needs regex escaping. Exporter B knows
# two of the same names, labelled otherwise or not at all.
ADMIN_LABELS = {
    "west": {"site": "ams", "environment": "production"},
    "north": {"site": "fra", "environment": "dr"},
    "south": {"site": "lon", "environment": "lab"},
    "east": {"site": "fra", "environment": "production"},
    "oem-old": {"site": "ams", "environment": "lab"},
}
OTHER_STAMPS = [
    {"name": "ams-prod", "version": "1.2601.1.14", "labels": {"site": "fra", "environment": "lab"}},
    {"name": "dub-lab", "version": "1.2408.1.50"},
]
# (stamp values, label selector); None: All / the default.
CASES = [
    *[(None, f'site="{site}"') for site in ("ams", "fra", "lon", "dub")],
    *[(None, f'environment="{env}"') for env in ("production", "dr", "lab")],
    (None, 'environment=~"prod.*"'),
    (None, 'site!="ams"'),
    (None, 'site="ams", environment="production"'),
    (["fra-prod"], None),
    (["west"], None),
    (["osl.lab"], None),
    (["ams-prod", "north", "south"], None),
    (["ams-prod", "fra-prod", "west"], 'site="ams"'),
]


def hours_ago(hours: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - hours * 3600))


def test_every_filter_value_leaves_exactly_its_stamps_in_every_per_stamp_query(tmp_path, fake, pki):
    prometheus = require_tool("prometheus")
    dashboard = load()

    # west installs 2601 past its overdue 2506 hotfix; north, at N-2, can update (a certificate
    # warning does not block); east (N-3) cannot for a critical alert, oem-old (N-3) for its OEM
    # package and a download, its alerts unread; south is never read.
    west = FakeStamp(
        "west",
        secret=SECRET,
        current_version="1.2506.2.24",
        state="UpdateInProgress",
        alerts=fa.during_update(),
        updates=[Update("1.2506.2.24", "Installed"), Update("1.2601.0.4", "Installing")],
        runs={"1.2601.0.4": [Run("InProgress", hours_ago(30), "PT1H")]},
    )
    north = FakeStamp(
        "north",
        secret=SECRET,
        current_version="1.2501.1.47",
        alerts=fa.certificate_expiring(),
        updates=[Update("1.2501.1.47", "Installed"), Update("1.2506.0.15")],
        runs={"1.2501.1.47": [Run("Succeeded", hours_ago(900), "PT12H"), Run("Succeeded", hours_ago(400), "PT13H")]},
    )
    south = FakeStamp("south", secret=SECRET)
    south.faults.status = 500  # never read: up 0, collection errors counted
    east = FakeStamp("east", secret=SECRET, alerts=fa.critical())
    oem_old = FakeStamp(
        "oem-old",
        secret=SECRET,
        current_oem_version="2.2.1907.2",
        updates=[Update("1.2408.1.50", "Installed"), Update("1.2501.0.21", "Downloading", min_oem_version="2.4.0.0")],
    )
    oem_old.health_faults.not_found = True
    demo = yaml.safe_load((EXAMPLES / "demo.yml").read_text())
    admin = [
        {**admin_stamp(fake, stamp, pki, timeout="2s"), "labels": ADMIN_LABELS[stamp.name]}
        for stamp in (west, north, south, east, oem_old)
    ]
    unlabelled = {"name": "osl.lab", "version": "1.2506.0.15"}
    config_a = {**demo, "refresh_interval": "1s", "stamps": [*demo["stamps"], *admin, unlabelled]}
    config_b = {"refresh_interval": "1s", "policy": {"supported_releases": 4}, "stamps": OTHER_STAMPS}
    (tmp_path / "a.yml").write_text(yaml.safe_dump(config_a))
    (tmp_path / "b.yml").write_text(yaml.safe_dump(config_b))

    process = None
    try:
        with (
            exporter_process(tmp_path / "a.yml", tmp_path=tmp_path) as exporter_a,
            exporter_process(tmp_path / "b.yml", tmp_path=tmp_path) as exporter_b,
        ):
            a, b = exporter_a.url.removeprefix("http://"), exporter_b.url.removeprefix("http://")
            # What each stamp's info carries that a selector here may name: its labels and name.
            fleet = {(a, s["name"]): {**s.get("labels", {}), "stamp": s["name"]} for s in config_a["stamps"]}
            fleet |= {(b, s["name"]): {**s.get("labels", {}), "stamp": s["name"]} for s in config_b["stamps"]}
            named = {key: f"{key[1]}@{'A' if key[0] == a else 'B'}" for key in fleet}
            prom_config = {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [{"job_name": "azurestack", "static_configs": [{"targets": [a, b]}]}],
            }
            base, process = start_prometheus(prometheus, tmp_path, prom_config)
            queries = per_stamp_targets(dashboard)
            at = {"time": 0.0}

            def query(expr: str) -> set[tuple[tuple[tuple[str, str], ...], str]]:
                params = urllib.parse.urlencode({"query": expr, "time": f"{at['time']:.3f}"})
                status, _, body = http_get(f"{base}/api/v1/query?{params}")
                data = json.loads(body)
                assert status == 200 and data["status"] == "success", (expr, data)
                return {(tuple(sorted(r["metric"].items())), r["value"][1]) for r in data["data"]["result"]}

            def not_ready() -> list[str]:
                """Queries without data over the whole fleet; the fleet's info series not all there."""
                # Seconds in the past: no scrape still being written can change what is queried.
                at["time"] = time.time() - 3
                waiting = [name for name, expr in queries if not query(over(expr, dashboard, fleet))]
                info = {(dict(m)["instance"], dict(m)["stamp"]) for m, _ in query("azurestack_stamp_info")}
                return waiting + ([] if info == set(fleet) else [f"info of {set(fleet) - info}"])

            # Collection errors over $__rate_interval need two scrapes after the first failures.
            assert eventually(not_ready, [], timeout=20, interval=0.5) == []

            # The stamp list follows the label selector, across both exporters.
            stamp_query = variables(dashboard)["stamp"]["query"]["query"]
            for _, selector in CASES:
                series = re.fullmatch(
                    r"label_values\((.*), stamp\)", interpolate(stamp_query, dashboard, None, selector)
                )
                assert series
                match = urllib.parse.quote(series.group(1))
                _, _, body = http_get(f"{base}/api/v1/label/stamp/values?match[]={match}")
                wanted = {s for (_, s), labels in fleet.items() if selector is None or matches(selector, labels)}
                assert set(json.loads(body)["data"]) == wanted, f"the stamp list with labels={selector or 'default'}"

            # The readiness row with the defaults, where this fleet's states say what it must show.
            def shown(title: str, ref: str = "A") -> dict[tuple[str, ...], str]:
                """Its query's result with the defaults: the stamp, reasons, fault type, severity it names."""
                panel = next(p for p in panels(dashboard) if p["title"] == title)
                expr = next(t["expr"] for t in panel["targets"] if t["refId"] == ref)
                keys = ("stamp", "blocked_by", "fault_type", "severity")
                return {
                    tuple(dict(m)[k] for k in keys if k in dict(m)): v
                    for m, v in query(interpolate(expr, dashboard, None, None))
                }

            counts = {p["title"]: shown(p["title"]) for p in panels(dashboard) if p["id"] in READINESS_STATS}
            assert counts == {
                "Must update, can start": {(): "1"},  # north
                "Must update, blocked": {(): "3"},  # west (installing), east, oem-old
                "Installing now": {(): "1"},  # west
                "Critical alerts": {(): "1"},  # east
                "Certificates expiring": {(): "1"},  # north
                "Health read failing": {(): "2"},  # oem-old's provider, south not read at all
            }
            table = "Update readiness (admin stamps)"
            assert shown(table, "A") == {
                ("west",): "1",
                ("north",): "1",
                ("east",): "1",
                ("oem-old",): "1",
                ("south",): "0",
            }
            assert shown(table, "B") == {
                ("west", "not_downloaded, update_in_progress"): "0",  # its 2506 hotfix is not listed
                ("north",): "1",
                ("east", "critical_alerts"): "0",
                ("oem-old", "oem_prerequisite, not_downloaded"): "0",
            }
            assert shown("Active alerts by fault type", "B") == {
                ("FRP.Heartbeat.InfraVM", "warning"): "1",
                ("CertificateExpiration.ExternalCert.Warning", "warning"): "1",
                ("StorageService.Share.is.inaccessible-Critical", "critical"): "1",
            }

            failures = []
            for name, expr in queries:
                everything = query(interpolate(expr, dashboard, None, None))
                if everything != query(over(expr, dashboard, fleet)):
                    failures.append(f"{name}, All: not every stamp's series")
                changed = False
                for stamps, selector in CASES:
                    pairs = {
                        key
                        for key, labels in fleet.items()
                        if (stamps is None or key[1] in stamps) and (selector is None or matches(selector, labels))
                    }
                    got = query(interpolate(expr, dashboard, stamps, selector))
                    case = f"stamp={stamps or 'All'} labels={selector or 'default'}"
                    strays = set()
                    for metric, _ in got:
                        labels = dict(metric)
                        if "stamp" in labels and not any(
                            labels["stamp"] == s and labels.get("instance", i) == i for i, s in pairs
                        ):
                            key = (labels.get("instance"), labels["stamp"])
                            strays.add(named.get(key, labels["stamp"]))
                    if strays:
                        failures.append(f"{name}, {case}: series of {sorted(strays)}")
                    elif got != query(over(expr, dashboard, pairs)):
                        failures.append(f"{name}, {case}: not the result over {sorted(named[key] for key in pairs)}")
                    changed |= got != everything
                if not changed:
                    failures.append(f"{name}: no filter changes its result, so nothing here tests it")
            assert failures == [], "\n".join(failures)
    finally:
        if process is not None:
            stop(process)
