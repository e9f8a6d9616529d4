"""A faithful fake of Azure Stack Hub admin endpoints, for the tests, the benchmark and demos.

One HTTPS server on 127.0.0.1 plays the identity provider (AD FS at ``/adfs`` and Entra ID
at ``/<tenant>``) and any number of stamps, each under ``/stamps/<name>`` (its endpoint).
Answers are built from Microsoft's recorded responses in ``fixtures/azurestack`` with the
quirks real servers have (``<location>/<name>`` update names, ``prerequisites``,
``availabilityType: "Local"``, timestamps without zone or with 7-8 fractional digits).

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
        if lowered[-1] in stamp.answers or (len(lowered) == 8 and "updatelocation" in stamp.answers):
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
                minVersionRequired=stamp.current_version,
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


STORIES = (
    Story("2601", "AppliedSuccessfully"),  # current: nothing to install
    Story("2506", "UpdateFailed", "PreparationFailed"),  # 2601 was blocked by a health check, as recorded
    Story("2408", "UpdateInProgress", "Installing"),  # out of support, installing 2501, the first of three
    Story("2501", "UpdateAvailable", "Ready"),  # ending soon: 2506 is downloaded and ready
)


def _days_after(day: str, days: int) -> str:
    moment = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.UTC) + datetime.timedelta(days=days, hours=20)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def demo_stamp(name: str, story: Story) -> FakeStamp:
    """A stamp whose location state, updates, runs and durations tell ``story`` consistently."""
    index = [r[0] for r in RELEASES].index(story.release)
    _, base, base_day, hotfix, hotfix_day = RELEASES[index]
    # It installed its release two weeks after it came out, and the latest hotfix a week after that.
    history = [(base, _days_after(base_day, 14), UPDATE_RUN), (hotfix, _days_after(hotfix_day, 7), HOTFIX_RUN)]
    stamp = FakeStamp(name, current_version=hotfix, state=story.location_state)
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
