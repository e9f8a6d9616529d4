"""Reading one stamp from its Azure Stack Hub admin endpoint (Update resource provider).

The chain: ``/metadata/endpoints`` gives the login endpoint and audience; msal gets a
client-credentials token from AD FS or Entra ID (secret or certificate) and reuses it until
shortly before it expires; the Default Provider Subscription and the location are
discovered once; then the update location is read with api-version 2021-07-01, falling
back to 2016-05-01 on stamps that reject it. Its paginated ``updates`` list and the runs
of up to three updates are read only when the update location says something changed, an
update was under way, or the last such read is an hour old: in steady state a read is one
request. Connections are closed after a read unless the next comes within 30 s.

Every request goes through one ``requests.Session`` that ignores the environment
(``REQUESTS_CA_BUNDLE`` must not override ``ca_file``), applies the timeout, refuses
redirects, bounds the body size and the whole collection's duration. Failures become a
``CollectionError`` with a short ``reason`` label and a message that never holds a secret.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import re
import ssl
import threading
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit

import msal
import msal.exceptions
import requests
import urllib3

from . import __version__, health
from .border import clean_text
from .config import AdminConfig
from .deadline import POOL_CLASSES, request_deadline
from .files import read_bounded
from .health import Health
from .logs import register_secret, scrub
from .report import AvailableUpdate
from .runs import UpdateRun, failed_step
from .runs import parse_duration as parse_run_duration
from .trust import TrustAdapter, trust_context

# Label values of azurestack_stamp_collection_errors_total. "size": an answer over the byte or
# object bound; "error": anything unforeseen (the message names the exception type);
# "evaluation" and "render": the stamp's values were read but could not be evaluated or shown.
REASONS = ("timeout", "tls", "connection", "auth", "http", "parse", "size", "error", "evaluation", "render")

API_VERSIONS = ("2021-07-01", "2016-05-01")
METADATA_API_VERSION = "2015-01-01"
ARM_API_VERSION = "2016-06-01"
DEFAULT_PROVIDER_SUBSCRIPTION = "Default Provider Subscription"
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_JSON_OBJECTS = 50_000  # objects in one answer: a real page holds a few hundred
MAX_CREDENTIAL_BYTES = 1024 * 1024
MAX_RUN_UPDATES = 3  # updates whose runs are read per collection
RUNS_PER_UPDATE = 5  # the newest runs kept of each
MAX_PAGES = 200
MAX_UPDATES = 2_000  # entries of one stamp's updates list: a stamp lists each release and hotfix it saw
MAX_READ_BYTES = 32 * 1024 * 1024  # every answer of one read together, all pages included
MAX_RETRIES = 2
DEADLINE_FACTOR = 3  # a whole collection gives up after this many times the request timeout
# Updates and runs are read again only when the update location says something changed, or an
# update is under way; and at least this often whatever it says, so nothing is missed for long.
FULL_READ_PERIOD = 3600.0
# Connections are kept from one read to the next only when the next comes sooner than this.
# HTTP.sys, which serves ARM and AD FS, closes a connection idle for 120 s by default, and a
# kept TLS connection holds about 31 KiB here: at a thousand stamps, 31 MiB to save a handshake.
KEEP_ALIVE_MAX = 30.0
TOKEN_RENEWAL = 300.0  # a token is renewed when it has less than this left (msal's own margin)
MAX_TOKEN_REUSE = 86400.0
LOCATION_BUSY_STATES = ("updateinprogress", "preparationinprogress")
UPDATE_BUSY_STATES = ("installing", "downloading", "preparing")

# RegionUpdateState values of both api-versions; others a stamp reports are kept as they come.
REGION_UPDATE_STATES = (
    "Unknown",
    "UpdateAvailable",
    "PreparationInProgress",
    "PreparationFailed",
    "AppliedSuccessfully",
    "AppliedUpdateAvailableSuccessfully",
    "UpdateInProgress",
    "UpdateFailed",
    "NeedsAttention",
)

_TIMESTAMP = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(Z|[+-]\d{2}:?\d{2})?\Z", re.IGNORECASE
)


class CollectionError(Exception):
    """A failed collection: ``reason`` is one of REASONS; the message holds no secret."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class AdminReading:
    """What the Update resource provider said about one stamp."""

    current_version: str
    current_oem_version: str | None
    state: str | None
    last_updated: float | None
    last_checked: float | None
    updates: tuple[AvailableUpdate, ...]
    api_version: str
    location: str
    subscription_id: str
    oem_family: str | None = None
    runs: tuple[UpdateRun, ...] = ()
    health: Health | None = None  # the Health provider's alerts, or why they could not be read


