"""The Health provider's alerts list, as real stamps send it, counted into bounded values."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from exporter import health
from exporter.health import MAX_FAULT_TYPES, OTHER, health_from, summary

FIXTURES = Path(__file__).parent / "fixtures" / "azurestack"
LIST_2020 = json.loads((FIXTURES / "ii-ps-2020__alerts-list.json").read_text())["value"]
LIST_2017 = json.loads((FIXTURES / "ii-psrm-2017__alerts-list.json").read_text())["value"]
# Microsoft's REST API specification's example of the list: two open alerts.
DOCUMENTED = json.loads((FIXTURES / "Alerts-List-2016-05-01.json").read_text())["responses"]["200"]["body"]


def opened(alert: dict, **props: object) -> dict:
    """A recorded (closed) alert as it would be open, in the form the specification's examples
    give: state Active, the closing time and who closed it empty."""
    alert = copy.deepcopy(alert)
    alert["properties"].update(state="Active", closedTimestamp="", closedByUserAlias="")
    alert["properties"].update(props)
    return alert


def test_the_open_alerts_of_microsofts_specification_are_counted():
    result = health_from(DOCUMENTED["value"])
    assert (result.critical, result.warning, result.certificates, result.listed) == (0, 2, 0, 2)
    assert set(result.by_fault) == {
        ("ServiceFabricApplicationUnhealthy", "warning", 1),
        ("ServiceFabricClusterUnhealthy", "warning", 1),
    }
    assert summary(result) == "2 warning alerts"


def test_an_open_alert_without_its_closing_keys_is_counted_as_well():
    for key in ("closedTimestamp", "closedByUserAlias"):
        items = copy.deepcopy(DOCUMENTED["value"])
        for item in items:
            del item["properties"][key]
        assert health_from(items).warning == 2


def test_the_recorded_lists_hold_only_closed_alerts_and_count_nothing_active():
    for items, listed in ((LIST_2020, 73), (LIST_2017, 9)):
        result = health_from(items)
        assert (result.critical, result.warning, result.by_fault, result.listed) == (0, 0, (), listed)
        assert result.known and summary(result) == "no active alerts"


def test_open_alerts_are_counted_by_severity_and_fault_type():
    critical = [a for a in LIST_2020 if a["properties"]["severity"] == "Critical"][:3]
    certificates = [a for a in LIST_2020 if a["properties"]["faultTypeId"].startswith("CertificateExpiration")][:2]
    items = [*LIST_2020, *(opened(a) for a in critical), *(opened(a) for a in certificates)]
    # The opened copies keep their alertId: a list with the same alert twice counts it once,
    # so give them new ids, as new alerts would have.
    for index, item in enumerate(items[len(LIST_2020) :]):
        item["properties"]["alertId"] = f"open-{index}"
    result = health_from(items)
    assert (result.critical, result.warning, result.certificates) == (3, 2, 2)
    assert sum(n for _, _, n in result.by_fault) == 5
    assert ("CertificateExpiration.InternalCert.Warning", "warning", 2) in result.by_fault
    assert result.titles[0][0] == "critical"  # critical alerts are named first
    assert summary(result) == "3 critical and 2 warning alerts"


def test_an_alert_without_a_state_is_open_unless_it_says_when_it_was_closed():
    no_state = opened(LIST_2017[0])
    del no_state["properties"]["state"]
    closed_no_state = copy.deepcopy(LIST_2017[1])
    del closed_no_state["properties"]["state"]
    result = health_from([no_state, closed_no_state])
    assert (result.warning, result.listed) == (1, 2)


def test_hostile_alerts_become_bounded_printable_values_or_are_left_out():
    base = LIST_2020[0]
    items: list[object] = [
        opened(base, alertId="a", faultTypeId="\ud800Bad\x1b[2J", severity="CRITICAL"),
        opened(base, alertId="b", faultTypeId="x" * 500, severity="Warning"),
        opened(base, alertId="c", faultTypeId=None, severity="Critical", title=None),
        opened(base, alertId="d", severity="Informational"),
        opened(base, alertId="e", faultTypeId=OTHER, severity="Warning"),
        opened(base, alertId="e", faultTypeId=OTHER, severity="Warning"),  # the same alert again
        {"properties": "not an object"},
        ["not", "an", "alert"],
        None,
    ]
    result = health_from(items)
    assert (result.critical, result.warning, result.other_severity) == (2, 2, 1)
    faults = [fault for fault, _, _ in result.by_fault]
    for fault in faults:
        fault.encode("utf-8")
        assert fault.isprintable() and len(fault) <= health.MAX_FAULT_TYPE
    assert health.UNKNOWN_FAULT in faults
    assert len(set(zip(faults, [s for _, s, _ in result.by_fault], strict=True))) == len(faults)  # one series each


def test_more_than_fifty_fault_types_keep_the_most_critical_and_sum_the_rest_into_other():
    base = LIST_2020[0]
    items = [
        opened(base, alertId=f"w{i}", faultTypeId=f"Fault.{i:03d}", severity="Warning")
        for i in range(MAX_FAULT_TYPES + 10)
    ]
    items.append(opened(base, alertId="c", faultTypeId="Zz.Critical", severity="Critical"))
    result = health_from(items)
    faults = {fault for fault, _, _ in result.by_fault}
    assert len(faults - {OTHER}) == MAX_FAULT_TYPES and "Zz.Critical" in faults
    assert (OTHER, "warning", 11) in result.by_fault
    assert sum(n for _, _, n in result.by_fault) == result.critical + result.warning == MAX_FAULT_TYPES + 11


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Active", "Closed", "", "active", None]),
            st.sampled_from(["Critical", "Warning", "warning", "Informational", None]),
            st.one_of(st.text(max_size=8), st.sampled_from([OTHER, "CertificateExpiration.X"]), st.none()),
        ),
        max_size=120,
    )
)
def test_totals_are_kept_and_series_bounded_whatever_the_list(rows):
    base = LIST_2017[0]
    items = []
    for index, (state, severity, fault) in enumerate(rows):
        alert = opened(base, alertId=str(index), state=state, severity=severity, faultTypeId=fault)
        items.append(alert)
    result = health_from(items)
    assert sum(n for _, _, n in result.by_fault) == result.critical + result.warning
    assert len({f for f, _, _ in result.by_fault} - {OTHER}) <= MAX_FAULT_TYPES
    labels = [(f, s) for f, s, _ in result.by_fault]
    assert len(labels) == len(set(labels)) and all(n > 0 for _, _, n in result.by_fault)
    assert result.critical + result.warning + result.other_severity <= len(rows)
    json.dumps(result.titles, ensure_ascii=False).encode("utf-8")


def test_a_failed_read_knows_nothing_and_says_why():
    result = health.failed("http", "alerts answered HTTP 404: ResourceNotFound")
    assert not result.known and result.reason == "http"
    assert summary(result) == "not read (http: alerts answered HTTP 404: ResourceNotFound)"
