"""The fake admin endpoint's Health provider (Microsoft.InfrastructureInsights.Admin), over real HTTPS.

The exporter's health readings are only as good as the fake they are tested against: these
hold the fake to the recorded bodies (byte for byte where the stamp is the recorded one), to
what real servers do (no nextLink key on a last page, closed alerts listed with the active
ones, an alertSummary that agrees with the list) and to its faults, each confined to the
Health provider of one stamp.
"""

from __future__ import annotations

import datetime
import json
from urllib.parse import urlsplit

import pytest
import requests
from fake_azurestack import (
    ALERTS_2020,
    FIXTURES,
    RECORDED_LOCATION,
    RECORDED_SUBSCRIPTION,
    STORIES,
    Alert,
    FakeAzureStack,
    FakeStamp,
    certificate_expiring,
    closed_only,
    critical,
    demo_stamp,
    during_update,
    healthy,
    many_alerts,
    odd_alerts,
    request_kind,
)
from pki import make_ca, make_server_cert

SECRET = "Health-Secret-4b1e"
API = "api-version=2016-05-01"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    (d / "ca.pem").write_bytes(ca.cert_pem)
    return {"ca": ca, "ca_file": str(d / "ca.pem")}


@pytest.fixture(scope="module")
def fake(pki):
    with FakeAzureStack(make_server_cert(pki["ca"])) as server:
        yield server


@pytest.fixture(scope="module")
def session(pki):
    with requests.Session() as s:
        s.trust_env = False  # REQUESTS_CA_BUNDLE must not replace the test CA
        s.verify = pki["ca_file"]
        yield s


_names = iter(range(10**6))