def parse_timestamp(value: object) -> float | None:
    """ISO timestamps as the API sends them: 0-9 fractional digits, zone or none (then UTC).

    Sentinels such as ``0001-01-01`` and ``9999-12-31`` mean "unknown" and give None.
    """
    if not isinstance(value, str):
        return None
    match = _TIMESTAMP.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if not 1970 <= year < 9999:
        return None
    fraction = float("0." + match.group(7)) if match.group(7) else 0.0
    zone = match.group(8)
    offset = dt.timedelta(0)
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    except ValueError:
        return None
    return (moment - offset).timestamp() + fraction


class DeadlineExceededError(requests.exceptions.Timeout):
    """The whole request (connect, headers, body) did not finish in time, however the bytes came."""


def transport_error(err: Exception) -> CollectionError:
    """Map a requests/urllib3 failure to a reason, naming the host but no URL query."""
    if isinstance(err, DeadlineExceededError):
        return CollectionError("timeout", str(err))
    if isinstance(err, requests.exceptions.SSLError):
        return CollectionError("tls", f"TLS verification failed: {_short(err)}")
    if isinstance(err, requests.exceptions.Timeout):
        return CollectionError("timeout", "request timed out")
    if isinstance(err, requests.exceptions.ConnectionError):
        inner = err.args[0] if err.args else None
        if isinstance(inner, urllib3.exceptions.ReadTimeoutError):
            return CollectionError("timeout", "request timed out while reading the response")
        return CollectionError("connection", f"cannot connect: {_short(err)}")
    return CollectionError("connection", _short(err))


def unexpected(err: BaseException, scrub: Any = None) -> CollectionError:
    """Any failure nobody foresaw: reason ``error``, the exception's type and a short, scrubbed text."""
    text = _short(err)
    if scrub is not None:
        text = scrub(text)
    return CollectionError("error", f"{type(err).__name__}: {text}" if text else type(err).__name__)


def transport_exception(err: BaseException) -> requests.exceptions.RequestException:
    """A low-level failure while reading the body, as requests would have raised it."""
    return requests.exceptions.ConnectionError(_short(err))


def _short(err: BaseException) -> str:
    text = str(err)
    for marker in ("certificate verify failed", "Connection refused", "Name or service not known", "timed out"):
        if marker in text:
            return marker
    text = re.sub(r"https?://\S+", "<url>", text)
    text = re.sub(r"(?i)(\burl: )\S+", r"\1<url>", text)  # urllib3: "Max retries exceeded with url: /p?sig=..."
    return scrub(text)[:200]


