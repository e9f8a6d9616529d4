"""The admin client reads the Health provider in the same read, with the same token, over real
HTTPS against the fake (recorded 2017 and 2020 alert bodies); its failures stay its own."""

from __future__ import annotations

import json
from pathlib import Path

import fake_azurestack as fa
import pytest
from test_admin_client import client_for, fake, pki, stamp_of  # noqa: F401 - fixtures

from exporter import health

FIXTURES = Path(__file__).parent / "fixtures" / "azurestack"


def test_a_healthy_stamp_lists_only_closed_alerts_in_one_request_with_the_same_token(fake, pki):  # noqa: F811
    stamp = stamp_of(fake, alerts=fa.closed_only())  # the 73 recorded alerts, all Closed
    client = client_for(fake, stamp, pki)
    reading = client.read()
    assert reading.health == health.Health(listed=73)
    assert stamp.requests("alerts") == 1 and stamp.requests("regionHealth") == 0
    assert fake.token_requests.count(stamp.name) == 1
    stamp.log.clear()
    assert client.read().health == reading.health
    assert stamp.requests("alerts") == 1 and stamp.requests("updateLocation") == 1 and len(stamp.log) == 2


def test_active_alerts_are_counted_by_severity_fault_type_and_certificate(fake, pki):  # noqa: F811
    stamp = stamp_of(fake, alerts=[*fa.critical(), *fa.certificate_expiring()])
    seen = client_for(fake, stamp, pki).read().health
    assert seen is not None and seen.known
    assert (seen.critical, seen.warning, seen.certificates) == (1, 1, 1)
    assert set(seen.by_fault) == {
        ("StorageService.Share.is.inaccessible-Critical", "critical", 1),
        ("CertificateExpiration.ExternalCert.Warning", "warning", 1),
    }
    assert seen.titles[0][0] == "critical"


def test_the_specifications_example_list_is_read_whole_and_its_open_alerts_counted(fake, pki):  # noqa: F811
    """Microsoft's example answer: two open alerts (empty closing time) and an empty nextLink,
    which ends the list rather than being followed."""
    documented = json.loads((FIXTURES / "Alerts-List-2016-05-01.json").read_text())["responses"]["200"]["body"]
    stamp = stamp_of(fake, answers={"alerts": documented})
    seen = client_for(fake, stamp, pki).read().health
    assert stamp.requests("alerts") == 1
    assert seen is not None and (seen.critical, seen.warning, seen.listed) == (0, 2, 2)


def test_a_paged_alerts_list_is_read_page_by_page_and_counted_once(fake, pki):  # noqa: F811
    stamp = stamp_of(fake, alerts=fa.many_alerts(120, 60), alerts_page_size=50)
    seen = client_for(fake, stamp, pki).read().health
    assert stamp.requests("alerts") == 3  # 50 + 50 + 20, following nextLink on the same host
    assert seen is not None and seen.critical + seen.warning == 120
    faults = {fault for fault, _, _ in seen.by_fault}
    assert len(faults - {health.OTHER}) == health.MAX_FAULT_TYPES and health.OTHER in faults
    assert sum(n for _, _, n in seen.by_fault) == 120


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"not_found": True}, "http"),
        ({"not_found_empty": True}, "http"),
        ({"status": 503}, "http"),
        ({"malformed": True}, "parse"),
        ({"html": True}, "parse"),
    ],
)
def test_a_failed_health_read_fails_alone_and_the_version_data_stands(fake, pki, fault, reason):  # noqa: F811
    stamp = stamp_of(fake, alerts=fa.critical())
    for key, value in fault.items():
        setattr(stamp.health_faults, key, value)
    client = client_for(fake, stamp, pki)
    reading = client.read()  # no CollectionError: the stamp is up
    assert reading.current_version == "1.2408.1.50" and len(reading.updates) == 3
    assert reading.health is not None and not reading.health.known
    assert reading.health.reason == reason and (reading.health.critical, reading.health.warning) == (0, 0)
    stamp.health_faults.clear()
    recovered = client.read().health
    assert recovered is not None and recovered.known and recovered.critical == 1
    assert fake.token_requests.count(stamp.name) == 1  # a health failure never costs the token


def test_odd_alerts_from_a_stamp_become_bounded_values(fake, pki):  # noqa: F811
    stamp = stamp_of(fake, alerts=fa.healthy())
    stamp.health_faults.odd_alerts = True
    seen = client_for(fake, stamp, pki).read().health
    assert seen is not None and seen.known
    for fault, severity, count in seen.by_fault:
        fault.encode("utf-8")
        assert len(fault) <= health.MAX_FAULT_TYPE and severity in health.SEVERITIES and count > 0
    for _, title in seen.titles:
        title.encode("utf-8")  # the lone surrogate is replaced, not sent on
    assert seen.other_severity >= 1  # "Informational" is counted apart, never as critical or warning


def test_a_health_read_past_the_deadline_fails_alone(fake, pki):  # noqa: F811
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki, timeout=0.5)
    client.read()
    stamp.health_faults.status = 500  # retried with backoff until the read's deadline
    reading = client.read()
    assert reading.current_version == "1.2408.1.50"
    assert reading.health is not None and reading.health.reason == "http"


def test_an_alerts_list_over_its_bound_fails_the_health_read_only(fake, pki, monkeypatch):  # noqa: F811
    monkeypatch.setattr(health, "MAX_ALERTS", 40)
    stamp = stamp_of(fake, alerts=fa.many_alerts(60, 20), alerts_page_size=25)
    reading = client_for(fake, stamp, pki).read()
    assert reading.current_version == "1.2408.1.50"
    assert reading.health is not None and reading.health.reason == "size"
    assert stamp.requests("alerts") == 2  # refused as soon as the second page passes the bound