class Client:
    """A stamp of the fake and a bearer token for it, obtained as a client does: the token endpoint."""

    def __init__(self, fake: FakeAzureStack, session: requests.Session, **kwargs) -> None:
        self.fake, self.session = fake, session
        self.stamp = FakeStamp(name=f"h{next(_names)}", secret=SECRET, **kwargs)
        fake.add_stamp(self.stamp)
        answer = session.post(
            fake.token_endpoint(self.stamp),
            data={
                "grant_type": "client_credentials",
                "client_id": self.stamp.client_id,
                "client_secret": SECRET,
                "scope": f"{fake.audience(self.stamp)}/.default",
            },
            timeout=5,
        )
        answer.raise_for_status()
        self.token = answer.json()["access_token"]
        self.stamp.log.clear()

    @property
    def region(self) -> str:
        s = self.stamp
        return (
            f"{self.fake.endpoint(s.name)}/subscriptions/{s.subscription_id}/resourceGroups/System.{s.location}"
            f"/providers/Microsoft.InfrastructureInsights.Admin/regionHealths/{s.location}"
        )

    def get(self, url: str, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.session.get(url, headers=headers, timeout=5)

    def region_health(self) -> requests.Response:
        return self.get(f"{self.region}?{API}")

    def alerts(self) -> requests.Response:
        return self.get(f"{self.region}/alerts?{API}")

    def all_alerts(self) -> list[dict]:
        """Every page of the alerts list, following nextLink."""
        url, alerts = f"{self.region}/alerts?{API}", []
        while url:
            page = self.get(url)
            assert page.status_code == 200, page.text
            alerts += page.json()["value"]
            url = page.json().get("nextLink")
        return alerts


@pytest.fixture
def client(fake, session):
    return lambda **kwargs: Client(fake, session, **kwargs)


def recorded(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def moment(iso: str | None) -> datetime.datetime:
    assert iso is not None
    return datetime.datetime.fromisoformat(iso)


def active(alerts: list[dict]) -> list[dict]:
    return [a for a in alerts if a["properties"].get("state") == "Active"]


def summary_of(alerts: list[dict]) -> dict[str, int]:
    props = [a["properties"] for a in active(alerts)]
    return {
        "criticalAlertCount": sum(p.get("severity") == "Critical" for p in props),
        "warningAlertCount": sum(p.get("severity") == "Warning" for p in props),
    }


# ---------------------------------------------------------------- the recorded shapes


def test_a_stamp_like_the_recorded_one_answers_byte_for_byte_as_recorded(client):
    c = client(location=RECORDED_LOCATION, subscription_id=RECORDED_SUBSCRIPTION, alerts=closed_only())
    health, alerts = c.region_health(), c.alerts()
    assert health.status_code == alerts.status_code == 200
    assert health.headers["Content-Type"].startswith("application/json")
    assert health.content == recorded("ii-ps-2020__regionHealth-get.json")
    assert alerts.content == recorded("ii-ps-2020__alerts-list.json")  # 73 closed alerts, no nextLink key


def test_region_health_has_the_recorded_keys_and_names_the_stamps_location(client):
    c = client(location="east")
    body = c.region_health().json()
    for name in ("ii-ps-2020__regionHealth-get.json", "ii-psrm-2017__regionHealth-get.json"):
        real = json.loads(recorded(name))
        assert list(body) == list(real)
        assert list(body["properties"]) == list(real["properties"])
        assert list(body["properties"]["alertSummary"]) == list(real["properties"]["alertSummary"])
    s = c.stamp
    assert body["id"] == (
        f"/subscriptions/{s.subscription_id}/resourceGroups/System.east"
        "/providers/Microsoft.InfrastructureInsights.Admin/regionHealths/east"
    )
    assert body["name"] == body["location"] == "east"
    assert body["properties"]["alertSummary"] == {"criticalAlertCount": 0, "warningAlertCount": 0}


def test_the_default_list_is_a_few_closed_alerts_in_the_recorded_2020_shape(client):
    c = client()
    answer = c.alerts()
    assert answer.status_code == 200
    body = answer.json()
    assert list(body) == ["value"]  # no nextLink key at all, as real servers send a single page
    alerts = body["value"]
    assert len(alerts) == 3 and not active(alerts)
    recorded_keys = {tuple(a["properties"]) for a in ALERTS_2020}
    for alert in alerts:
        guid = alert["properties"]["alertId"]
        assert alert["name"] == f"local/{guid}"
        assert alert["id"] == f"{c.region.split('/stamps/' + c.stamp.name)[1]}/alerts/{guid}"
        assert alert["type"] == "Microsoft.InfrastructureInsights.Admin/regionHealths/alerts"
        assert list(alert) == ["id", "name", "type", "location", "tags", "properties"]
        assert tuple(alert["properties"]) in recorded_keys  # closed alerts keep their recorded keys exactly
        assert alert["properties"]["impactedResourceId"].startswith(f"/subscriptions/{c.stamp.subscription_id}/")
    assert [a["properties"]["alertId"] for a in alerts] == sorted(a["properties"]["alertId"] for a in alerts)


def test_paths_are_compared_without_regard_to_case(client):
    c = client()
    upper = c.region.replace("resourceGroups", "RESOURCEGROUPS").replace("regionHealths", "RegionHealths")
    assert c.get(f"{upper}?{API}").status_code == 200
    assert c.get(f"{upper}/ALERTS?{API}").status_code == 200


# ---------------------------------------------------------------- active alerts and the summary


@pytest.mark.parametrize(
    ("scenario", "critical_count", "warning_count"),
    [(healthy, 0, 0), (critical, 1, 0), (certificate_expiring, 0, 1), (during_update, 0, 1), (closed_only, 0, 0)],
)
def test_the_summary_counts_the_active_alerts_the_list_holds_beside_closed_ones(
    client, scenario, critical_count, warning_count
):
    c = client(alerts=scenario())
    alerts = c.alerts().json()["value"]
    summary = c.region_health().json()["properties"]["alertSummary"]
    assert summary == summary_of(alerts)
    assert summary == {"criticalAlertCount": critical_count, "warningAlertCount": warning_count}
    assert any(a["properties"]["state"] == "Closed" for a in alerts)  # real lists carry closed alerts too


def test_an_active_alert_has_empty_closing_keys_and_a_closed_one_keeps_them(client):
    c = client(alerts=critical())
    alerts = c.alerts().json()["value"]
    [opened] = active(alerts)
    props = opened["properties"]
    # As the open alerts of Microsoft's specification examples: both keys there, both empty.
    assert props["closedTimestamp"] == "" and props["closedByUserAlias"] == ""
    assert props["severity"] == "Critical" and props["faultTypeId"] == "StorageService.Share.is.inaccessible-Critical"
    assert props["title"] == "Share is not accessible"
    assert props["lastUpdatedTimestamp"] == props["createdTimestamp"]
    assert props["createdTimestamp"].endswith("Z") and len(props["createdTimestamp"].split(".")[1]) == 4
    closed = [a["properties"] for a in alerts if a["properties"]["state"] == "Closed"]
    assert all(p["closedTimestamp"] == p["lastUpdatedTimestamp"] for p in closed)
    assert any("closedByUserAlias" in p for p in closed) and any("closedByUserAlias" not in p for p in closed)

    # Closing it keeps its id, as a stamp does.
    c.stamp.alerts[0].state, c.stamp.alerts[0].closed = "Closed", "2026-01-02T03:04:05.6789012Z"
    again = {a["properties"]["alertId"]: a["properties"] for a in c.alerts().json()["value"]}
    assert again[props["alertId"]]["state"] == "Closed"
    assert again[props["alertId"]]["closedTimestamp"] == "2026-01-02T03:04:05.6789012Z"
    assert c.region_health().json()["properties"]["alertSummary"]["criticalAlertCount"] == 0


def test_the_expiring_external_certificate_reads_as_the_recorded_internal_one(client):
    c = client(alerts=certificate_expiring())
    [alert] = active(c.alerts().json()["value"])
    props = alert["properties"]
    assert props["faultTypeId"] == "CertificateExpiration.ExternalCert.Warning"
    assert props["severity"] == "Warning" and props["title"] == "Pending external certificate expiration"
    text = "".join(run.get("text", "\n") for run in props["description"])
    assert text.startswith("One or more external certificates will expire within 90 days.")
    assert [run["type"] for run in props["description"]][:2] == ["Text", "NewLine"]
    assert {"subjectNamesOfCertificates", "thumbPrintsOfCertificates"} <= set(props["alertProperties"])
    links = [run["uri"] for run in props["remediation"] if run["type"] == "LinkBegin"]
    assert links == ["https://aka.ms/azsrotatecertificates", "https://aka.ms/azurestacklogfiles"]
    certificate = json.loads(next(v for k, v in props["alertProperties"].items() if k[0].islower() and len(k) == 40))
    assert certificate["SubjectName"].startswith("CN=")


def test_many_alerts_span_more_than_fifty_fault_types_of_both_severities(client):
    c = client(alerts=many_alerts(120))
    alerts = c.alerts().json()["value"]
    assert len(alerts) == len(active(alerts)) == 120
    assert len({a["properties"]["faultTypeId"] for a in alerts}) > 50
    assert {a["properties"]["severity"] for a in alerts} == {"Critical", "Warning"}
    assert len({a["properties"]["alertId"] for a in alerts}) == 120
    assert c.region_health().json()["properties"]["alertSummary"] == summary_of(alerts)


def test_a_single_alert_is_served_by_its_id(client):
    c = client(alerts=critical())
    [listed] = active(c.alerts().json()["value"])
    one = c.get(f"{c.region}/alerts/{listed['properties']['alertId']}?{API}")
    assert one.status_code == 200 and one.json() == listed
    missing = c.get(f"{c.region}/alerts/00000000-0000-0000-0000-000000000000?{API}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"


# ---------------------------------------------------------------- paging and counting


def test_a_long_list_is_paged_by_a_same_host_next_link_and_the_last_page_has_no_next_link_key(client):
    c = client(alerts=critical(), alerts_page_size=3)  # four alerts: pages of three and one
    first = c.alerts().json()
    link = urlsplit(first["nextLink"])
    assert len(first["value"]) == 3
    assert f"{link.scheme}://{link.netloc}" == c.fake.base_url
    assert link.path.startswith(f"/stamps/{c.stamp.name}/subscriptions/{c.stamp.subscription_id}/")
    assert "api-version=2016-05-01" in link.query
    second = c.get(first["nextLink"]).json()
    assert list(second) == ["value"] and len(second["value"]) == 1
    assert c.stamp.requests("alerts") == 2
    c.stamp.alerts_page_size = 0
    assert first["value"] + second["value"] == c.alerts().json()["value"]


def test_requests_are_counted_per_kind(client):
    c = client(alerts_page_size=2)  # three alerts: two pages
    c.region_health()
    assert len(c.all_alerts()) == 3
    c.get(
        f"{c.fake.endpoint(c.stamp.name)}/subscriptions/{c.stamp.subscription_id}/resourceGroups/System.local"
        f"/providers/Microsoft.Update.Admin/updateLocations/local?api-version=2021-07-01"
    )
    assert c.stamp.requests("regionHealth") == 1
    assert c.stamp.requests("alerts") == 2
    assert c.stamp.requests("updateLocation") == 1
    assert c.stamp.requests("updates") == 0
    assert request_kind("GET /subscriptions/s/resourceGroups/System.x/providers/Microsoft.Update.Admin/x?a") == "other"
    assert request_kind("GET /metadata/endpoints?api-version=2015-01-01") == "metadata"


# ---------------------------------------------------------------- refusals and faults


def test_other_api_versions_and_foreign_tokens_are_refused(client):
    c, other = client(), client()
    for version in ("2021-07-01", "2016-05-01-preview", ""):
        for url in (f"{c.region}?api-version={version}", f"{c.region}/alerts?api-version={version}"):
            answer = c.get(url)
            assert answer.status_code == 400
            error = answer.json()["error"]
            assert error["code"] == "InvalidApiVersionParameter"
            assert "The supported versions are '2016-05-01'." in error["message"]
    assert c.get(f"{c.region}/alerts?{API}", token=other.token).status_code == 401
    assert c.stamp.requests("alerts") == 4  # refused requests are logged too


@pytest.mark.parametrize("fault", ["not_found", "not_found_empty", "status", "html", "malformed"])
def test_a_health_fault_breaks_the_health_provider_of_that_stamp_only(client, fault):
    c, neighbour = client(alerts=critical()), client(alerts=critical())
    setattr(c.stamp.health_faults, fault, 503 if fault == "status" else True)
    for answer in (c.region_health(), c.alerts()):
        if fault == "not_found":
            assert answer.status_code == 404
            assert answer.json()["error"]["code"] == "InvalidResourceNamespace"
            assert "Microsoft.InfrastructureInsights.Admin" in answer.json()["error"]["message"]
        elif fault == "not_found_empty":
            assert answer.status_code == 404 and answer.content == b""
        elif fault == "status":
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "InternalServerError"
        elif fault == "html":
            assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/html")
        else:
            assert answer.status_code == 200
            with pytest.raises(ValueError):
                json.loads(answer.content)
    location = c.get(
        f"{c.fake.endpoint(c.stamp.name)}/subscriptions/{c.stamp.subscription_id}/resourceGroups/System.local"
        f"/providers/Microsoft.Update.Admin/updateLocations/local?api-version=2021-07-01"
    )
    assert location.status_code == 200 and location.json()["properties"]["currentVersion"]  # Update is fine
    assert neighbour.region_health().status_code == neighbour.alerts().status_code == 200
    c.stamp.health_faults.clear()
    assert c.region_health().status_code == c.alerts().status_code == 200


def test_a_fault_can_hit_the_alerts_alone(client):
    c = client()
    c.stamp.health_faults.not_found, c.stamp.health_faults.only = True, "alerts"
    assert c.region_health().status_code == 200
    assert c.alerts().status_code == 404


def test_a_stale_summary_disagrees_with_the_list(client):
    c = client(alerts=critical())
    c.stamp.health_faults.stale_summary = True
    assert summary_of(c.alerts().json()["value"])["criticalAlertCount"] == 1
    assert c.region_health().json()["properties"]["alertSummary"]["criticalAlertCount"] == 0


def test_odd_alerts_carry_values_a_parser_could_trip_on(client):
    c = client()
    c.stamp.health_faults.odd_alerts = True
    raw = c.alerts().content
    assert b"\\ud800" in raw  # a lone surrogate, as its JSON escape
    alerts = {a["properties"]["impactedResourceDisplayName"]: a["properties"] for a in json.loads(raw)["value"]}
    assert len(alerts) == 3 + len(odd_alerts())
    assert "faultTypeId" not in alerts["AZS-ODD01"]
    assert alerts["AZS-ODD02"]["severity"] == "Informational"
    assert "\ud800" in alerts["AZS-ODD03"]["title"]
    assert len(alerts["AZS-ODD04"]["faultTypeId"]) == 500
    assert "state" not in alerts["AZS-ODD05"]
    summary = c.region_health().json()["properties"]["alertSummary"]
    assert summary == {"criticalAlertCount": 1, "warningAlertCount": 2}  # counted by the values given


def test_a_canned_update_location_answer_does_not_answer_for_region_health(client):
    c = client(answers={"updatelocation": {"properties": {"currentVersion": "1.2.3.4"}}})
    assert c.region_health().json()["type"] == "Microsoft.InfrastructureInsights.Admin/regionHealths"


# ---------------------------------------------------------------- the demo's stories


def test_each_demo_story_has_the_health_its_story_tells():
    for index, story in enumerate(STORIES):
        stamp = demo_stamp(f"demo{index}", story)
        opened = [(a.severity, a.fault_type) for a in stamp.alerts if a.state == "Active"]
        if story.offered == "PreparationFailed":  # blocked by a health check: a critical alert, before the run
            assert [s for s, _ in opened] == ["Critical"]
            [run] = stamp.runs[stamp.updates[-1].version]
            assert moment(stamp.alerts[0].created) < moment(run.started)
        elif story.offered == "Installing":
            assert opened == [("Warning", "FRP.Heartbeat.InfraVM")]
            [run] = stamp.runs[stamp.updates[-1].version]
            assert moment(stamp.alerts[0].created) > moment(run.started)  # raised while the update runs
        elif story.offered == "Ready":
            assert opened == [("Warning", "CertificateExpiration.ExternalCert.Warning")]
        else:
            assert opened == []
        assert any(a.state == "Closed" for a in stamp.alerts)


def test_an_alert_of_a_fault_type_never_recorded_has_a_plain_description(client):
    c = client(alerts=[Alert("Urp.UpdateFailure", "Critical", title="Update failed", impacted="Update")])
    [alert] = c.alerts().json()["value"]
    props = alert["properties"]
    assert props["description"] == [{"text": "Update failed", "type": "Text"}]
    assert props["alertProperties"] == {}
    assert props["impactedResourceId"].endswith("/Update")