class BoundedSession(requests.Session):
    """A session that ignores the environment, never redirects, and bounds size and time.

    msal uses it too (as ``http_client``), so discovery and token requests get the same
    verification, timeout and limits as the Update API calls.
    """

    def __init__(self, verify: str | bool, timeout: float, max_body: int) -> None:
        super().__init__()
        self.trust_env = False
        self.verify = verify
        self.headers["User-Agent"] = f"azurestack-exporter/{__version__}"
        self.timeout = timeout
        self.max_body = max_body
        self.deadline = float("inf")
        self.budget = float("inf")  # bytes every answer of the current read may still take together
        self.ca_file = verify if isinstance(verify, str) else None
        self.adapter = TrustAdapter(None, pool_connections=4, pool_maxsize=4, max_retries=0)
        # Every connection registers with the deadline reaper (see deadline.py).
        self.adapter.poolmanager.pool_classes_by_scheme = dict(POOL_CLASSES)  # type: ignore[assignment]
        self.mount("https://", self.adapter)
        self.mount("http://", self.adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        """One request, whole: connect, headers and body within ``timeout`` (and the collection's deadline)."""
        now = time.monotonic()
        deadline = min(self.deadline, now + self.timeout)
        if deadline <= now:
            raise requests.exceptions.Timeout("collection deadline reached")
        try:  # the shared context of this CA file as it is now: a rotated CA is used at once
            self.adapter.use(trust_context(self.ca_file))
        except (OSError, ssl.SSLError) as err:
            raise requests.exceptions.SSLError(f"cannot use the CA file: {_short(err)}") from None
        kwargs["timeout"] = deadline - now
        kwargs["stream"] = True
        kwargs["allow_redirects"] = False
        with request_deadline(deadline):
            try:
                response = super().request(method, url, *args, **kwargs)
                try:
                    chunks, size = [], 0
                    for chunk in response.iter_content(65536):
                        size += len(chunk)
                        if size > self.max_body:
                            raise CollectionError("size", f"response larger than {self.max_body // (1024 * 1024)} MiB")
                        if size > self.budget:
                            raise CollectionError(
                                "size", f"answers of one read larger than {MAX_READ_BYTES // (1024 * 1024)} MiB"
                            )
                        chunks.append(chunk)
                    self.budget -= size
                    # Hand the bounded body to requests' normal accessors (.text, .json()).
                    response._content = b"".join(chunks)
                    response._content_consumed = True
                finally:
                    response.close()
            except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
                if time.monotonic() >= deadline - 0.01:
                    # The reaper shut the connection: however the bytes came, the request took too long.
                    raise DeadlineExceededError(
                        f"no complete answer within {self.timeout:g} s (the whole request's deadline)"
                    ) from None
                if isinstance(err, requests.exceptions.RequestException):
                    raise
                raise transport_exception(err) from None
        return response


def _load_certificate_credential(path: str) -> dict[str, str]:
    """msal's credential for a PEM file holding the certificate and its private key."""
    from cryptography import x509  # 10 MiB of memory: imported only where a certificate is used
    from cryptography.hazmat.primitives import serialization

    try:
        data = read_bounded(path, MAX_CREDENTIAL_BYTES)
    except (OSError, ValueError) as err:
        raise CollectionError("auth", f"cannot read client_certificate_file: {_short(err)}") from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise CollectionError("auth", f"client certificate file cannot be used: {_short(err)}") from None
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    # With the certificate, msal computes the thumbprints itself: x5t#S256 with PS256
    # for Entra ID, SHA-1 x5t with RS256 for AD FS (which supports nothing else).
    return {"private_key": key_pem, "public_certificate": cert_pem}


class AdminClient:
    """One stamp's admin endpoint, with its discovery results and token cache kept between reads.

    Reads of one stamp never overlap (the refresher runs one at a time per stamp), so the
    per-read deadline on the session is safe.
    """

    def __init__(self, admin: AdminConfig, *, max_body: int = MAX_BODY_BYTES) -> None:
        self.admin = admin
        self._max_body = max_body
        self._session: BoundedSession | None = None
        self._lock = threading.Lock()
        self._token_value: str | None = None
        self._token_until = 0.0  # monotonic: when the token is asked for again
        self._credential_key: object = None
        self._scope: str | None = None
        self._authority: str | None = None
        self._subscription = admin.subscription_id
        self._location = admin.location
        self._api_version: str | None = None
        self._secret: str | None = None
        self._last: tuple[float, AdminReading] | None = None
        self._full: tuple[float, AdminReading] | None = None  # the last reading of updates and runs, when
        self.next_read_in = float("inf")  # seconds until this client's next read (the refresh interval)

    # ------------------------------------------------------------ public

    @property
    def session(self) -> BoundedSession:
        """The session of this read, made when needed: between reads a client holds none unless
        it keeps its connections (a session and its pools cost a few KiB a stamp)."""
        if self._session is None:
            self._session = BoundedSession(self.admin.ca_file or True, self.admin.timeout, self._max_body)
        return self._session

    def read(self, max_age: float = 0.0) -> AdminReading:
        """Read the stamp; a reading younger than ``max_age`` seconds is returned as it is.

        Stamps configured with the same endpoint and credentials share one client, so the
        second of them in a refresh round reuses the first one's reading.
        """
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < max_age:
                return self._last[1]
            self.session.deadline = time.monotonic() + DEADLINE_FACTOR * self.admin.timeout
            self.session.budget = MAX_READ_BYTES
            try:
                reading = self._read()
                self._last = (time.monotonic(), reading)
                return reading
            except CollectionError as err:
                self._forget(err.reason)
                raise CollectionError(err.reason, self._scrub(err.message)) from None
            except requests.exceptions.RequestException as err:
                raise transport_error(err) from None
            except RecursionError:
                raise CollectionError("parse", "an answer is nested too deeply") from None
            except Exception as err:  # whatever else goes wrong, the stamp goes down with a reason
                self._forget("auth")
                raise unexpected(err, self._scrub) from None
            finally:
                self.session.deadline = float("inf")
                self.session.budget = float("inf")
                if self.next_read_in > KEEP_ALIVE_MAX:
                    self.close()  # idle until the next read: the server would drop it anyway

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _forget(self, reason: str) -> None:
        """After a refusal, start the next read afresh: a new token, rediscovered subscription and location."""
        if reason == "auth":
            self._token_value = None
            self._authority = None  # the metadata is read again too
        if reason in ("auth", "http"):
            self._subscription = self.admin.subscription_id
            self._location = self.admin.location
            self._api_version = None  # pragma: no mutate - any false value means "try every api-version"
            self._full = None

    # ------------------------------------------------------------ chain

    def _read(self) -> AdminReading:
        token = self._token()
        subscription = self._subscription or self._discover_subscription(token)
        self._subscription = subscription
        location = self._location or self._discover_location(token, subscription)
        self._location = location
        # Discovered names come from the stamp: quoted, each stays one path segment.
        sub, loc = quote(subscription, safe=""), quote(location, safe="")
        base = (
            f"{self.admin.endpoint}/subscriptions/{sub}/resourceGroups/System.{loc}"
            f"/providers/Microsoft.Update.Admin/updateLocations/{loc}"
        )
        body, api_version = self._get_update_location(base, token)
        reading = self._updates(base, body, api_version, token, subscription, location)
        # The version data is read: whatever happens to the Health provider's read stays there.
        return replace(reading, health=self._health(token, subscription, location))

    def _updates(
        self, base: str, body: dict[str, Any], api_version: str, token: str, subscription: str, location: str
    ) -> AdminReading:
        """The update location, with its updates and their runs when they may have changed."""
        summary = reading_from(body, [], api_version, location, subscription)
        now = time.monotonic()
        if self._full is not None and now - self._full[0] < FULL_READ_PERIOD and unchanged(self._full[1], summary):
            # Nothing the update location tells has changed, and nothing was under way: the
            # updates and runs read last time are still what the stamp would list.
            return replace(summary, updates=self._full[1].updates, runs=self._full[1].runs)
        items = self._pages(f"{base}/updates", token, api_version, "updates", MAX_UPDATES)
        reading = replace(summary, updates=updates_from(items))
        runs: list[UpdateRun] = []
        for update in run_candidates(reading.updates):
            # The name comes from the stamp: quoted, it can only ever be one path segment.
            name = quote(update.name, safe="")
            runs.extend(self._runs(f"{base}/updates/{name}/updateRuns", token, api_version, update.version))
        reading = replace(reading, runs=tuple(runs))
        self._full = (now, reading)
        return reading

    def _health(self, token: str, subscription: str, location: str) -> Health:
        """The stamp's active alerts (module ``health``), with the read's session and token and a
        byte budget of its own. A failure here is the health read's only: the stamp stays up."""
        self.session.budget = MAX_READ_BYTES
        url = health.alerts_url(self.admin.endpoint, subscription, location)
        try:
            items = self._pages(
                url, token, health.API_VERSION, "alerts", health.MAX_ALERTS, max_objects=health.MAX_ALERT_OBJECTS
            )
            return health.health_from(items)
        except CollectionError as err:
            return health.failed(err.reason, self._scrub(err.message))
        except requests.exceptions.RequestException as err:
            error = transport_error(err)
            return health.failed(error.reason, self._scrub(error.message))
        except RecursionError:
            return health.failed("parse", "alerts list is nested too deeply")
        except Exception as err:  # whatever else goes wrong, the health read alone fails, with a reason
            error = unexpected(err, self._scrub)
            return health.failed(error.reason, error.message)

    def _runs(self, url: str, token: str, api_version: str, version: str) -> list[UpdateRun]:
        """The newest runs of one update (one page); an update with no runs list has none."""
        response = self._get(url, token, {"api-version": api_version})
        if response.status_code == 404:
            return []
        body = self._json(response, "update runs")
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise CollectionError("parse", "update runs list has no 'value' array")
        runs = [r for r in (run_from(item, version) for item in body["value"]) if r is not None]
        return sorted(runs, key=lambda r: r.started or 0.0)[-RUNS_PER_UPDATE:]  # pragma: no mutate - undated first

    def _metadata(self) -> tuple[str, str]:
        url = f"{self.admin.endpoint}/metadata/endpoints"
        response = self._get(url, None, {"api-version": METADATA_API_VERSION})
        body = self._json(response, "metadata endpoint")
        auth = body.get("authentication") if isinstance(body, dict) else None
        login = auth.get("loginEndpoint") if isinstance(auth, dict) else None
        audiences = auth.get("audiences") if isinstance(auth, dict) else None
        if not isinstance(login, str) or not login.startswith("https://"):
            raise CollectionError("parse", "metadata endpoint gives no https loginEndpoint")
        if not isinstance(audiences, list) or not audiences or not isinstance(audiences[0], str):
            raise CollectionError("parse", "metadata endpoint gives no audiences")
        return login.rstrip("/"), audiences[0].rstrip("/")

    def _credential(self) -> tuple[object, object]:
        """(msal client_credential, a key that changes when the credential does)."""
        admin = self.admin
        if admin.client_certificate_file:
            credential: object = _load_certificate_credential(admin.client_certificate_file)
            return credential, json.dumps(credential, sort_keys=True)
        if admin.client_secret_file:
            try:
                secret = read_bounded(admin.client_secret_file, MAX_CREDENTIAL_BYTES).decode("utf-8").strip()
            except (OSError, ValueError) as err:
                raise CollectionError("auth", f"cannot read client_secret_file: {_short(err)}") from None
        else:
            secret = os.environ.get(admin.client_secret_env or "", "").strip()
        if not secret:
            raise CollectionError("auth", "the client secret is empty")
        self._secret = secret
        register_secret(secret)
        return secret, secret

    def _token(self) -> str:
        """The token, reused until TOKEN_RENEWAL before it expires; then msal asks for a new one.

        The msal application (its discovery and caches, about 8 KiB a stamp) lives only while a
        token is requested: the token and its expiry are all a read needs until then.
        """
        credential, key = self._credential()
        now = time.monotonic()
        if self._token_value is not None and key == self._credential_key and now < self._token_until:
            return self._token_value
        if self._authority is None or key != self._credential_key:
            login, audience = self._metadata()
            is_adfs = login.lower().endswith("/adfs")
            self._authority = login if is_adfs else f"{login}/{self.admin.tenant}"
            self._scope = f"{audience}/.default"
        try:
            app = msal.ConfidentialClientApplication(
                self.admin.client_id,
                client_credential=credential,
                authority=self._authority,
                http_client=self.session,
                instance_discovery=False,
            )
        except ValueError as err:
            raise CollectionError("auth", f"cannot use the authority: {self._scrub(_short(err))}") from None
        assert self._scope is not None
        try:
            result = app.acquire_token_for_client(scopes=[self._scope])
        except msal.exceptions.MsalServiceError as err:
            raise CollectionError("auth", f"token endpoint failed: {self._scrub(_short(err))}") from None
        except ValueError as err:
            raise CollectionError("auth", f"token request failed: {self._scrub(_short(err))}") from None
        if not isinstance(result, dict) or "access_token" not in result:
            error = result.get("error", "unknown_error") if isinstance(result, dict) else "unknown_error"
            description = (result.get("error_description") or "") if isinstance(result, dict) else ""
            first_line = description.splitlines()[0] if description else ""
            raise CollectionError("auth", f"token request refused: {error} {first_line}".strip())
        token = str(result["access_token"])
        lifetime = result.get("expires_in")
        lifetime = float(lifetime) if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) else 0.0
        # Bounded: a token said to last a year is asked for again within a day, one that lasts
        # less than the renewal margin is used for this read only.
        self._token_value, self._credential_key = token, key
        self._token_until = now + min(MAX_TOKEN_REUSE, max(0.0, lifetime - TOKEN_RENEWAL))
        return token

    def _discover_subscription(self, token: str) -> str:
        for item in self._pages(f"{self.admin.endpoint}/subscriptions", token, ARM_API_VERSION, "subscriptions"):
            if str(item.get("displayName")).lower() == DEFAULT_PROVIDER_SUBSCRIPTION.lower():
                sub = item.get("subscriptionId")
                if isinstance(sub, str) and sub:
                    return sub
        raise CollectionError(
            "auth",
            f"the {DEFAULT_PROVIDER_SUBSCRIPTION} is not visible to client {self.admin.client_id}: "
            "give it read access (Reader) on that subscription, or set subscription_id",
        )

    def _discover_location(self, token: str, subscription: str) -> str:
        url = f"{self.admin.endpoint}/subscriptions/{quote(subscription, safe='')}/locations"
        for item in self._pages(url, token, ARM_API_VERSION, "locations"):
            name = item.get("name")
            if isinstance(name, str) and name:
                return name
        raise CollectionError("parse", "the subscription lists no location; set location")

    def _get_update_location(self, base: str, token: str) -> tuple[dict[str, Any], str]:
        versions = [self._api_version] if self._api_version else list(API_VERSIONS)
        for index, api_version in enumerate(versions):
            response = self._get(base, token, {"api-version": api_version})
            # 400 InvalidApiVersionParameter / NoRegisteredProviderFound, or ARM's 404
            # InvalidResourceType "... for api version '2021-07-01'": try the older api-version.
            if response.status_code in (400, 404) and index + 1 < len(versions) and _rejects_api_version(response):
                continue
            body = self._json(response, "update location")
            if not isinstance(body, dict):
                raise CollectionError("parse", "update location is not a JSON object")
            self._api_version = api_version
            return body, api_version
        # Unreachable: the last api-version's answer is returned or raised above.
        raise AssertionError("unreachable")  # pragma: no mutate

    # ------------------------------------------------------------ HTTP

    def _pages(
        self,
        url: str,
        token: str,
        api_version: str,
        what: str,
        max_items: int = MAX_UPDATES,
        max_objects: int = MAX_JSON_OBJECTS,
    ) -> list[dict[str, Any]]:
        """Every item of a paginated ARM list, following nextLink on the same host only; at most ``max_items``."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] | None = {"api-version": api_version}
        seen: set[str] = set()
        origin = urlsplit(self.admin.endpoint)
        for _ in range(MAX_PAGES):
            body = self._json(self._get(url, token, params), what, max_objects)
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise CollectionError("parse", f"{what} list has no 'value' array")
            items.extend(i for i in body["value"] if isinstance(i, dict))
            if len(items) > max_items:
                raise CollectionError("size", f"{what} list has more than {max_items} entries")
            next_link = body.get("nextLink")
            if not next_link:
                return items
            if not isinstance(next_link, str):
                raise CollectionError("parse", f"{what} list has a malformed nextLink")
            parts = urlsplit(next_link)
            if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
                raise CollectionError("parse", f"{what} nextLink points to another host; not followed")
            if next_link in seen:
                raise CollectionError("parse", f"{what} nextLink repeats a page")
            seen.add(next_link)
            url, params = next_link, None
        raise CollectionError("parse", f"{what} list has more than {MAX_PAGES} pages")

    def _get(self, url: str, token: str | None, params: dict[str, str] | None) -> requests.Response:
        """GET (with the bearer token if given); retries 429 and 5xx with backoff while the deadline allows."""
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in range(MAX_RETRIES + 1):
            response = self.session.get(url, params=params, headers=headers)
            status = response.status_code
            if status == 429 or status >= 500:
                wait = _retry_after(response) if status == 429 else 0.5 * (2**attempt)
                if attempt < MAX_RETRIES and time.monotonic() + wait < self.session.deadline:
                    time.sleep(wait)
                    continue
            return response
        return response  # pragma: no cover - the loop always returns

    def _json(self, response: requests.Response, what: str, max_objects: int = MAX_JSON_OBJECTS) -> Any:
        status = response.status_code
        if status in (401, 403):
            raise CollectionError("auth", f"{what} answered HTTP {status}: {_arm_error(response)}")
        if status >= 300:
            raise CollectionError("http", f"{what} answered HTTP {status}: {_arm_error(response)}")
        content_type = response.headers.get("Content-Type", "")
        if "json" not in content_type.lower():
            kind = content_type.split(";")[0].strip() or "no content type"
            raise CollectionError("parse", f"{what} answered {kind}, not JSON")
        return parse_json(response.content, what, max_objects)

    def _scrub(self, text: str) -> str:
        """Belt and braces: no message leaves this module holding a secret, in any encoding, or a URL's query."""
        return scrub(text)


