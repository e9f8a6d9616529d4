"""The admin client in process, against the fake admin endpoint over real HTTPS with real msal flows.

The end-to-end tests (test_admin_e2e.py) run the installed exporter; these call ``AdminClient``
directly, so that each reading's fields and each failure's reason and message are asserted
exactly, and so that mutation testing, which sees only in-process calls, can judge the client.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import time

import pytest
import requests
from fake_azurestack import FakeAzureStack, FakeStamp, Run, Update
from pki import make_ca, make_client_cert, make_server_cert

from exporter import __version__, admin
from exporter.admin import (
    API_VERSIONS,
    AdminClient,
    BoundedSession,
    CollectionError,
    DeadlineExceededError,
    parse_json,
    parse_timestamp,
    reading_from,
    run_candidates,
    transport_error,
    unexpected,
    updates_from,
)
from exporter.config import AdminConfig
from exporter.report import AvailableUpdate
from exporter.runs import UpdateRun
from exporter.trust import trust_context

SECRET = "In-Process-Secret-0c9d"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    (d / "ca.pem").write_bytes(ca.cert_pem)
    (d / "secret").write_text(SECRET + "\n")
    spn = make_client_cert("azurestack-exporter spn")
    spn.write_combined(d / "spn.pem")
    return {"ca": ca, "ca_file": str(d / "ca.pem"), "secret_file": str(d / "secret"), "spn": spn, "dir": d}


@pytest.fixture(scope="module")
def fake(pki):
    with FakeAzureStack(make_server_cert(pki["ca"])) as server:
        yield server


_names = iter(range(10**6))


def stamp_of(fake: FakeAzureStack, **kwargs) -> FakeStamp:
    kwargs.setdefault("secret", SECRET)
    stamp = FakeStamp(name=f"s{next(_names)}", **kwargs)
    fake.add_stamp(stamp)
    return stamp


def client_for(fake: FakeAzureStack, stamp: FakeStamp, pki, **overrides) -> AdminClient:
    settings: dict[str, object] = {
        "endpoint": fake.endpoint(stamp.name),
        "tenant": "adfs" if stamp.identity == "adfs" else stamp.tenant,
        "client_id": stamp.client_id,
        "ca_file": pki["ca_file"],
        "timeout": 2.0,
    }
    if stamp.certificate is not None:
        settings["client_certificate_file"] = str(pki["dir"] / "spn.pem")
    else:
        settings["client_secret_file"] = pki["secret_file"]
    settings.update(overrides)
    return AdminClient(AdminConfig(**settings))  # type: ignore[arg-type]


def refused(client: AdminClient) -> CollectionError:
    with pytest.raises(CollectionError) as caught:
        client.read()
    return caught.value


def paths(stamp: FakeStamp) -> list[str]:
    return [line.split("?")[0] for line in stamp.log]


# ---------------------------------------------------------------- readings


def test_an_adfs_secret_stamp_is_read_with_every_field(fake, pki):
    stamp = stamp_of(fake)
    reading = client_for(fake, stamp, pki).read()
    assert reading.current_version == "1.2408.1.50"
    assert reading.current_oem_version == "2.4.2411.6"
    assert reading.state == "AppliedSuccessfully"
    assert reading.last_updated == dt.datetime(2025, 9, 30, 8, 9, 12, tzinfo=dt.UTC).timestamp() + 0.8824552
    assert reading.last_checked == dt.datetime(2025, 10, 1, 15, 17, 41, tzinfo=dt.UTC).timestamp()
    assert reading.api_version == "2021-07-01"
    assert reading.location == "local"
    assert reading.subscription_id == stamp.subscription_id
    assert reading.oem_family == "Dell"
    # minVersionRequired and minOemVersionRequired ("2.1.0.0") as the 2022 recording sends them.
    needs = {"min_version": "1.2408.1.50", "min_oem_version": "2.1.0.0"}
    assert reading.updates == (
        AvailableUpdate("Microsoft1.2408.1.50", "1.2408.1.50", "Infrastructure", "Installed", "Microsoft", **needs),
        AvailableUpdate("Microsoft1.2501.0.21", "1.2501.0.21", "Infrastructure", "Ready", "Microsoft", **needs),
        AvailableUpdate("OEM2.4.2502.3", "2.4.2502.3", "OEM", "Ready", "Dell", **needs),
    )
    assert reading.runs == ()
    # The chain, in order: metadata (unauthenticated), discovery, the location, two pages of updates,
    # the runs of the one installed Microsoft update (none here: 404), and the Health provider's alerts.
    base = f"/subscriptions/{stamp.subscription_id}/resourceGroups/System.local/providers/Microsoft.Update.Admin"
    assert paths(stamp) == [
        "GET /metadata/endpoints",
        "GET /subscriptions",
        f"GET /subscriptions/{stamp.subscription_id}/locations",
        f"GET {base}/updateLocations/local",
        f"GET {base}/updateLocations/local/updates",
        f"GET {base}/updateLocations/local/updates",
        f"GET {base}/updateLocations/local/updates/Microsoft1.2408.1.50/updateRuns",
        alerts_path(stamp),
    ]
    assert stamp.log[-1].endswith("/alerts?api-version=2016-05-01")
    assert stamp.log[0].endswith("?api-version=2015-01-01")
    assert stamp.log[1].endswith("?api-version=2016-06-01")
    assert stamp.log[3].endswith("?api-version=2021-07-01")


def test_an_entra_certificate_stamp_is_read(fake, pki):
    stamp = stamp_of(fake, secret=None, certificate=pki["spn"].cert, identity="entra")
    reading = client_for(fake, stamp, pki).read()
    assert reading.current_version == "1.2408.1.50"
    assert fake.token_requests.count(stamp.name) == 1


def test_the_token_and_discovery_are_kept_between_reads(fake, pki):
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki)
    client.read()
    stamp.log.clear()
    client.read()
    assert fake.token_requests.count(stamp.name) == 1
    assert not any(p.endswith(("/metadata/endpoints", "/subscriptions", "/locations")) for p in paths(stamp))


def test_a_reading_younger_than_max_age_is_reused_and_an_older_one_is_not(fake, pki):
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki)
    first = client.read(max_age=60)
    requests_made = len(stamp.log)
    assert client.read(max_age=60) is first
    assert len(stamp.log) == requests_made
    assert client.read(max_age=0) is not first
    assert len(stamp.log) > requests_made


def test_configured_subscription_and_location_skip_discovery(fake, pki):
    stamp = stamp_of(fake, location="north")
    client = client_for(fake, stamp, pki, subscription_id=stamp.subscription_id, location="north")
    reading = client.read()
    assert reading.location == "north"
    assert not any(p.endswith(("/subscriptions", "/locations")) for p in paths(stamp))


def test_every_page_is_followed(fake, pki):
    updates = [Update(f"1.2{yymm}.0.{n}", "Ready") for n, yymm in enumerate(("408", "501", "502", "505", "506"))]
    stamp = stamp_of(fake, updates=updates, page_size=1)
    reading = client_for(fake, stamp, pki).read()
    assert [u.version for u in reading.updates] == [u.version for u in updates]


@pytest.mark.parametrize("api_version_404", [False, True])
def test_a_2016_only_stamp_is_read_with_2016_05_01_and_keeps_it(fake, pki, api_version_404):
    stamp = stamp_of(fake, api_versions=("2016-05-01",))
    stamp.faults.api_version_404 = api_version_404
    client = client_for(fake, stamp, pki)
    reading = client.read()
    assert reading.api_version == "2016-05-01"
    assert reading.oem_family is None
    assert reading.last_checked is None
    stamp.log.clear()
    client.read()
    assert not any("api-version=2021-07-01" in line for line in stamp.log)


@pytest.mark.parametrize(
    ("answers", "reason", "message"),
    [
        ({"locations": {"value": []}}, "parse", "the subscription lists no location; set location"),
        (
            {"locations": {"value": [{"name": ""}, {"name": 5}]}},
            "parse",
            "the subscription lists no location; set location",
        ),
        ({"locations": {"value": 3}}, "parse", "locations list has no 'value' array"),
        ({"subscriptions": {"value": 3}}, "parse", "subscriptions list has no 'value' array"),
        ({"subscriptions": []}, "parse", "subscriptions list has no 'value' array"),
        ({"updatelocation": ["a list"]}, "parse", "update location is not a JSON object"),
        ({"updates": {"values": []}}, "parse", "updates list has no 'value' array"),
        ({"updates": b"<html>"}, "parse", "updates answered text/html, not JSON"),
        ({"updateruns": {"value": 1}}, "parse", "update runs list has no 'value' array"),
        ({"updateruns": b"<html>"}, "parse", "update runs answered text/html, not JSON"),
        ({"locations": b"<html>"}, "parse", "locations answered text/html, not JSON"),
        ({"subscriptions": b"<html>"}, "parse", "subscriptions answered text/html, not JSON"),
    ],
)
def test_each_malformed_answer_is_refused_by_name(fake, pki, answers, reason, message):
    stamp = stamp_of(fake, runs={"1.2408.1.50": [Run("Succeeded", "2025-03-01T10:00:00Z", "PT1H")]}, answers=answers)
    err = refused(client_for(fake, stamp, pki))
    assert (err.reason, err.message) == (reason, message)


def test_a_subscription_without_an_id_is_not_the_default_provider_subscription(fake, pki):
    listed = [
        {"displayName": "Default Provider Subscription", "subscriptionId": ""},
        {"displayName": "Default Provider Subscription", "subscriptionId": 7},
        {"subscriptionId": "no-name"},
    ]
    stamp = stamp_of(fake, answers={"subscriptions": {"value": listed}})
    err = refused(client_for(fake, stamp, pki))
    assert err.reason == "auth" and "Default Provider Subscription is not visible" in err.message


def test_a_stamp_accepting_no_known_api_version_is_an_http_error(fake, pki):
    stamp = stamp_of(fake, api_versions=("2099-01-01",))
    err = refused(client_for(fake, stamp, pki))
    assert err.reason == "http"
    assert err.message.startswith("update location answered HTTP 400: InvalidApiVersionParameter: ")


def test_runs_are_read_newest_last_with_the_failed_step(fake, pki):
    stamp = stamp_of(
        fake,
        updates=[Update("1.2408.1.50", "Installed"), Update("1.2501.0.21", "InstallationFailed")],
        runs={
            "1.2408.1.50": [Run("Succeeded", "2025-03-01T10:00:00Z", "PT14H30M")],
            "1.2501.0.21": [
                Run("Failed", "2025-06-02T08:00:00Z", "PT2H"),
                Run("Failed", "2025-06-01T08:00:00Z", "PT1H"),
            ],
        },
    )
    runs = client_for(fake, stamp, pki).read().runs
    assert [(r.update, r.state, r.duration) for r in runs] == [
        ("1.2501.0.21", "Failed", 3600.0),
        ("1.2501.0.21", "Failed", 7200.0),
        ("1.2408.1.50", "Succeeded", 52200.0),
    ]
    assert runs[0].started == dt.datetime(2025, 6, 1, 8, tzinfo=dt.UTC).timestamp()
    assert runs[1].failed_step == "Update is blocked due to health check failure"
    assert runs[1].error is not None and runs[1].error.startswith("Update is blocked due to health check failure.")
    assert runs[2].failed_step is None and runs[2].error is None


def test_only_the_newest_five_runs_of_an_update_are_kept(fake, pki):
    runs = [Run("Succeeded", f"2025-0{month}-01T00:00:00Z", "PT1H") for month in range(1, 8)]
    stamp = stamp_of(fake, runs={"1.2408.1.50": runs})
    kept = client_for(fake, stamp, pki).read().runs
    assert [time.gmtime(r.started).tm_mon for r in kept] == [3, 4, 5, 6, 7]


# ---------------------------------------------------------------- credentials


def test_client_secret_env_is_the_secret_sent(fake, pki, monkeypatch):
    stamp = stamp_of(fake)
    monkeypatch.setenv("ASE_TEST_SECRET", f"  {SECRET}  ")
    client = client_for(fake, stamp, pki, client_secret_file=None, client_secret_env="ASE_TEST_SECRET")
    assert client.read().current_version == "1.2408.1.50"
    monkeypatch.setenv("ASE_TEST_SECRET", "wrong")
    err = refused(client)
    assert err.reason == "auth" and err.message.startswith("token request refused: invalid_client ")


@pytest.mark.parametrize("value", ["", "   \n"])
def test_an_empty_secret_is_an_auth_error(fake, pki, tmp_path, value):
    (tmp_path / "empty").write_text(value)
    stamp = stamp_of(fake)
    err = refused(client_for(fake, stamp, pki, client_secret_file=str(tmp_path / "empty")))
    assert (err.reason, err.message) == ("auth", "the client secret is empty")
    assert stamp.log == []


def test_an_unset_secret_variable_is_an_auth_error(fake, pki, monkeypatch):
    monkeypatch.delenv("ASE_UNSET_SECRET", raising=False)
    stamp = stamp_of(fake)
    err = refused(client_for(fake, stamp, pki, client_secret_file=None, client_secret_env="ASE_UNSET_SECRET"))
    assert (err.reason, err.message) == ("auth", "the client secret is empty")


def test_an_unreadable_secret_file_is_an_auth_error(fake, pki, tmp_path):
    stamp = stamp_of(fake)
    err = refused(client_for(fake, stamp, pki, client_secret_file=str(tmp_path / "missing")))
    assert err.reason == "auth"
    assert err.message.startswith("cannot read client_secret_file: ")


def test_a_wrong_secret_is_refused_by_the_token_endpoint(fake, pki, tmp_path):
    (tmp_path / "wrong").write_text("not-the-secret")
    stamp = stamp_of(fake)
    err = refused(client_for(fake, stamp, pki, client_secret_file=str(tmp_path / "wrong")))
    assert err.reason == "auth"
    assert err.message == (
        "token request refused: invalid_client "
        "MSIS9622: Client authentication failed. Please verify the credential provided is valid."
    )
    assert "not-the-secret" not in str(err)


def test_a_changed_secret_file_is_used_at_the_next_read(fake, pki, tmp_path):
    secret = tmp_path / "rotating"
    secret.write_text("old-secret")
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki, client_secret_file=str(secret))
    assert refused(client).reason == "auth"
    secret.write_text(SECRET)
    assert client.read().current_version == "1.2408.1.50"


def test_an_unreadable_or_unusable_certificate_file_is_an_auth_error(fake, pki, tmp_path):
    stamp = stamp_of(fake, secret=None, certificate=pki["spn"].cert)
    err = refused(client_for(fake, stamp, pki, client_certificate_file=str(tmp_path / "missing.pem")))
    assert err.reason == "auth" and err.message.startswith("cannot read client_certificate_file: ")
    (tmp_path / "junk.pem").write_text("not a certificate")
    err = refused(client_for(fake, stamp, pki, client_certificate_file=str(tmp_path / "junk.pem")))
    assert err.reason == "auth" and err.message.startswith("client certificate file cannot be used: ")


def test_a_token_endpoint_that_is_down_is_an_auth_error(fake, pki):
    stamp = stamp_of(fake)
    stamp.faults.token_down = True
    assert refused(client_for(fake, stamp, pki)).reason == "auth"


def test_a_client_without_the_default_provider_subscription_is_told_what_to_grant(fake, pki, monkeypatch):
    import fake_azurestack

    monkeypatch.setattr(fake_azurestack, "SYSTEM_SUBSCRIPTIONS", ("Consumption Subscription",))
    stamp = stamp_of(fake)
    err = refused(client_for(fake, stamp, pki))
    assert err.reason == "auth"
    assert err.message == (
        f"the Default Provider Subscription is not visible to client {stamp.client_id}: "
        "give it read access (Reader) on that subscription, or set subscription_id"
    )


def test_after_a_401_the_next_read_starts_afresh(fake, pki):
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki)
    client.read()
    stamp.faults.status, stamp.faults.times = 401, 1
    err = refused(client)
    assert err.reason == "auth"
    assert err.message.startswith("update location answered HTTP 401: ")
    stamp.log.clear()
    client.read()
    assert fake.token_requests.count(stamp.name) == 2
    assert any(p.endswith("/subscriptions") for p in paths(stamp))


def test_after_an_http_error_discovery_is_redone_but_the_token_kept(fake, pki):
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki)
    client.read()
    stamp.faults.status, stamp.faults.times = 404, 1
    assert refused(client).reason == "http"
    stamp.log.clear()
    client.read()
    assert fake.token_requests.count(stamp.name) == 1
    assert any(p.endswith("/subscriptions") for p in paths(stamp))
    assert any("api-version=2021-07-01" in line for line in stamp.log)


# ---------------------------------------------------------------- faults, each with its reason


@pytest.mark.parametrize(
    ("fault", "value", "reason", "message"),
    [
        ("html", True, "parse", "metadata endpoint answered text/html, not JSON"),
        ("truncated", True, "parse", "metadata endpoint answered malformed JSON"),
        ("oversized", 9 * 1024 * 1024, "size", "response larger than 8 MiB"),
        ("deep_json", 100_000, "size", "metadata endpoint answered more than 50000 JSON objects"),
        ("deep_json", 20_000, "parse", "metadata endpoint answered JSON nested too deeply"),
        ("empty_objects", 60_000, "size", "metadata endpoint answered more than 50000 JSON objects"),
        ("drip", 0.5, "timeout", "no complete answer within 2 s (the whole request's deadline)"),
    ],
)
def test_each_fault_is_refused_with_its_reason(fake, pki, fault, value, reason, message):
    stamp = stamp_of(fake)
    setattr(stamp.faults, fault, value)
    try:
        err = refused(client_for(fake, stamp, pki))
    finally:
        stamp.faults.clear()
    assert err.reason == reason
    if message is not None:
        assert err.message == message


def test_a_5xx_is_retried_twice_then_an_http_error(fake, pki):
    stamp = stamp_of(fake)
    stamp.faults.status = 503
    err = refused(client_for(fake, stamp, pki, timeout=5.0))
    assert err.reason == "http"
    assert err.message == "metadata endpoint answered HTTP 503: InternalServerError: Encountered internal server error."
    assert len(stamp.log) == 3


def test_a_5xx_is_not_retried_past_the_collection_deadline(fake, pki):
    stamp = stamp_of(fake)
    stamp.faults.status = 500
    started = time.monotonic()
    err = refused(client_for(fake, stamp, pki, timeout=0.45))
    # The collection may last three times 0.45 s: room for the first back-off (0.5 s) even on a
    # slow first request, never for the second (1 s), which would begin after 0.5 s at least.
    assert err.reason == "http"
    assert len(stamp.log) == 2
    assert time.monotonic() - started < 3 * 0.45 + 0.25


def test_a_429_is_retried_after_its_retry_after(fake, pki):
    stamp = stamp_of(fake)
    stamp.faults.status, stamp.faults.times, stamp.faults.retry_after = 429, 2, 0
    assert client_for(fake, stamp, pki).read().current_version == "1.2408.1.50"
    assert paths(stamp)[:3] == ["GET /metadata/endpoints"] * 3


def test_a_429_whose_wait_outlasts_the_deadline_is_not_retried(fake, pki):
    stamp = stamp_of(fake)
    stamp.faults.status, stamp.faults.retry_after = 429, 30
    err = refused(client_for(fake, stamp, pki))
    assert err.reason == "http"
    assert err.message == "metadata endpoint answered HTTP 429: TooManyRequests: Rate limit exceeded."
    assert len(stamp.log) == 1


def test_a_next_link_to_another_host_is_not_followed(fake, pki):
    stamp = stamp_of(fake)
    stamp.faults.foreign_next_link = True
    err = refused(client_for(fake, stamp, pki))
    assert (err.reason, err.message) == ("parse", "updates nextLink points to another host; not followed")


def test_an_untrusted_server_certificate_is_a_tls_error(fake, pki):
    stamp = stamp_of(fake)
    err = refused(client_for(fake, stamp, pki, ca_file=None))
    assert (err.reason, err.message) == ("tls", "TLS verification failed: certificate verify failed")


def test_a_refused_connection_is_a_connection_error(pki):
    config = AdminConfig(
        endpoint="https://127.0.0.1:9", tenant="adfs", client_id="x", client_secret_file=pki["secret_file"]
    )
    err = refused(AdminClient(config))
    assert (err.reason, err.message) == ("connection", "cannot connect: Connection refused")


def test_a_secret_in_an_error_message_is_scrubbed(fake, pki):
    stamp = stamp_of(fake)
    stamp.faults.token_echo = True
    err = refused(client_for(fake, stamp, pki))
    assert err.reason == "auth"
    assert SECRET not in str(err)


# ---------------------------------------------------------------- the session


def test_the_session_ignores_the_environment_and_names_itself(pki, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    session = BoundedSession(pki["ca_file"], 2.0, 1024)
    assert session.trust_env is False
    assert session.verify == pki["ca_file"]
    assert session.headers["User-Agent"] == f"azurestack-exporter/{__version__}"


def test_the_session_bounds_the_body(fake, pki):
    stamp = stamp_of(fake)
    url = f"{fake.endpoint(stamp.name)}/metadata/endpoints"
    assert BoundedSession(pki["ca_file"], 2.0, 4096).get(url, params={"api-version": "2015-01-01"}).json()
    with pytest.raises(CollectionError) as caught:
        BoundedSession(pki["ca_file"], 2.0, 100).get(url, params={"api-version": "2015-01-01"})
    assert (caught.value.reason, caught.value.message) == ("size", "response larger than 0 MiB")


def test_a_passed_collection_deadline_refuses_before_connecting(pki):
    session = BoundedSession(pki["ca_file"], 2.0, 1024)
    session.deadline = time.monotonic() - 1
    with pytest.raises(requests.exceptions.Timeout, match="collection deadline reached"):
        session.get("https://127.0.0.1:9/")


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-09-30T08:09:12Z", dt.datetime(2025, 9, 30, 8, 9, 12, tzinfo=dt.UTC).timestamp()),
        ("2025-09-30 08:09:12", dt.datetime(2025, 9, 30, 8, 9, 12, tzinfo=dt.UTC).timestamp()),
        ("2025-09-30T08:09:12.5z", dt.datetime(2025, 9, 30, 8, 9, 12, tzinfo=dt.UTC).timestamp() + 0.5),
        ("2025-09-30T08:09:12+02:00", dt.datetime(2025, 9, 30, 6, 9, 12, tzinfo=dt.UTC).timestamp()),
        ("2025-09-30T08:09:12-0130", dt.datetime(2025, 9, 30, 9, 39, 12, tzinfo=dt.UTC).timestamp()),
        ("  1970-01-01T00:00:00Z ", 0.0),
        ("0001-01-01T00:00:00", None),
        ("9999-12-31T23:59:59Z", None),
        ("1969-12-31T23:59:59Z", None),
        ("2025-02-30T00:00:00Z", None),
        ("2025-09-30", None),
        (1759219752, None),
        (None, None),
    ],
)
def test_timestamps_are_parsed_as_the_api_sends_them(text, expected):
    assert parse_timestamp(text) == expected


def test_updates_without_a_version_are_skipped_and_names_lose_their_location():
    items = [
        {"name": "broken first", "properties": {}},
        {"name": "local/sub/Microsoft1.2501.0.21", "properties": {"version": " 1.2501.0.21 ", "state": "Ready"}},
        {"name": "OEM2.4", "properties": {"version": "2.4", "packageType": "OEM", "publisher": "Dell"}},
        {"name": "broken", "properties": {"version": 2501}},
        {"name": "no properties"},
        {"properties": "not a mapping"},
    ]
    assert updates_from(items) == (
        AvailableUpdate("Microsoft1.2501.0.21", "1.2501.0.21", "", "Ready", ""),
        AvailableUpdate("OEM2.4", "2.4", "OEM", "Unknown", "Dell"),
    )
    assert updates_from([{"properties": {"version": "1.2501.0.21"}}])[0].name == ""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "update location is not a JSON object"),
        ({"properties": []}, "update location has no properties"),
        ({"properties": {"currentVersion": "  "}}, "update location has no currentVersion"),
        ({"properties": {"currentVersion": 1.2}}, "update location has no currentVersion"),
    ],
)
def test_a_location_without_a_current_version_is_a_parse_error(body, message):
    with pytest.raises(CollectionError) as caught:
        reading_from(body, [], "2021-07-01", "local", "sub")
    assert (caught.value.reason, caught.value.message) == ("parse", message)


def test_a_location_reading_keeps_what_it_can_and_drops_blanks():
    reading = reading_from(
        {"properties": {"currentVersion": " 1.2501.0.21 ", "currentOemVersion": " ", "state": 7, "oemFamily": " HPE "}},
        [],
        "2016-05-01",
        "east",
        "sub-1",
    )
    assert reading.current_version == "1.2501.0.21"
    assert reading.current_oem_version is None
    assert reading.state is None
    assert reading.oem_family == "HPE"
    assert (reading.api_version, reading.location, reading.subscription_id) == ("2016-05-01", "east", "sub-1")


def test_run_candidates_are_active_updates_first_then_the_newest_installed():
    def update(version: str, state: str, package_type: str = "Infrastructure") -> AvailableUpdate:
        return AvailableUpdate(f"Microsoft{version}", version, package_type, state)

    updates = (
        update("1.2406.0.8", "Installed"),
        update("1.2408.1.50", "Installed"),
        update("2.4.2502.3", "Installing", "OEM"),
        update("1.2501.0.21", "Installing"),
        update("1.2311.0.1", "Installed"),
        update("1.2506.0.1", "Ready"),
        AvailableUpdate("", "1.2505.0.1", "Infrastructure", "PreparationFailed"),
    )
    assert [u.version for u in run_candidates(updates)] == ["1.2501.0.21", "1.2408.1.50", "1.2406.0.8"]


def test_json_is_bounded_in_objects_and_depth():
    assert parse_json(b'{"a": [1, {"b": 2}]}', "x") == {"a": [1, {"b": 2}]}
    assert parse_json(b"[" * 3 + b"]" * 3, "x", max_objects=3) == [[[]]]
    with pytest.raises(CollectionError) as caught:
        parse_json(b"[" * 4 + b"]" * 4, "things", max_objects=3)
    assert (caught.value.reason, caught.value.message) == ("size", "things answered more than 3 JSON objects")
    with pytest.raises(CollectionError) as caught:
        parse_json(b"{nope", "things")
    assert (caught.value.reason, caught.value.message) == ("parse", "things answered malformed JSON")


def test_transport_errors_are_told_apart():
    assert transport_error(DeadlineExceededError("late")).reason == "timeout"
    assert str(transport_error(DeadlineExceededError("late"))) == "timeout: late"
    assert str(transport_error(requests.exceptions.ReadTimeout("x"))) == "timeout: request timed out"
    assert str(transport_error(requests.exceptions.SSLError("certificate verify failed: self-signed"))) == (
        "tls: TLS verification failed: certificate verify failed"
    )
    read_timeout = requests.exceptions.ConnectionError(
        __import__("urllib3").exceptions.ReadTimeoutError(None, "/", "read timed out")
    )
    assert str(transport_error(read_timeout)) == "timeout: request timed out while reading the response"
    refused_error = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    assert str(transport_error(refused_error)) == "connection: cannot connect: Connection refused"
    odd = requests.exceptions.InvalidURL("https://h/p?sig=abc is odd")
    assert str(transport_error(odd)) == "connection: <url> is odd"


def test_unexpected_errors_name_their_type_and_nothing_secret():
    assert str(unexpected(KeyError())) == "error: KeyError"
    assert str(unexpected(ValueError("bad"), lambda text: text.upper())) == "error: ValueError: BAD"
    assert str(unexpected(ValueError("see https://h/p?sig=s3cret"))) == "error: ValueError: see <url>"
    assert len(unexpected(ValueError("x" * 500)).message) == len("ValueError: ") + 200


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (" 12 ", 12.0), ("²", 1.0), ("soon", 1.0), ("", 1.0), ("1234567890", 1.0)],
)
def test_retry_after_is_seconds_or_one(fake, pki, header, expected):
    from exporter.admin import _retry_after

    response = requests.Response()
    response.headers["Retry-After"] = header
    assert _retry_after(response) == expected


def test_retry_after_as_a_date_is_the_time_until_then():
    from exporter.admin import _retry_after

    response = requests.Response()
    response.headers["Retry-After"] = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= _retry_after(response) <= 30
    response.headers["Retry-After"] = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert _retry_after(response) == 0.0


def _response(status: int, body: bytes) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.reason = "Reason Phrase"
    return response


@pytest.mark.parametrize(
    ("status", "body", "rejects"),
    [
        (400, b'{"error": {"code": "InvalidApiVersionParameter", "message": "no"}}', True),
        (400, b'{"error": {"code": "NoRegisteredProviderFound", "message": "no"}}', True),
        (400, b'{"error": {"code": "BadRequest", "message": "The api-version is wrong"}}', True),
        (400, b'{"error": {"code": "BadRequest", "message": "nope"}}', False),
        (404, b'{"error": {"code": "InvalidResourceType", "message": "for api version \'x\'"}}', True),
        (404, b'{"error": {"code": "InvalidResourceType", "message": "for api-version x"}}', True),
        (404, b'{"error": {"code": "InvalidResourceType", "message": "no such type"}}', False),
        (404, b'{"error": {"code": "ResourceNotFound", "message": "for api version x"}}', False),
        (404, b'{"error": {"code": "InvalidApiVersionParameter", "message": "x"}}', False),
        (400, b"<html>", False),
        (400, b'["error"]', False),
        (400, b'{"error": "InvalidApiVersionParameter"}', False),
        (400, b'{"error": {"message": "the api-version is wrong"}}', True),
        (404, b'{"error": {"code": "InvalidResourceType"}}', False),
    ],
)
def test_which_answers_reject_an_api_version(status, body, rejects):
    from exporter.admin import _rejects_api_version

    assert _rejects_api_version(_response(status, body)) is rejects


def test_arm_errors_are_shortened_or_fall_back_to_the_reason_phrase():
    from exporter.admin import _arm_error

    assert _arm_error(_response(500, b'{"error": {"code": "Boom", "message": "went wrong"}}')) == "Boom: went wrong"
    assert _arm_error(_response(500, b'{"error": {"code": "Boom"}}')) == "Boom"
    assert _arm_error(_response(500, b'{"error": {"code": "C", "message": "fix X"}}')) == "C: fix X"
    assert _arm_error(_response(500, b'{"error": ["C"]}')) == "Reason Phrase"
    long = _arm_error(_response(500, b'{"error": {"code": "C", "message": "' + b"m" * 300 + b'"}}'))
    assert long == "C: " + "m" * 159 + "\u2026"  # cut to 160 characters, and marked as cut
    assert _arm_error(_response(500, b"<html>")) == "Reason Phrase"
    assert _arm_error(_response(500, b'{"error": {"message": "no code"}}')) == "Reason Phrase"
    empty = _response(500, b"")
    empty.reason = None
    assert _arm_error(empty) == "error"


def test_api_versions_are_tried_newest_first():
    assert API_VERSIONS == ("2021-07-01", "2016-05-01")


def test_runs_of_a_failed_update_carry_no_step_when_it_did_not_fail():
    from exporter.admin import run_from

    progress = {"steps": [{"name": "Step", "status": "Error", "description": "why", "steps": []}]}
    run = run_from({"properties": {"state": "InProgress", "progress": progress}}, "1.2501.0.21")
    assert run == UpdateRun("1.2501.0.21", "InProgress", None, None, None, None)
    assert run_from({"properties": {"state": "  ", "progress": {}}}, "v").state == "Unknown"
    assert run_from({"properties": {"state": 3}}, "v").state == "Unknown"
    assert run_from({"properties": "x"}, "v") is None
    assert run_from([], "v") is None


def test_the_deadline_covers_the_whole_collection(fake, pki):
    stamp = stamp_of(fake)
    stamp.faults.latency = 0.4
    try:
        err = refused(client_for(fake, stamp, pki, timeout=0.5))
    finally:
        stamp.faults.clear()
    # Each request fits in 0.5 s; the collection's whole deadline (three times 0.5 s) does not fit seven.
    assert err.reason == "timeout"
    assert 3 <= len(stamp.log) <= 5


def test_closing_a_client_closes_its_connections(fake, pki):
    client = client_for(fake, stamp_of(fake), pki)
    client.next_read_in = 20.0  # kept for the next read...
    client.read()
    pools = client.session.adapters["https://"].poolmanager.pools
    assert len(pools) == 1
    client.close()
    assert len(pools) == 0


def test_low_level_failures_are_shortened_to_what_an_operator_can_act_on():
    from exporter.admin import _short, transport_exception

    assert _short(OSError("[Errno -2] Name or service not known")) == "Name or service not known"
    assert _short(OSError("read timed out after 3 s")) == "timed out"
    assert _short(OSError("Max retries exceeded with url: /p?sig=s3cret (Caused by X)")) == (
        "Max retries exceeded with url: <url> (Caused by X)"
    )
    failure = transport_exception(OSError("Connection refused by peer"))
    assert isinstance(failure, requests.exceptions.ConnectionError)
    assert str(failure) == "Connection refused"


def test_an_oversized_certificate_file_is_refused_unread(fake, pki, tmp_path):
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"-" * (1024 * 1024 + 1))
    stamp = stamp_of(fake, secret=None, certificate=pki["spn"].cert)
    err = refused(client_for(fake, stamp, pki, client_certificate_file=str(huge)))
    assert err.reason == "auth" and err.message.startswith("cannot read client_certificate_file: ")


def test_retry_after_missing_or_dated_without_a_zone():
    from exporter.admin import _retry_after

    assert _retry_after(requests.Response()) == 1.0
    response = requests.Response()
    response.headers["Retry-After"] = email.utils.formatdate(time.time() + 30, localtime=False, usegmt=False)
    assert response.headers["Retry-After"].endswith("-0000")
    assert 28 <= _retry_after(response) <= 30


def test_a_run_state_is_kept_to_32_characters():
    from exporter.admin import run_from

    state = run_from({"properties": {"state": "S" * 40}}, "v").state
    assert len(state) == 32 and state.startswith("S" * 31)  # cut, and marked as cut


def test_credential_file_failures_say_why(fake, pki, tmp_path):
    stamp = stamp_of(fake, secret=None, certificate=pki["spn"].cert)
    err = refused(client_for(fake, stamp, pki, client_certificate_file=str(tmp_path / "missing.pem")))
    assert "No such file or directory" in err.message
    (tmp_path / "junk.pem").write_text("not a certificate")
    err = refused(client_for(fake, stamp, pki, client_certificate_file=str(tmp_path / "junk.pem")))
    assert err.message != "client certificate file cannot be used: None"
    assert len(err.message) > len("client certificate file cannot be used: ") + 5


def test_after_a_401_a_configured_subscription_and_location_are_kept(fake, pki):
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki, subscription_id=stamp.subscription_id, location="local")
    client.read()
    stamp.faults.status, stamp.faults.times = 401, 1
    assert refused(client).reason == "auth"
    stamp.log.clear()
    assert client.read().location == "local"
    assert not any(p.endswith(("/subscriptions", "/locations")) for p in paths(stamp))


def test_a_malformed_or_repeating_next_link_is_refused(fake, pki):
    stamp = stamp_of(fake, answers={"updates": {"value": [], "nextLink": 5}})
    err = refused(client_for(fake, stamp, pki))
    assert (err.reason, err.message) == ("parse", "updates list has a malformed nextLink")
    stamp = stamp_of(fake)
    stamp.answers = {"updates": {"value": [], "nextLink": f"{fake.endpoint(stamp.name)}/subscriptions/x/updates?p=2"}}
    err = refused(client_for(fake, stamp, pki))
    assert (err.reason, err.message) == ("parse", "updates nextLink repeats a page")


def test_a_list_of_more_than_max_pages_is_refused_and_one_of_exactly_max_pages_is_read(fake, pki):
    from exporter.admin import MAX_PAGES

    versions = [f"1.2408.0.{n}" for n in range(MAX_PAGES + 1)]
    stamp = stamp_of(fake, updates=[Update(v, "Ready") for v in versions[:MAX_PAGES]], page_size=1)
    assert len(client_for(fake, stamp, pki, timeout=20.0).read().updates) == MAX_PAGES
    stamp = stamp_of(fake, updates=[Update(v, "Ready") for v in versions], page_size=1)
    err = refused(client_for(fake, stamp, pki, timeout=20.0))
    assert (err.reason, err.message) == ("parse", f"updates list has more than {MAX_PAGES} pages")


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (300, "http", "updates answered HTTP 300: Reason Phrase"),
        (302, "http", "updates answered HTTP 302: Reason Phrase"),
        (401, "auth", "updates answered HTTP 401: Reason Phrase"),
        (403, "auth", "updates answered HTTP 403: Reason Phrase"),
    ],
)
def test_an_answer_that_is_not_a_success_is_refused_by_its_status(fake, pki, status, reason, message):
    response = _response(status, b'{"value": []}')
    response.headers["Content-Type"] = "application/json"
    with pytest.raises(CollectionError) as caught:
        client_for(fake, stamp_of(fake), pki)._json(response, "updates")
    assert (caught.value.reason, caught.value.message) == (reason, message)


def test_a_success_is_parsed_only_when_it_says_it_is_json(fake, pki):
    client = client_for(fake, stamp_of(fake), pki)
    response = _response(299, b'{"value": []}')
    response.headers["Content-Type"] = "Application/JSON; charset=utf-8"
    assert client._json(response, "updates") == {"value": []}
    for header, kind in ((None, "no content type"), ("", "no content type"), (" text/html ; q=1", "text/html")):
        response = _response(200, b'{"value": []}')
        if header is not None:
            response.headers["Content-Type"] = header
        with pytest.raises(CollectionError) as caught:
            client._json(response, "updates")
        assert (caught.value.reason, caught.value.message) == ("parse", f"updates answered {kind}, not JSON")


# ---------------------------------------------------------------- what is read when


def location_path(stamp: FakeStamp) -> str:
    return (
        f"GET /subscriptions/{stamp.subscription_id}/resourceGroups/System.local"
        "/providers/Microsoft.Update.Admin/updateLocations/local"
    )


def alerts_path(stamp: FakeStamp) -> str:
    return (
        f"GET /subscriptions/{stamp.subscription_id}/resourceGroups/System.local"
        "/providers/Microsoft.InfrastructureInsights.Admin/regionHealths/local/alerts"
    )


def test_when_the_update_location_says_nothing_changed_a_read_is_two_requests(fake, pki):
    stamp = stamp_of(fake, runs={"1.2408.1.50": [Run("Succeeded", "2025-09-29T20:00:00Z", "PT14H")]})
    client = client_for(fake, stamp, pki)
    first = client.read()
    stamp.log.clear()
    second = client.read()
    assert paths(stamp) == [location_path(stamp), alerts_path(stamp)]  # and the alerts, every read
    assert fake.token_requests.count(stamp.name) == 1  # the token is reused too
    assert second == first  # the updates and runs read last time still hold
    assert len(second.updates) == 3 and len(second.runs) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"current_version": "1.2501.0.21"},
        {"current_oem_version": "2.4.2502.3"},
        {"state": "UpdateAvailable"},
        {"last_checked": "2025-10-02T15:17:41"},
        {"last_updated": "2025-10-02T08:09:12Z"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_anything_the_update_location_says_differently_reads_updates_and_runs_again(fake, pki, change):
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki)
    client.read()
    for key, value in change.items():
        setattr(stamp, key, value)
    stamp.updates.append(Update("1.2501.1.47", "Ready"))
    stamp.log.clear()
    reading = client.read()
    assert f"{location_path(stamp)}/updates" in paths(stamp)
    assert "1.2501.1.47" in [u.version for u in reading.updates]


@pytest.mark.parametrize(
    ("location_state", "update_state", "run_state"),
    [
        ("UpdateInProgress", "Ready", "Succeeded"),
        ("PreparationInProgress", "Ready", "Succeeded"),
        ("AppliedSuccessfully", "Downloading", "Succeeded"),
        ("AppliedSuccessfully", "Installing", "Succeeded"),
        ("AppliedSuccessfully", "HealthCheckInProgress", "Succeeded"),
        ("AppliedSuccessfully", "Installed", "InProgress"),
    ],
)
def test_while_an_update_is_under_way_every_read_is_whole(fake, pki, location_state, update_state, run_state):
    """Progress shows in the updates and runs, not in the update location: they are read each time."""
    stamp = stamp_of(
        fake,
        state=location_state,
        updates=[Update("1.2408.1.50", "Installed"), Update("1.2501.0.21", update_state)],
        runs={"1.2408.1.50": [Run(run_state, "2025-09-29T20:00:00Z", "PT2H")]},
    )
    client = client_for(fake, stamp, pki)
    client.read()
    stamp.updates[1].state = "Installed"
    stamp.log.clear()
    reading = client.read()
    assert f"{location_path(stamp)}/updates" in paths(stamp)
    assert [u.state for u in reading.updates] == ["Installed", "Installed"]


def test_updates_and_runs_are_read_again_at_least_every_full_read_period(fake, pki, monkeypatch):
    """What the update location does not tell (an update downloaded meanwhile) is missed for an hour at most."""
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki)
    client.read()
    stamp.updates[1].state = "Downloading"
    stamp.log.clear()
    assert [u.state for u in client.read().updates] == ["Installed", "Ready", "Ready"]  # not told: not seen yet
    assert paths(stamp) == [location_path(stamp), alerts_path(stamp)]
    monkeypatch.setattr(admin, "FULL_READ_PERIOD", 0.0)
    assert [u.state for u in client.read().updates] == ["Installed", "Downloading", "Ready"]


def test_after_a_refusal_the_next_read_is_whole(fake, pki):
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki)
    client.read()
    stamp.faults.status, stamp.faults.times = 404, 1
    assert refused(client).reason == "http"
    stamp.updates.append(Update("1.2501.1.47", "Ready"))
    stamp.log.clear()
    assert "1.2501.1.47" in [u.version for u in client.read().updates]


# ---------------------------------------------------------------- connections and trust


def test_connections_are_closed_after_a_read_unless_the_next_read_comes_before_a_server_would_drop_them(pki):
    with FakeAzureStack(make_server_cert(pki["ca"])) as server:
        stamp = stamp_of(server)
        client = client_for(server, stamp, pki)
        assert client.next_read_in > admin.KEEP_ALIVE_MAX  # check, and long refresh intervals
        client.read()
        deadline = time.monotonic() + 5
        while server.open_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.open_connections == 0
        client.next_read_in = 20.0
        client.read()
        opened = server.connections
        client.read()
        assert server.connections == opened  # the kept connection served the next read
        assert server.open_connections == 1


def test_every_session_trusting_one_ca_file_shares_one_context_and_still_checks_the_host(fake, pki):
    a, b = client_for(fake, stamp_of(fake), pki), client_for(fake, stamp_of(fake), pki)
    a.next_read_in = b.next_read_in = 20.0  # their sessions are kept between reads
    a.read()
    b.read()
    assert a.session.adapter.context is b.session.adapter.context
    assert a.session.adapter.context is trust_context(pki["ca_file"])
    # A certificate from the trusted CA, for another address, is still refused.
    with FakeAzureStack(make_server_cert(pki["ca"], host="127.0.0.2")) as elsewhere:
        stamp = stamp_of(elsewhere)
        err = refused(client_for(elsewhere, stamp, pki))
        assert err.reason == "tls"


def test_a_ca_file_replaced_on_disk_is_trusted_at_the_next_read(fake, pki, tmp_path):
    ca_file = tmp_path / "ca.pem"
    other = make_ca("another CA")
    ca_file.write_bytes(other.cert_pem)
    stamp = stamp_of(fake)
    client = client_for(fake, stamp, pki, ca_file=str(ca_file))
    assert refused(client).reason == "tls"
    ca_file.write_bytes(pki["ca"].cert_pem + other.cert_pem)  # the operator adds the stamps' CA
    assert client.read().current_version == "1.2408.1.50"
    ca_file.unlink()
    err = refused(client)
    assert err.reason == "tls" and "CA file" in err.message


def test_the_token_is_reused_until_shortly_before_it_expires_then_renewed(pki):
    # Tokens that last 302 s: reused for 2 s (renewed 300 s before they expire), then asked for again.
    with FakeAzureStack(make_server_cert(pki["ca"]), token_lifetime=302) as server:
        stamp = stamp_of(server)
        client = client_for(server, stamp, pki)
        client.read()
        client.read()
        assert server.token_requests.count(stamp.name) == 1
        time.sleep(2.1)
        stamp.log.clear()
        client.read()
        assert server.token_requests.count(stamp.name) == 2
        assert "GET /metadata/endpoints" not in paths(stamp)  # the authority is remembered
    with FakeAzureStack(make_server_cert(pki["ca"]), token_lifetime=60) as server:
        stamp = stamp_of(server)
        client = client_for(server, stamp, pki)
        client.read()
        client.read()
        assert server.token_requests.count(stamp.name) == 2  # too short to keep: one read each
