"""A faithful fake of Azure Stack Hub admin endpoints, for the tests, the benchmark and demos.

One HTTPS server on 127.0.0.1 plays the identity provider (AD FS at ``/adfs`` and Entra ID
at ``/<tenant>``) and any number of stamps, each under ``/stamps/<name>`` (its endpoint).
Answers are built from Microsoft's recorded responses in ``fixtures/azurestack`` with the
quirks real servers have (``<location>/<name>`` update names, ``prerequisites``,
``availabilityType: "Local"``, timestamps without zone or with 7-8 fractional digits). Besides
the Update admin API, each stamp serves its Health provider (``Microsoft.InfrastructureInsights.Admin``:
region health and the alerts list, closed and active, paged when ``alerts_page_size`` says so),
from ``alerts`` (lists of ``Alert``: see ``healthy``, ``critical``, ``certificate_expiring``,
``closed_only``, ``many_alerts``, ``odd_alerts``) and with its own faults (``health_faults``).
``FakeStamp.requests(kind)`` counts the requests of a kind the stamp was sent.

It checks what a real stamp checks: the client secret, or the client assertion's signature
against the registered certificate (RS256 + x5t for AD FS, PS256 + x5t#S256 for Entra);
bearer tokens it issued for that stamp's audience; supported api-versions. Faults are
switchable per stamp while it runs: latency, HTTP 500/401/429 (with Retry-After), HTML
instead of JSON, truncated JSON, an oversized body, the token endpoint down, a nextLink to
another host; ``use_certificate`` swaps the server certificate (e.g. for one from another CA).

``serve=False`` builds the same fake without its server, for a server that does its own I/O
(``bench/fleet.py``: a fleet of stamps, each on its own address) and hands each request,
read whole, to ``respond``; a subclass may then put the identity provider on another origin
(``identity_url``), as real stamps have it (``adfs.<region>`` beside ``adminmanagement.<region>``).

Run it alone to demo the exporter against it (docs/development.md tells each stamp's story):
    python tests/fake_azurestack.py --stamps 3 --dir /tmp/fake [--port 8443]   # prints the exporter config
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime
import hashlib
import hmac
import io
import json
import re
import secrets
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

sys.path.insert(0, str(Path(__file__).parent))
from pki import Issued, make_ca, make_server_cert

FIXTURES = Path(__file__).parent / "fixtures" / "azurestack"
ARM_API_VERSIONS = ("2015-01-01", "2016-06-01", "2019-06-01")
UPDATE_API_VERSIONS = ("2021-07-01", "2016-05-01")
SYSTEM_SUBSCRIPTIONS = ("Default Provider Subscription", "Consumption Subscription", "Metering Subscription")


def _recorded(name: str) -> dict:
    """The response body of the first interaction in a PowerShell test recording."""
    recording = json.loads((FIXTURES / name).read_text())
    interaction = next(iter(recording.values()))
    return json.loads(interaction["Response"]["Content"])


def _example(name: str) -> dict:
    """The 200 response body of a swagger example."""
    return json.loads((FIXTURES / name).read_text())["responses"]["200"]["body"]


LOCATION_2021 = _recorded("Get-AzsUpdateLocation.Recording.json")
UPDATE_2021 = _recorded("Get-AzsUpdate.Recording.json")["value"][0]
LOCATION_2016 = _example("UpdateLocations-Get-2016-05-01.json")
UPDATE_2016 = _example("Updates-List-2016-05-01.json")["value"][0]
LAST_UPDATED_2021 = _example("UpdateLocations-Get-2021-07-01.json")["properties"]["lastUpdated"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Faults:
    latency: float = 0.0
    status: int | None = None  # 500, 401, 429, ...
    retry_after: int = 1
    html: bool = False
    truncated: bool = False
    oversized: int = 0  # bytes of body to send
    token_down: bool = False
    foreign_next_link: bool = False
    drip: float = 0.0  # seconds between body bytes, after prompt headers
    deep_json: int = 0  # nesting depth of a JSON body
    empty_objects: int = 0  # a page of that many {} items
    retry_after_raw: str | None = None  # a Retry-After header sent as it is, with 429
    api_version_404: bool = False  # ARM's 404 InvalidResourceType for an api-version the provider lacks
    token_echo: bool = False  # the token endpoint answers 200 with an HTML page echoing the request form
    times: int = 0  # with status: the fault answers only the next `times` requests (0: every one)
    dripped: int = 0  # body bytes sent so far by the drip fault
    message: str = ""  # with status: the ARM error message sent (else a real one)
    compact_updates: int = 0  # the updates list: pages of this many minimal entries each...
    compact_pages: int = 1  # ...linked by nextLink, this many pages

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


@dataclass
class Update:
    version: str
    state: str = "Ready"
    package_type: str = "Infrastructure"  # Microsoft packages: Services/Infrastructure; vendor: OEM
    min_version: str | None = None  # minVersionRequired (2021-07-01); None: the stamp's current version
    min_oem_version: str = "2.1.0.0"  # minOemVersionRequired, as recorded in 2022


RUNS_2021 = _example("UpdateRuns-List-2021-07-01.json")["value"]
RUNS_2016 = _example("UpdateRuns-List-2016-05-01.json")["value"]


@dataclass
class Run:
    """One update run, served in the shape of Microsoft's examples (its step tree) and, for a
    failure, of the recorded run whose step says "Error" with the reason in its description."""

    state: str  # Succeeded, Failed, InProgress
    started: str | None  # ISO timestamp, as the API sends it; None: no timeStarted key (a real failed run)
    duration: str  # ISO 8601 duration, e.g. PT14H43M50.0644552S
    failed_step: str = "Update is blocked due to health check failure"
    failed_description: str = (
        "Update is blocked due to health check failure.\r\n    To remediate please check the health check alert "
        "details and \r\n    follow the instructions: https://aka.ms/TroubleshootAzureStackUpdates"
    )
    progress: dict | None = None  # a progress tree sent as it is, instead of the example's
    # The duration sent is the time since ``started`` at each answer, as a running update's grows
    # (else ``duration``, as it is: a test can send one that disagrees with the start).
    live: bool = False


# ---------------------------------------------------------------- the Health resource provider

# Microsoft.InfrastructureInsights.Admin: region health and its alerts, built from real bodies
# recorded in 2020 (fixtures/azurestack/README.md). Where these disagree with the API's
# specification, the recordings win.
HEALTH_PROVIDER = "Microsoft.InfrastructureInsights.Admin"
HEALTH_API_VERSIONS = ("2016-05-01",)


def _body(name: str) -> dict:
    """A recorded response body, as stored."""
    return json.loads((FIXTURES / name).read_bytes())


REGION_HEALTH_2020 = _body("ii-ps-2020__regionHealth-get.json")
ALERTS_2020: list[dict] = _body("ii-ps-2020__alerts-list.json")["value"]  # 73 alerts, all Closed
ALERTS_2017: list[dict] = _body("ii-psrm-2017__alerts-list.json")["value"]  # 9, older shape
RECORDED_SUBSCRIPTION = "8436efc5-b1be-4ae4-996c-861ae6c21e80"  # of the 2020 recording...
RECORDED_LOCATION = "redmond"  # ...and its location


def _first_recorded(fault_type: str) -> int:
    return next(i for i, a in enumerate(ALERTS_2020) if a["properties"]["faultTypeId"] == fault_type)


# The template of an alert whose fault type was never recorded: a plain one, with no alertProperties.
GENERIC_TEMPLATE = _first_recorded("DirectoryServiceUnavailable.Warning")

# Fault types with their severity and title: first those of the recordings (2020, then 2017),
# then those Microsoft's documentation lists (azure-stack-docs, the alerts that trigger proactive
# log collection) with their titles there; a severity the name does not say is the fake's choice.
FAULT_TYPES: tuple[tuple[str, str, str], ...] = (
    *dict.fromkeys(
        (a["properties"]["faultTypeId"], a["properties"]["severity"], a["properties"]["title"])
        for a in (*ALERTS_2020, *ALERTS_2017)
    ),
    ("Urp.UpdateFailure", "Critical", "Update failed"),
    ("UsageBridge.NetworkError", "Warning", "Unable to connect to the remote service"),
    (
        "StorageResourceProviderDependencyUnavailable",
        "Critical",
        "Storage Resource Provider infrastructure/dependencies not available",
    ),
    ("SlbMuxRoutePublicationFailure", "Critical", "Route publication failure"),
    ("Microsoft.Health.FaultType.VirtualDisks.Detached", "Critical", "Storage device failure"),
    ("Microsoft.Health.FaultType.StorageError", "Critical", "Health controller can't access storage account"),
    (
        "Microsoft.Health.FaultType.PhysicalDisk.LostCommunication",
        "Warning",
        "Connectivity to a physical disk has been lost",
    ),
    (
        "StorageService.The.blob.service.is.not.running.on.a.node-Critical",
        "Critical",
        "The blob service isn't running on a node",
    ),
    ("StorageService.Table.service.errors-Critical", "Critical", "Table service errors"),
    ("Microsoft.Health.FaultType.FileShare.Capacity.Warning.Infra", "Warning", "A file share is over 80% utilized"),
    (
        "DirectoryServiceTimeSynchronizationError",
        "Warning",
        "The infrastructure role, Directory Management, has reported time synchronization errors",
    ),
    ("CertificateExpiration.ExternalCert.Warning", "Warning", "Pending external certificate expiration"),
    ("CertificateExpiration.ExternalCert.Critical", "Critical", "Pending external certificate expiration"),
    (
        "AzureStack.ComputeController.VmCreationFailure.LowMemory",
        "Critical",
        "Unable to provision virtual machines for specific class and size due to low memory capacity",
    ),
    ("AzureStack.ComputeController.HostUnresponsive", "Warning", "Node inaccessible for virtual machine placement"),
    ("AzureStack.BackupController.BackupFailedGeneralFault", "Warning", "Backup failed"),
)


@dataclass
class HealthFaults:
    """Faults of the stamp's Health provider alone: its Update provider answers as usual.
    (``Faults`` hit every request of the stamp, the Health provider's too.)"""

    not_found: bool = False  # 404, ARM's error body for a namespace it does not know: provider not registered
    not_found_empty: bool = False  # 404 with an empty body, as real 404s of the admin RPs come
    status: int | None = None  # another ARM error answer, e.g. 500 or 503
    malformed: bool = False  # 200 with the real body cut in half
    html: bool = False  # 200 with an HTML page instead of JSON
    odd_alerts: bool = False  # the list also carries odd_alerts(), as if the stamp had raised them
    stale_summary: bool = False  # the region health's alertSummary says 0 and 0, whatever is active
    only: str | None = None  # "regionHealth" or "alerts": the faults hit that route only (None: both)

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


@dataclass
class Alert:
    """One infrastructure alert, sent as a deep copy of a recorded one (``recorded``: its index
    in ALERTS_2020; else the first recorded alert of the same fault type; else a plain one) with
    these values set. None for ``fault_type``, ``severity`` or ``state`` leaves that key out.

    No recording has an open alert: an Active one is sent with ``closedTimestamp`` and
    ``closedByUserAlias`` empty, as the examples of Microsoft's REST API specification show
    open alerts (fixtures/azurestack/Alerts-List-2016-05-01.json); a Closed one keeps them
    (when its template had ``closedByUserAlias``: the system closes some alerts itself, and
    those have none)."""

    fault_type: str | None  # faultTypeId, e.g. Urp.UpdateFailure
    severity: str | None = "Warning"  # Critical, Warning; anything else is sent as it is
    state: str | None = "Active"  # Active, Closed
    title: str = "Infrastructure role is unhealthy"
    created: str = "2025-10-01T08:14:09.306Z"  # createdTimestamp, as the API writes it
    closed: str | None = None  # closedTimestamp of a Closed alert (None: its created time)
    impacted: str = "Directory management"  # impactedResourceDisplayName (and the id's last segment)
    description: str | None = None  # text (\n: a new line, URLs: links); None: the template's
    remediation: str | None = None  # text, as description; None: the template's
    alert_properties: dict | None = None  # None: the template's alertProperties
    recorded: int | None = None
    alert_id: str | None = None  # None: a GUID derived from the stamp, fault type, impacted resource and time


def _text_runs(text: str) -> list[dict]:
    """Text as the API writes descriptions: Text runs, NewLine between lines, links as
    LinkBegin / Text / LinkEnd."""
    runs: list[dict] = []
    for number, line in enumerate(text.split("\n")):
        if number:
            runs.append({"type": "NewLine"})
        for part in re.split(r"(https?://[^\s]*[^\s.,;)])", line):
            if part.startswith(("https://", "http://")):
                runs += [
                    {"linkType": "Uri", "uri": part, "type": "LinkBegin"},
                    {"text": part, "type": "Text"},
                    {"type": "LinkEnd"},
                ]
            elif part:
                runs.append({"text": part, "type": "Text"})
    return runs


def _region_health_id(stamp: FakeStamp) -> str:
    return (
        f"/subscriptions/{stamp.subscription_id}/resourceGroups/System.{stamp.location}"
        f"/providers/{HEALTH_PROVIDER}/regionHealths/{stamp.location}"
    )


def _rehome(resource_id: str, stamp: FakeStamp) -> str:
    """A resource id of the 2020 recording, under this stamp's subscription and location."""
    resource_id = resource_id.replace(
        f"/subscriptions/{RECORDED_SUBSCRIPTION}/", f"/subscriptions/{stamp.subscription_id}/"
    )
    resource_id = resource_id.replace(f"/System.{RECORDED_LOCATION}/", f"/System.{stamp.location}/")
    return resource_id.replace(f"Locations/{RECORDED_LOCATION}/", f"Locations/{stamp.location}/")


def _alert_guid(stamp: FakeStamp, alert: Alert) -> str:
    if alert.alert_id is not None:
        return alert.alert_id
    # Closing an alert keeps its id: the state and closing time are not part of it.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stamp.name}/{alert.fault_type}/{alert.impacted}/{alert.created}"))


def render_alert(stamp: FakeStamp, alert: Alert, guid: str | None = None) -> dict:
    """The alert as the stamp sends it, in the recorded 2020 shape."""
    index = alert.recorded
    if index is None:
        matching = [i for i, a in enumerate(ALERTS_2020) if a["properties"]["faultTypeId"] == alert.fault_type]
        index = matching[0] if matching else GENERIC_TEMPLATE
    template = ALERTS_2020[index]
    body = copy.deepcopy(template)
    props = body["properties"]
    guid = guid or _alert_guid(stamp, alert)
    body.update(
        id=f"{_region_health_id(stamp)}/alerts/{guid}", name=f"{stamp.location}/{guid}", location=stamp.location
    )
    closed = alert.state == "Closed"
    if closed:
        props["closedTimestamp"] = alert.closed or alert.created
    else:  # as Microsoft's specification examples show an open alert: see the class
        props["closedTimestamp"] = ""
        props["closedByUserAlias"] = ""
    props["createdTimestamp"] = alert.created
    same_kind = template["properties"]["faultTypeId"] == alert.fault_type
    if alert.description is not None or not same_kind:
        props["description"] = _text_runs(alert.description if alert.description is not None else alert.title)
    if alert.remediation is not None:
        props["remediation"] = _text_runs(alert.remediation)
    if alert.alert_properties is not None:
        props["alertProperties"] = alert.alert_properties
    elif not same_kind:
        props["alertProperties"] = {}
    props["alertId"] = guid
    props["lastUpdatedTimestamp"] = props["closedTimestamp"] if closed else alert.created
    for key, value in (("faultTypeId", alert.fault_type), ("severity", alert.severity), ("state", alert.state)):
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    props["title"] = alert.title
    # The recording's resource ids, moved to this stamp and its impacted resource.
    recorded_impacted = template["properties"]["impactedResourceDisplayName"]
    head, _, last = _rehome(template["properties"]["impactedResourceId"], stamp).rpartition("/")
    props["impactedResourceId"] = f"{head}/{alert.impacted if last == recorded_impacted or not same_kind else last}"
    runs = [run for key in ("description", "remediation") for run in props.get(key) or [] if isinstance(run, dict)]
    for run, after in zip(runs, [*runs[1:], {}], strict=True):
        if run.get("linkType") == "ResourceId" and isinstance(run.get("resourceId"), str):
            head, _, last = _rehome(run["resourceId"], stamp).rpartition("/")
            if last == recorded_impacted:
                last = alert.impacted
                if after.get("text") == recorded_impacted:
                    after["text"] = alert.impacted
            run["resourceId"] = f"{head}/{last}"
    props["impactedResourceDisplayName"] = alert.impacted
    return body


def served_alerts(stamp: FakeStamp) -> list[dict]:
    """Every alert the stamp lists, closed and active, in the order real stamps list them (by alertId)."""
    alerts = list(stamp.alerts) + (odd_alerts() if stamp.health_faults.odd_alerts else [])
    bodies, seen = [], set()
    for alert in alerts:
        guid = _alert_guid(stamp, alert)
        while guid in seen:  # two alerts alike: each has its own id, as on a real stamp
            guid = str(uuid.uuid5(uuid.NAMESPACE_URL, guid))
        seen.add(guid)
        bodies.append(render_alert(stamp, alert, guid))
    return sorted(bodies, key=lambda body: body["properties"]["alertId"])


def render_region_health(stamp: FakeStamp, alerts: list[dict] | None = None) -> dict:
    """The region health in the recorded 2020 shape; its alertSummary counts the active alerts
    listed (of severity Critical and Warning) unless the stale_summary fault is on."""
    alerts = served_alerts(stamp) if alerts is None else alerts
    body = copy.deepcopy(REGION_HEALTH_2020)
    body.update(id=_region_health_id(stamp), name=stamp.location, location=stamp.location)
    active = [a["properties"] for a in alerts if a["properties"].get("state") == "Active"]
    summary = body["properties"]["alertSummary"]
    if not stamp.health_faults.stale_summary:
        summary["criticalAlertCount"] = sum(p.get("severity") == "Critical" for p in active)
        summary["warningAlertCount"] = sum(p.get("severity") == "Warning" for p in active)
    return body


def health_json(data: object) -> bytes:
    """As the Health provider sends JSON: compact, raw UTF-8 (the recording has a raw U+2019). A lone
    surrogate, which UTF-8 cannot carry, goes out as its JSON escape ``\\ud800``."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


# ---------------------------------------------------------------- scenarios: lists of Alert


def _recorded_alert(index: int) -> Alert:
    """A recorded alert as it was (Closed, its own id and values)."""
    props = ALERTS_2020[index]["properties"]
    return Alert(
        fault_type=props["faultTypeId"],
        severity=props["severity"],
        state=props["state"],
        title=props["title"],
        created=props["createdTimestamp"],
        closed=props["closedTimestamp"],
        impacted=props["impactedResourceDisplayName"],
        recorded=index,
        alert_id=props["alertId"],
    )


def _api_time(hours_ago: float) -> str:
    """A time as the Health provider writes createdTimestamp: 3 fractional digits and Z."""
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def healthy() -> list[Alert]:
    """Nothing active: three recorded alerts, closed as recorded (one closed by the system, one by
    an operator, one with the odd alias ``?api-version=1.0.0``)."""
    return [
        _recorded_alert(_first_recorded("BMCAlive.BMCConnectionTimeout")),
        _recorded_alert(_first_recorded("AzureStack.BackupController.BackupSchedulerPausedFault")),
        _recorded_alert(_first_recorded("CertificateExpiration.InternalCert.Warning")),
    ]


def closed_only() -> list[Alert]:
    """The 73 recorded alerts, all Closed, as recorded (58 Warning, 15 Critical)."""
    return [_recorded_alert(index) for index in range(len(ALERTS_2020))]


def critical(hours_ago: float = 4.0) -> list[Alert]:
    """An active Critical alert (the recorded ``StorageService.Share.is.inaccessible-Critical``,
    raised ``hours_ago``) beside the closed ones of healthy()."""
    return [
        Alert(
            "StorageService.Share.is.inaccessible-Critical",
            "Critical",
            title="Share is not accessible",
            created=_api_time(hours_ago),
            impacted="Storage Services",
        ),
        *healthy(),
    ]


def during_update(hours_ago: float = 0.7) -> list[Alert]:
    """An active Warning an update raises while it restarts infrastructure VMs (the recorded
    ``FRP.Heartbeat.InfraVM``), beside the closed ones of healthy()."""
    return [
        Alert(
            "FRP.Heartbeat.InfraVM",
            "Warning",
            title="Infrastructure role instance unavailable",
            created=_api_time(hours_ago),
            impacted="AZS-ACS01",
            description=(
                "The infrastructure role instance AZS-ACS01 is unavailable. This might impact performance "
                "and availability of Azure Stack services."
            ),
            alert_properties={"heartbeatAlert": "true", "nodeName": "AZS-ACS01"},
        ),
        *healthy(),
    ]


EXTERNAL_CERTIFICATES = (
    "CN=*.adminmanagement.local.azurestack.external",
    "CN=*.blob.local.azurestack.external",
    "CN=adfs.local.azurestack.external",
)


def certificate_expiring(hours_ago: float = 48.0, expires: str | None = None) -> list[Alert]:
    """An active ``CertificateExpiration.ExternalCert.Warning`` (raised 90 days ahead of expiry;
    ``expires`` default: 80 days from now), written as the recorded internal-certificate alert
    is, beside the closed ones of healthy()."""
    if expires is None:
        expires = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=80)).strftime("%Y-%m-%dT%H:%M:%SZ")
    names = "; ".join(EXTERNAL_CERTIFICATES)
    alt_names = "; ".join(f"DNS Name={n.removeprefix('CN=')}" for n in EXTERNAL_CERTIFICATES)
    issuer = "CN=Contoso Issuing CA 02, DC=contoso, DC=com"
    thumbprints = [hashlib.sha1(n.encode()).hexdigest().upper() for n in EXTERNAL_CERTIFICATES]
    # Keys camel-cased as the recording's are: a thumbprint's leading letter in lower case.
    properties: dict[str, str] = {
        thumbprint[:1].lower() + thumbprint[1:]: json.dumps(
            {
                "IssuerName": issuer,
                "SubjectName": name,
                "ExpirationTimeInUtc": expires,
                "ThumbPrint": thumbprint,
                "SubjectAltName": f"DNS Name={name.removeprefix('CN=')}",
            },
            separators=(",", ":"),
        )
        for name, thumbprint in zip(EXTERNAL_CERTIFICATES, thumbprints, strict=True)
    }
    day = datetime.datetime.fromisoformat(expires)
    local = f"{day.month}/{day.day}/{day.year} {day.strftime('%I:%M %p').lstrip('0')}"
    properties.update(
        subjectNamesOfCertificates=names,
        subjectAltNamesOfCertificates=alt_names,
        thumbPrintsOfCertificates="; ".join(thumbprints),
        issuerNamesOfCertificates="; ".join([issuer] * len(thumbprints)),
        expirationTimesOfCertificatesInUtc="; ".join([local] * len(thumbprints)),
    )
    return [
        Alert(
            "CertificateExpiration.ExternalCert.Warning",
            "Warning",
            title="Pending external certificate expiration",
            created=_api_time(hours_ago),
            impacted="AZS-ERCS01",
            description=(
                "One or more external certificates will expire within 90 days. The expiring certificates have "
                f"the following Subject Names:\n {names} \nand Subject Alternate Names:\n {alt_names}."
            ),
            remediation=(
                "1. Follow the steps to rotate external certificates at https://aka.ms/azsrotatecertificates. \n"
                "2. If the problem persists, please contact Support. Before you do, start the log file collection "
                "process using the guidance from https://aka.ms/azurestacklogfiles."
            ),
            alert_properties=properties,
            recorded=_first_recorded("CertificateExpiration.InternalCert.Warning"),
        ),
        *healthy(),
    ]


def many_alerts(n: int = 120, fault_types: int = 60) -> list[Alert]:
    """``n`` active alerts over ``min(n, fault_types)`` distinct fault types, both severities: the
    recorded and documented ones first (FAULT_TYPES), then made-up ``Synthetic.Fault.NNN`` ones."""
    kinds = list(FAULT_TYPES)
    for number in range(len(kinds), fault_types):
        kinds.append(
            (f"Synthetic.Fault.{number:03d}", ("Warning", "Critical")[number % 2], f"Synthetic fault {number}")
        )
    kinds = kinds[:fault_types]
    base = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    alerts = []
    for index in range(n):
        fault_type, severity, title = kinds[index % len(kinds)]
        created = (base + datetime.timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        alerts.append(Alert(fault_type, severity, title=title, created=created, impacted=f"AZS-NODE{index:04d}"))
    return alerts


def odd_alerts() -> list[Alert]:
    """Active alerts with values a parser could trip on: no faultTypeId, an unknown severity,
    a lone surrogate in the title, a 500-character fault type, no state."""
    now = _api_time(1.0)
    return [
        Alert(None, "Critical", title="Fault type missing", created=now, impacted="AZS-ODD01"),
        Alert("Odd.Informational", "Informational", title="Unknown severity", created=now, impacted="AZS-ODD02"),
        Alert(
            "Odd.Surrogate", "Warning", title="Lone surrogate \ud800 in the title", created=now, impacted="AZS-ODD03"
        ),
        Alert("Odd." + "x" * 496, "Warning", title="A 500-character fault type", created=now, impacted="AZS-ODD04"),
        Alert("Odd.NoState", "Critical", None, title="State missing", created=now, impacted="AZS-ODD05"),
    ]


# The scenarios by name (the demo's stories name theirs).
HEALTH_SCENARIOS = {
    "healthy": healthy,
    "critical": critical,
    "during_update": during_update,
    "certificate_expiring": certificate_expiring,
    "closed_only": closed_only,
}


@dataclass
class FakeStamp:
    name: str
    client_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    secret: str | None = None
    certificate: x509.Certificate | None = None
    identity: str = "adfs"  # or "entra"
    tenant: str = "contoso.onmicrosoft.com"
    location: str = "local"
    current_version: str = "1.2408.1.50"
    current_oem_version: str = "2.4.2411.6"
    oem_family: str = "Dell"
    state: str = "AppliedSuccessfully"
    last_updated: str = "2025-09-30T08:09:12.8824552Z"  # 7 fractional digits, as in Microsoft's example
    last_checked: str = "2025-10-01T15:17:41"  # no zone, as real stamps send it
    updates: list[Update] = field(
        default_factory=lambda: [
            Update("1.2408.1.50", "Installed"),
            Update("1.2501.0.21", "Ready"),
            Update("2.4.2502.3", "Ready", "OEM"),
        ]
    )
    page_size: int = 2
    api_versions: tuple[str, ...] = UPDATE_API_VERSIONS
    faults: Faults = field(default_factory=Faults)
    subscription_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    audience_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log: list[str] = field(default_factory=list)
    runs: dict[str, list[Run]] = field(default_factory=dict)  # update version -> its runs
    # Answers given instead of the real ones, by the path's last segment (authorized requests
    # only): a JSON-able value is sent as JSON, bytes as text/html.
    answers: dict[str, object] = field(default_factory=dict)
    # The Health provider: every alert the stamp lists, closed and active (default: a few closed,
    # nothing active); how many a page of the list holds (0: all in one page, as real stamps
    # send 73); and the provider's own faults.
    alerts: list[Alert] = field(default_factory=lambda: healthy())
    alerts_page_size: int = 0
    health_faults: HealthFaults = field(default_factory=HealthFaults)

    def requests(self, kind: str) -> int:
        """How many requests of a kind (see ``request_kind``) the stamp was sent, faulty answers included."""
        return sum(request_kind(line) == kind for line in self.log)


def request_kind(line: str) -> str:
    """The kind of a request, as ``FakeStamp.log`` has it ("GET /path?query"): metadata,
    subscriptions, locations, updateLocation, updates, updateRuns, regionHealth, alerts, alert;
    else other."""
    segments = [s for s in line.partition(" ")[2].split("?")[0].lower().split("/") if s]
    if segments == ["metadata", "endpoints"]:
        return "metadata"
    if segments == ["subscriptions"]:
        return "subscriptions"
    if len(segments) == 3 and segments[2] == "locations":
        return "locations"
    provider = segments[5] if len(segments) > 5 else ""
    if provider == "microsoft.update.admin":
        kinds = {8: "updateLocation", 9: "updates", 11: "updateRuns"}
        return kinds.get(len(segments), "other")
    if provider == HEALTH_PROVIDER.lower():
        kinds = {8: "regionHealth", 9: "alerts", 10: "alert"}
        return kinds.get(len(segments), "other")
    return "other"


class FakeAzureStack:
    """The server. ``add_stamp`` returns the stamp's endpoint URL."""

    def __init__(
        self,
        server_cert: Issued,
        host: str = "127.0.0.1",
        token_lifetime: int = 3600,
        port: int = 0,
        *,
        serve: bool = True,
    ) -> None:
        self.host = host
        self.stamps: dict[str, FakeStamp] = {}
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (stamp name, expiry)
        self.token_requests: list[str] = []  # stamp name per token request
        self.token_lifetime = token_lifetime
        self.lock = threading.Lock()
        self.use_certificate(server_cert)
        self._server = _Server((host, port), _Handler, self) if serve else None  # port 0: a free one
        self._thread: threading.Thread | None = None
        self.connections = 0  # TLS connections accepted
        self.open_connections = 0  # ...and not yet closed by either side

    # ------------------------------------------------------------ control

    def use_certificate(self, issued: Issued) -> None:
        """Serve this certificate on new connections (e.g. one from a CA the client does not trust)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = issued.write(Path(tmp), "server")
            context.load_cert_chain(cert, key)
        self.context = context

    @property
    def port(self) -> int:
        assert self._server is not None, "a fake built with serve=False has no port of its own"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def identity_url(self) -> str:
        """Where the identity provider answers (AD FS under /adfs, Entra ID under /<tenant>): here."""
        return self.base_url

    def add_stamp(self, stamp: FakeStamp) -> str:
        with self.lock:
            self.stamps[stamp.name] = stamp
        return self.endpoint(stamp.name)

    def endpoint(self, name: str) -> str:
        return f"{self.base_url}/stamps/{name}"

    def audience(self, stamp: FakeStamp) -> str:
        if stamp.identity == "adfs":
            return f"https://management.adfs.azurestack.local/{stamp.audience_id}"
        return f"https://management.{stamp.tenant}/{stamp.audience_id}"

    def login_endpoint(self, stamp: FakeStamp) -> str:
        return f"{self.identity_url}/adfs/" if stamp.identity == "adfs" else f"{self.identity_url}/"

    def token_endpoint(self, stamp: FakeStamp) -> str:
        if stamp.identity == "adfs":
            return f"{self.identity_url}/adfs/oauth2/token/"
        return f"{self.identity_url}/{stamp.tenant}/oauth2/v2.0/token"

    def start(self) -> FakeAzureStack:
        assert self._server is not None, "a fake built with serve=False is served by its owner"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-azurestack", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeAzureStack:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------ identity

    def issue_token(self, stamp: FakeStamp) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = (stamp.name, time.time() + self.token_lifetime)
            self.token_requests.append(stamp.name)
        return token

    def token_valid(self, token: str, stamp: FakeStamp) -> bool:
        with self.lock:
            entry = self.tokens.get(token)
        return entry is not None and entry[0] == stamp.name and entry[1] > time.time()

    def stamp_for_scope(self, scope: str) -> FakeStamp | None:
        with self.lock:
            stamps = list(self.stamps.values())
        for stamp in stamps:
            if scope == f"{self.audience(stamp)}/.default":
                return stamp
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, fake: FakeAzureStack) -> None:
        self.fake = fake
        super().__init__(address, handler)

    def get_request(self):  # type: ignore[override]
        sock, address = self.socket.accept()
        # Headers and body go out in two writes; without this each answer on a kept-alive
        # connection waits for the client's delayed ACK (about 40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake.lock:
            self.fake.connections += 1
            self.fake.open_connections += 1
        # The certificate is chosen per connection, so use_certificate takes effect at once.
        return self.fake.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address) -> None:
        pass

    def shutdown_request(self, request) -> None:  # type: ignore[no-untyped-def]
        """After the connection's last request, whoever closed it (and after a failed handshake)."""
        with self.fake.lock:
            self.fake.open_connections -= 1
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        self.request.settimeout(15)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    # ------------------------------------------------------------ plumbing

    @property
    def fake(self) -> FakeAzureStack:
        return self.server.fake

    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8", **headers: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: object, **headers: str) -> None:
        self._send(status, json.dumps(data).encode(), **headers)

    def _arm_error(self, status: int, code: str, message: str, **headers: str) -> None:
        self._json(status, {"error": {"code": code, "message": message}}, **headers)

    # ------------------------------------------------------------ routing

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) >= 2 and segments[0] == "stamps":
            stamp = self.fake.stamps.get(segments[1])
            if stamp is None:
                self._arm_error(404, "NotFound", "no such stamp")
                return
            stamp.log.append(f"{method} /{'/'.join(segments[2:])}?{parts.query}")
            if self._fault(stamp):
                return
            self._stamp(stamp, segments[2:], query)
            return
        if segments[-2:] == [".well-known", "openid-configuration"]:
            self._openid(segments)
            return
        if method == "POST" and segments[-1:] == ["token"]:
            self._token(segments)
            return
        self._send(404, b"not found", "text/plain")

    # ------------------------------------------------------------ faults

    def _fault(self, stamp: FakeStamp) -> bool:
        faults = stamp.faults
        if faults.latency:
            time.sleep(faults.latency)
        if faults.status and faults.times:
            faults.times -= 1
            if faults.times == 0:  # this is the last faulty answer
                status, faults.status = faults.status, None
                self._arm_error(status, "TooManyRequests", "Rate limit exceeded.", Retry_After=str(faults.retry_after))
                return True
        if faults.status == 429:
            retry = faults.retry_after_raw if faults.retry_after_raw is not None else str(faults.retry_after)
            self._arm_error(429, "TooManyRequests", "Rate limit exceeded.", Retry_After=retry)
        elif faults.status == 401:
            self._arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        elif faults.status:
            self._arm_error(
                faults.status, "InternalServerError", faults.message or "Encountered internal server error."
            )
        elif faults.html:
            page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Maintenance</body></html>"
            self._send(200, page, "text/html; charset=utf-8")
        elif faults.truncated:
            body = json.dumps({"value": [UPDATE_2021] * 3}).encode()
            self._send(200, body[: len(body) // 2])
        elif faults.drip:
            body = json.dumps({"value": [UPDATE_2021] * 3}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for index in range(len(body)):
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                    faults.dripped += 1
                    time.sleep(faults.drip)
                    if stamp.faults.drip == 0:  # cleared: stop dripping
                        break
            except OSError:
                pass
            self.close_connection = True
        elif faults.deep_json:
            self._send(200, b"[" * faults.deep_json + b"]" * faults.deep_json)
        elif faults.empty_objects:
            self._send(200, b'{"value": [' + b",".join([b"{}"] * faults.empty_objects) + b"]}")
        elif faults.oversized:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(faults.oversized))
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(faults.oversized // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass
            self.close_connection = True
        else:
            return False
        return True

    # ------------------------------------------------------------ identity provider

    def _openid(self, segments: list[str]) -> None:
        base = self.fake.identity_url
        if segments[0] == "adfs" and len(segments) == 3:
            prefix = f"{base}/adfs"
            token = f"{prefix}/oauth2/token/"
            issuer = prefix
        elif len(segments) == 4 and segments[1] == "v2.0":
            prefix = f"{base}/{segments[0]}"
            token = f"{prefix}/oauth2/v2.0/token"
            issuer = f"{prefix}/v2.0"
        else:
            self._send(404, b"not found", "text/plain")
            return
        self._json(
            200,
            {
                "issuer": issuer,
                "authorization_endpoint": f"{prefix}/oauth2/authorize",
                "token_endpoint": token,
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            },
        )

    def _token(self, segments: list[str]) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_form = self.rfile.read(length)
        form = {k: v[0] for k, v in parse_qs(raw_form.decode()).items()}
        stamp = self.fake.stamp_for_scope(form.get("scope", ""))
        if stamp is None:
            self._json(400, {"error": "invalid_scope", "error_description": "The scope is not known."})
            return
        if stamp.faults.token_echo:  # a misconfigured proxy's error page, showing what it was sent
            page = b"<html><body><h1>Bad gateway</h1><pre>" + raw_form + b"</pre></body></html>"
            self._send(200, page, "text/html")
            return
        if stamp.faults.token_down:
            self._send(503, b"<html><body>Service Unavailable</body></html>", "text/html")
            return
        expected = urlsplit(self.fake.token_endpoint(stamp)).path
        if self.path.split("?")[0] != expected:
            self._json(400, {"error": "invalid_request", "error_description": "Wrong token endpoint."})
            return
        if form.get("grant_type") != "client_credentials" or form.get("client_id") != stamp.client_id:
            self._json(400, {"error": "unauthorized_client", "error_description": "Unknown client."})
            return
        if not self._client_authenticated(stamp, form):
            adfs = "MSIS9622: Client authentication failed. Please verify the credential provided is valid."
            entra = "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent is the secret value."
            description = adfs if stamp.identity == "adfs" else entra
            self._json(401, {"error": "invalid_client", "error_description": description})
            return
        token = self.fake.issue_token(stamp)
        self._json(
            200,
            {"token_type": "Bearer", "expires_in": self.fake.token_lifetime, "access_token": token},
        )

    def _client_authenticated(self, stamp: FakeStamp, form: dict[str, str]) -> bool:
        if stamp.secret is not None:
            return hmac.compare_digest(form.get("client_secret", "").encode(), stamp.secret.encode())
        if stamp.certificate is None:
            return False
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return False
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            der = stamp.certificate.public_bytes(serialization.Encoding.DER)
            thumbprints = {
                "x5t": _b64url(hashlib.sha1(der).digest()),
                "x5t#S256": _b64url(hashlib.sha256(der).digest()),
            }
            # msal pads its base64url thumbprints; the identity providers accept either form.
            if not any(str(header.get(k, "")).rstrip("=") == v for k, v in thumbprints.items()):
                return False
            algorithms = ["RS256"] if stamp.identity == "adfs" else ["PS256", "RS256"]
            claims = jwt.decode(
                assertion,
                key=stamp.certificate.public_key(),
                algorithms=algorithms,
                audience=self.fake.token_endpoint(stamp),
                issuer=stamp.client_id,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError:
            return False
        return claims.get("sub") == stamp.client_id

    # ------------------------------------------------------------ the stamp's ARM endpoints

    def _authorized(self, stamp: FakeStamp) -> bool:
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer ") and self.fake.token_valid(header[7:], stamp):
            return True
        self._arm_error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
            WWW_Authenticate='Bearer authorization_uri="", error="invalid_token"',
        )
        return False

    def _stamp(self, stamp: FakeStamp, segments: list[str], query: dict[str, str]) -> None:
        endpoint = self.fake.endpoint(stamp.name)
        if segments == ["metadata", "endpoints"] and query.get("api-version") != "2015-01-01":
            # Azure Stack Hub's metadata endpoint wants the api-version its clients send.
            self._bad_api_version(query.get("api-version", ""), ("2015-01-01",))
            return
        if segments == ["metadata", "endpoints"]:
            self._json(
                200,
                {
                    "galleryEndpoint": f"{endpoint}:30016/",
                    "graphEndpoint": f"{endpoint}/graph/",
                    "portalEndpoint": f"{endpoint}/portal/",
                    "authentication": {
                        "loginEndpoint": self.fake.login_endpoint(stamp),
                        "audiences": [self.fake.audience(stamp)],
                    },
                },
            )
            return
        if not self._authorized(stamp):
            return
        api_version = query.get("api-version", "")
        lowered = [s.lower() for s in segments]
        update_location = len(lowered) == 8 and lowered[5] == "microsoft.update.admin"
        if lowered[-1] in stamp.answers or (update_location and "updatelocation" in stamp.answers):
            answer = stamp.answers.get(lowered[-1], stamp.answers.get("updatelocation"))
            if isinstance(answer, bytes):
                self._send(200, answer, "text/html")
            else:
                self._json(200, answer)
            return
        if lowered == ["subscriptions"] or (len(lowered) == 3 and lowered[2] == "locations"):
            if api_version not in ARM_API_VERSIONS:
                self._bad_api_version(api_version, ARM_API_VERSIONS)
            elif len(lowered) == 1:
                self._json(200, {"value": [self._subscription(stamp, name) for name in SYSTEM_SUBSCRIPTIONS]})
            else:
                self._json(
                    200,
                    {
                        "value": [
                            {
                                "id": f"/subscriptions/{segments[1]}/locations/{stamp.location}",
                                "name": stamp.location,
                                "displayName": stamp.location,
                            }
                        ]
                    },
                )
            return
        if len(lowered) > 5 and lowered[5] == HEALTH_PROVIDER.lower():
            self._health(stamp, lowered, query)
            return
        prefix = [
            "subscriptions",
            stamp.subscription_id.lower(),
            "resourcegroups",
            f"system.{stamp.location}",
            "providers",
            "microsoft.update.admin",
            "updatelocations",
            stamp.location.lower(),
        ]
        if lowered[: len(prefix)] != prefix or len(lowered) not in (len(prefix), len(prefix) + 1, len(prefix) + 3):
            self._arm_error(404, "ResourceNotFound", "The resource was not found.")
            return
        if api_version not in stamp.api_versions:
            if stamp.faults.api_version_404:
                # What Azure Resource Manager answers when the provider lacks the api-version.
                self._arm_error(
                    404,
                    "InvalidResourceType",
                    "The resource type 'updateLocations' could not be found in the namespace "
                    f"'Microsoft.Update.Admin' for api version '{api_version}'. The supported api-versions are "
                    f"'{','.join(stamp.api_versions)}'.",
                )
            else:
                self._bad_api_version(api_version, stamp.api_versions)
            return
        if len(lowered) == len(prefix):
            self._json(200, self._location(stamp, api_version))
        elif lowered[-1] == "updates" and len(lowered) == len(prefix) + 1:
            self._updates(stamp, api_version, int(query.get("$skiptoken", "0")))
        elif lowered[-1] == "updateruns" and len(lowered) == len(prefix) + 3 and lowered[-3] == "updates":
            self._runs(stamp, segments[-2], api_version)
        else:
            self._arm_error(404, "ResourceNotFound", "The resource was not found.")

    # ------------------------------------------------------------ the Health provider

    def _health(self, stamp: FakeStamp, lowered: list[str], query: dict[str, str]) -> None:
        prefix = [
            "subscriptions",
            stamp.subscription_id.lower(),
            "resourcegroups",
            f"system.{stamp.location.lower()}",
            "providers",
            HEALTH_PROVIDER.lower(),
            "regionhealths",
            stamp.location.lower(),
        ]
        kind = {8: "regionHealth", 9: "alerts", 10: "alert"}.get(len(lowered))
        if lowered[: len(prefix)] != prefix or kind is None or (kind != "regionHealth" and lowered[8] != "alerts"):
            self._arm_error(404, "ResourceNotFound", "The resource was not found.")
            return
        faults = stamp.health_faults
        if faults.only in (None, kind if kind != "alert" else "alerts") and self._health_fault(stamp, kind):
            return
        api_version = query.get("api-version", "")
        if api_version not in HEALTH_API_VERSIONS:
            self._bad_api_version(api_version, HEALTH_API_VERSIONS)
            return
        alerts = served_alerts(stamp)
        if kind == "regionHealth":
            self._send(200, health_json(render_region_health(stamp, alerts)))
        elif kind == "alert":
            found = [a for a in alerts if a["properties"]["alertId"].lower() == lowered[9]]
            if found:
                self._send(200, health_json(found[0]))
            else:
                self._arm_error(404, "ResourceNotFound", "The resource was not found.")
        else:
            skip = int(query.get("$skiptoken", "0"))
            size = stamp.alerts_page_size or max(len(alerts), 1)
            body: dict[str, object] = {"value": alerts[skip : skip + size]}
            if skip + size < len(alerts):  # real servers send no nextLink key at all on a last page
                body["nextLink"] = (
                    f"{self.fake.base_url}/stamps/{stamp.name}{_region_health_id(stamp)}/alerts"
                    f"?api-version={api_version}&$skiptoken={skip + size}"
                )
            self._send(200, health_json(body))

    def _health_fault(self, stamp: FakeStamp, kind: str) -> bool:
        faults = stamp.health_faults
        if faults.not_found:
            # What Azure Resource Manager answers for a provider namespace it does not know.
            self._arm_error(404, "InvalidResourceNamespace", f"The resource namespace '{HEALTH_PROVIDER}' is invalid.")
        elif faults.not_found_empty:
            self._send(404, b"")
        elif faults.status:
            self._arm_error(faults.status, "InternalServerError", "Encountered internal server error.", Retry_After="1")
        elif faults.html:
            page = b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head><body>Health</body></html>"
            self._send(200, page, "text/html; charset=utf-8")
        elif faults.malformed:
            whole = render_region_health(stamp) if kind == "regionHealth" else {"value": served_alerts(stamp)}
            body = health_json(whole)
            self._send(200, body[: len(body) // 2])
        else:
            return False
        return True

    def _bad_api_version(self, given: str, supported: tuple[str, ...]) -> None:
        self._arm_error(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{given}' is invalid. The supported versions are '{','.join(supported)}'.",
        )

    def _subscription(self, stamp: FakeStamp, name: str) -> dict:
        sub = (
            stamp.subscription_id
            if name == SYSTEM_SUBSCRIPTIONS[0]
            else str(uuid.uuid5(uuid.NAMESPACE_URL, name + stamp.name))
        )
        return {
            "id": f"/subscriptions/{sub}",
            "subscriptionId": sub,
            "displayName": name,
            "state": "Enabled",
            "subscriptionPolicies": {"locationPlacementId": "AzureStack"},
        }

    def _location_id(self, stamp: FakeStamp) -> str:
        return (
            f"/subscriptions/{stamp.subscription_id}/resourceGroups/System.{stamp.location}"
            f"/providers/Microsoft.Update.Admin/updateLocations/{stamp.location}"
        )

    def _location(self, stamp: FakeStamp, api_version: str) -> dict:
        if api_version == "2016-05-01":
            body = copy.deepcopy(LOCATION_2016)
            body["properties"] = {
                "currentVersion": stamp.current_version,
                "currentOemVersion": stamp.current_oem_version,
                "lastUpdated": stamp.last_updated,
                "state": stamp.state,
            }
        else:
            body = copy.deepcopy(LOCATION_2021)
            props = body["properties"]
            props.update(
                oemFamily=stamp.oem_family,
                lastChecked=stamp.last_checked,
                lastUpdated=stamp.last_updated,
                currentVersion=stamp.current_version,
                currentOemVersion=stamp.current_oem_version,
                state=stamp.state,
                packageVersions=[
                    {"packageType": "Services", "version": stamp.current_version},
                    {"packageType": "Infrastructure", "version": stamp.current_version},
                    {"packageType": "OEM", "version": stamp.current_oem_version},
                ],
            )
        body.update(id=self._location_id(stamp), name=stamp.location, location=stamp.location)
        return body

    def _update(self, stamp: FakeStamp, update: Update, api_version: str) -> dict:
        oem = update.package_type.upper() == "OEM"
        name = f"{'OEM' if oem else 'Microsoft'}{update.version}"
        if api_version == "2016-05-01":
            body = copy.deepcopy(UPDATE_2016)
            body["name"] = name
            props = body["properties"]
            props.update(
                version=update.version,
                state=update.state,
                description=f"MAS Update {update.version}",
                publisher=stamp.oem_family if oem else "Microsoft",
            )
        else:
            body = copy.deepcopy(UPDATE_2021)
            body["name"] = f"{stamp.location}/{name}"
            props = body["properties"]
            props.update(
                version=update.version,
                state=update.state,
                packageType=update.package_type,
                publisher=stamp.oem_family if oem else "Microsoft",
                description=f"AzS Update {update.version}",
                displayName=f"AzS Update - {update.version}",
                minVersionRequired=update.min_version or stamp.current_version,
                minOemVersionRequired=update.min_oem_version,
            )
        body["id"] = f"{self._location_id(stamp)}/updates/{name}"
        body["location"] = stamp.location
        return body

    def _updates(self, stamp: FakeStamp, api_version: str, skip: int) -> None:
        if stamp.faults.compact_updates:
            self._compact_updates(stamp, api_version, skip)
            return
        page = stamp.updates[skip : skip + stamp.page_size]
        next_link = None
        if skip + stamp.page_size < len(stamp.updates):
            origin = "https://attacker.example" if stamp.faults.foreign_next_link else self.fake.base_url
            next_link = (
                f"{origin}/stamps/{stamp.name}{self._location_id(stamp)}/updates"
                f"?api-version={api_version}&$skiptoken={skip + stamp.page_size}"
            )
        self._json(200, {"value": [self._update(stamp, u, api_version) for u in page], "nextLink": next_link})

    def _compact_updates(self, stamp: FakeStamp, api_version: str, page: int) -> None:
        """Pages of many minimal entries: a body under the byte bound that still lists a huge number."""
        count = stamp.faults.compact_updates
        item = b'{"name":"u","properties":{"version":"1.2408.1.50","state":"Installed"}}'
        next_link = "null"
        if page + 1 < stamp.faults.compact_pages:
            link = f"{self.fake.base_url}/stamps/{stamp.name}{self._location_id(stamp)}/updates"
            next_link = json.dumps(f"{link}?api-version={api_version}&$skiptoken={page + 1}")
        self._send(200, b'{"value":[' + b",".join([item] * count) + b'],"nextLink":' + next_link.encode() + b"}")

    def _runs(self, stamp: FakeStamp, update_name: str, api_version: str) -> None:
        version = update_name.removeprefix("Microsoft").removeprefix("OEM")
        if version not in stamp.runs:
            self._arm_error(404, "ResourceNotFound", "The resource was not found.")
            return
        template = (RUNS_2016 if api_version == "2016-05-01" else RUNS_2021)[0]
        value = []
        for run in stamp.runs[version]:
            body = copy.deepcopy(template)
            run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stamp.name}/{version}/{run.started}"))
            body["id"] = f"{self._location_id(stamp)}/updates/{update_name}/updateRuns/{run_id}"
            body["name"] = f"{stamp.location}/{update_name}/{run_id}"  # as real stamps name runs
            props = body["properties"]
            duration = run.duration
            if run.live and run.started is not None:
                duration = _iso_duration(time.time() - _timestamp(run.started))
            props.update(timeStarted=run.started, duration=duration, state=run.state)
            if run.started is None:
                del props["timeStarted"]
            steps = props["progress"]["steps"]
            if run.progress is not None:
                props["progress"] = run.progress
            elif run.state == "Failed":
                steps[-1]["status"] = "Error"
                steps[-1]["steps"] = [
                    {"name": run.failed_step, "description": run.failed_description, "status": "Error", "steps": []}
                ]
                props["progress"]["status"] = "Error"
            elif run.state == "InProgress":
                steps[-1]["status"] = "InProgress"
                props["progress"]["status"] = "InProgress"
            value.append(body)
        self._json(200, {"value": value})


class _BufferedHandler(_Handler):
    """The handler on a request already read whole, writing its answer to memory: no socket."""

    def __init__(self, fake: FakeAzureStack, request: bytes, client_address: tuple[str, int]) -> None:
        # No super().__init__: that would set up and serve a socket.
        self.server = SimpleNamespace(fake=fake)  # type: ignore[assignment]
        self.request = None
        self.client_address = client_address
        self.rfile = io.BytesIO(request)
        self.wfile = io.BytesIO()
        self.close_connection = True
        self.handle_one_request()


def respond(fake: FakeAzureStack, request: bytes, client_address: tuple[str, int]) -> tuple[bytes, bool]:
    """The answer to one request (its head and body, read whole) and whether to close the connection.

    For a server that does its own I/O, such as one event loop serving many stamps: the same
    routes, checks and answers as the fake's own server, on buffers. Faults that wait (``latency``,
    ``drip``) would stall such a server; it applies its latency itself.
    """
    handler = _BufferedHandler(fake, request, client_address)
    return handler.wfile.getvalue(), handler.close_connection


def _ago(hours: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=hours)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timestamp(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def _iso_duration(seconds: float) -> str:
    """As the Update admin API writes durations: ``PT14H43M50.0644552S``."""
    seconds = max(seconds, 0.0)
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    return f"PT{int(hours)}H{int(minutes)}M{rest:.7f}S"


def thumbprint_sha1(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA1()).hex()


# ---------------------------------------------------------------- standalone demo

# The releases the demo's stamps move through, in Microsoft's order, as exporter/data/catalog.yml
# has them: (update version, base build, released, latest hotfix, released).
RELEASES = (
    ("2408", "1.2408.0.19", "2024-11-18", "1.2408.1.50", "2025-07-30"),
    ("2501", "1.2501.0.21", "2025-04-01", "1.2501.1.47", "2025-07-01"),
    ("2506", "1.2506.0.15", "2025-09-22", "1.2506.3.30", "2025-10-03"),
    ("2601", "1.2601.0.4", "2026-04-08", "1.2601.1.14", "2026-05-13"),
)
UPDATE_RUN = "PT13H12M41.5520013S"  # how long the demo's stamps took to install an update...
HOTFIX_RUN = "PT3H4M17.0977421S"  # ...and a hotfix


@dataclass(frozen=True)
class Story:
    """What one demo stamp has been through, told the way a real stamp tells it (docs/development.md
    lists them): it runs ``release`` with its latest hotfix, and is offered the next release only,
    its base build, in the state ``offered`` (None: it runs the latest, nothing is offered)."""

    release: str
    location_state: str  # the update location's state, which agrees with the offered update's
    offered: str | None = None  # Ready, Installing or PreparationFailed
    health: str = "healthy"  # its alerts: a scenario of HEALTH_SCENARIOS, agreeing with the rest


STORIES = (
    Story("2601", "AppliedSuccessfully"),  # current: nothing to install, nothing active
    # 2601 was blocked by a health check, as recorded: a critical alert was active before the attempt
    Story("2506", "UpdateFailed", "PreparationFailed", "critical"),
    # out of support, installing 2501, the first of three: an infrastructure VM it restarted is down
    Story("2408", "UpdateInProgress", "Installing", "during_update"),
    # ending soon: 2506 is downloaded and ready; an external certificate expires within 90 days
    Story("2501", "UpdateAvailable", "Ready", "certificate_expiring"),
)


def _days_after(day: str, days: int) -> str:
    moment = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC) + datetime.timedelta(days=days, hours=20)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def demo_stamp(name: str, story: Story) -> FakeStamp:
    """A stamp whose location state, updates, runs, durations and alerts tell ``story`` consistently."""
    index = [r[0] for r in RELEASES].index(story.release)
    _, base, base_day, hotfix, hotfix_day = RELEASES[index]
    # It installed its release two weeks after it came out, and the latest hotfix a week after that.
    history = [(base, _days_after(base_day, 14), UPDATE_RUN), (hotfix, _days_after(hotfix_day, 7), HOTFIX_RUN)]
    stamp = FakeStamp(name, current_version=hotfix, state=story.location_state)
    stamp.alerts = HEALTH_SCENARIOS[story.health]()
    stamp.updates = [Update(build, "Installed") for build, _, _ in history]
    stamp.runs = {build: [Run("Succeeded", started, duration)] for build, started, duration in history}
    hotfix_started = _timestamp(history[-1][1])
    finished = datetime.datetime.fromtimestamp(hotfix_started + _seconds(HOTFIX_RUN), datetime.UTC)
    stamp.last_updated = finished.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")  # 7 fractional digits, as Microsoft's
    stamp.last_checked = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )  # no zone, as real stamps send it
    if story.offered is not None:
        offered = RELEASES[index + 1][1]  # one package at a time: the next release's base build
        stamp.updates.append(Update(offered, story.offered))
        if story.offered == "Installing":  # started five and a half hours ago, still running
            stamp.runs[offered] = [Run("InProgress", _ago(5.5), "PT0S", live=True)]  # live: the time since
        elif story.offered == "PreparationFailed":  # blocked at once by the health check, three hours ago
            stamp.runs[offered] = [Run("Failed", _ago(3), "PT0S")]
    return stamp


def _seconds(duration: str) -> float:
    """Seconds of the demo's own durations (PT…H…M…S)."""
    hours, rest = duration.removeprefix("PT").split("H")
    minutes, seconds = rest.removesuffix("S").split("M")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--stamps", type=int, default=3, help=f"how many stamps to serve, through {len(STORIES)} stories (default 3)"
    )
    parser.add_argument("--dir", type=Path, required=True, help="where to write the CA, secrets and exporter config")
    parser.add_argument(
        "--port", type=int, default=0, help="the port to serve HTTPS on, on 127.0.0.1 (default: a free one)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds of delay on every stamp request")
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    ca = make_ca()
    (args.dir / "ca.pem").write_bytes(ca.cert_pem)
    try:
        fake = FakeAzureStack(make_server_cert(ca), port=args.port).start()
    except OSError as err:
        parser.error(f"cannot serve on 127.0.0.1:{args.port}: {err.strerror}")
    lines = ["refresh_interval: 30s", "stamps:"]
    for index in range(args.stamps):
        name = f"stamp{index:04d}"
        secret = secrets.token_urlsafe(24)
        (args.dir / f"{name}.secret").write_text(secret)
        stamp = demo_stamp(name, STORIES[index % len(STORIES)])
        stamp.secret = secret
        stamp.faults.latency = args.latency
        endpoint = fake.add_stamp(stamp)
        lines += [
            f"  - name: {name}",
            "    admin:",
            f"      endpoint: {endpoint}",
            "      tenant: adfs",
            f"      client_id: {stamp.client_id}",
            f"      client_secret_file: {args.dir / f'{name}.secret'}",
            f"      ca_file: {args.dir / 'ca.pem'}",
        ]
    config = args.dir / "exporter.yml"
    partial = config.with_suffix(".yml.partial")
    partial.write_text("\n".join(lines) + "\n")
    partial.replace(config)  # whoever waits for the file reads it whole
    print(f"serving {args.stamps} stamps at {fake.base_url}; exporter config: {config}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