def reading_from(
    location_body: object, update_items: list[dict[str, Any]], api_version: str, location: str, subscription: str
) -> AdminReading:
    """The update location and its updates, as either api-version and real servers send them.

    Lenient where the API is (unknown states, missing fields, odd timestamps), strict where
    a verdict depends on it (a current version): anything else is a ``parse`` CollectionError.
    """
    if not isinstance(location_body, dict):
        raise CollectionError("parse", "update location is not a JSON object")
    props = location_body.get("properties")
    if not isinstance(props, dict):
        raise CollectionError("parse", "update location has no properties")
    current = clean_text(props.get("currentVersion"), 64)
    if current is None:
        raise CollectionError("parse", "update location has no currentVersion")
    return AdminReading(
        current_version=current,
        current_oem_version=clean_text(props.get("currentOemVersion"), 64),
        state=clean_text(props.get("state"), 64),
        last_updated=parse_timestamp(props.get("lastUpdated")),
        last_checked=parse_timestamp(props.get("lastChecked")),
        updates=updates_from(update_items),
        api_version=api_version,
        location=location,
        subscription_id=subscription,
        oem_family=clean_text(props.get("oemFamily"), 64),
    )


def unchanged(full: AdminReading, summary: AdminReading) -> bool:
    """Whether a full reading still holds: the update location says what it said then, and
    then nothing was under way (an update being prepared, downloaded or installed, a run in
    progress), whose updates and runs change without the location saying so."""
    said = (full.current_version, full.current_oem_version, full.state, full.last_updated, full.last_checked)
    says = (
        summary.current_version,
        summary.current_oem_version,
        summary.state,
        summary.last_updated,
        summary.last_checked,
    )
    if said != says or (full.api_version, full.location, full.subscription_id) != (
        summary.api_version,
        summary.location,
        summary.subscription_id,
    ):
        return False
    if (full.state or "").lower() in LOCATION_BUSY_STATES:
        return False
    for update in full.updates:
        state = update.state.lower()
        if state in UPDATE_BUSY_STATES or state.endswith("inprogress"):
            return False
    return not any(run.state.lower() == "inprogress" for run in full.runs)


def updates_from(items: list[dict[str, Any]]) -> tuple[AvailableUpdate, ...]:
    """The entries of an updates list that carry a version; the rest are skipped."""
    updates = []
    for item in items:
        props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
        name = item.get("name") if isinstance(item.get("name"), str) else ""
        name = clean_text(name.split("/")[-1], 128) or ""  # real servers send "<location>/<updateName>"
        version = clean_text(props.get("version"), 64)
        if version is None:
            continue
        updates.append(
            AvailableUpdate(
                name=name,
                version=version,
                package_type=clean_text(props.get("packageType"), 32) or "",
                state=clean_text(props.get("state"), 64) or "Unknown",
                publisher=clean_text(props.get("publisher"), 64) or "",
                min_version=clean_text(props.get("minVersionRequired"), 64),
                min_oem_version=clean_text(props.get("minOemVersionRequired"), 64),
            )
        )
    return tuple(updates)


# Update states whose runs tell of an update being installed, or having failed to.
ACTIVE_UPDATE_STATES = ("installing", "installationfailed", "preparationfailed", "preparing", "downloading")


def run_candidates(updates: tuple[AvailableUpdate, ...]) -> list[AvailableUpdate]:
    """Whose runs to read, at most MAX_RUN_UPDATES: updates being installed or failed first,
    then the newest installed ones (their succeeded runs say how long an update takes here)."""
    microsoft = [u for u in updates if not u.is_oem and u.microsoft_version() is not None and u.name]
    active = [u for u in microsoft if u.state.lower() in ACTIVE_UPDATE_STATES]
    installed = sorted((u for u in microsoft if u.installed), key=lambda u: u.microsoft_version(), reverse=True)
    return (active + installed)[:MAX_RUN_UPDATES]


def run_from(item: object, version: str) -> UpdateRun | None:
    """One run of an updateRuns list, as both api-versions and real stamps send it."""
    if not isinstance(item, dict) or not isinstance(item.get("properties"), dict):
        return None
    props = item["properties"]
    failed = failed_step(props.get("progress"))
    state = clean_text(props.get("state"), 32) or "Unknown"
    return UpdateRun(
        update=version,
        state=state,
        started=parse_timestamp(props.get("timeStarted")),
        duration=parse_run_duration(props.get("duration")),
        failed_step=failed[0] if failed and state.lower() == "failed" else None,
        error=failed[1] if failed and state.lower() == "failed" else None,
    )


def parse_json(body: bytes, what: str, max_objects: int = MAX_JSON_OBJECTS) -> Any:
    """JSON bounded in what it becomes, not only in bytes: 8 MiB of ``{}`` would be gigabytes of dicts."""
    if body.count(b"{") + body.count(b"[") > max_objects:
        raise CollectionError("size", f"{what} answered more than {max_objects} JSON objects")
    try:
        return json.loads(body)
    except RecursionError:
        raise CollectionError("parse", f"{what} answered JSON nested too deeply") from None
    except ValueError:
        raise CollectionError("parse", f"{what} answered malformed JSON") from None


def _rejects_api_version(response: requests.Response) -> bool:
    try:
        error = json.loads(response.content)["error"]
        code, message = str(error.get("code")), str(error.get("message")).lower()
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    if response.status_code == 404:
        return code == "InvalidResourceType" and ("api version" in message or "api-version" in message)
    return "apiversion" in code.lower() or "NoRegisteredProviderFound" in code or "api-version" in message


def _arm_error(response: requests.Response) -> str:
    """The ARM error code and message, shortened; or the reason phrase."""
    try:
        error = json.loads(response.content)["error"]
        code, message = clean_text(error.get("code"), 64), clean_text(error.get("message"), 160) or ""
    except (ValueError, KeyError, TypeError, AttributeError):
        code = None
    if not code:
        return clean_text(response.reason, 64) or "error"
    return f"{code}: {message}".rstrip(": ")


def _retry_after(response: requests.Response) -> float:
    """Seconds to wait: delta-seconds or an HTTP date; anything else (``²``, garbage) means 1 s."""
    # Header names are case-insensitive, and a missing header means what garbage does: 1 s.
    value = response.headers.get("Retry-After", "").strip()  # pragma: no mutate
    if re.fullmatch(r"[0-9]{1,9}", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return 1.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - time.time())
