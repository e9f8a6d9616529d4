"""``--web.config.file``: TLS, client certificates, basic auth and headers, as the Prometheus
exporter-toolkit defines them, so one web configuration serves all of an operator's exporters.

Loaded and validated completely (bad files are a ``ConfigError``, exit 2 at start, a refused
reload later); an accepted configuration becomes an immutable ``WebSecurity`` the server swaps
in whole. Basic-auth checks cost a bcrypt verification (~70 ms at cost 10) only when a
user/password pair has not succeeded in the last ``AUTH_CACHE_TTL`` seconds; later requests hit
an in-memory cache of successes (never of failures, which clients could generate without end).
Verifications run one at a time on one thread (``CredentialChecks``), behind a short queue:
a flood of wrong passwords costs one core at most, and is refused beyond the queue.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import queue
import re
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from .config import ConfigError, load_yaml
from .files import read_bounded

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit's values; the two that accept a certificate without verifying it are refused.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
UNVERIFIED_CLIENT_AUTH = ("RequestClientCert", "RequireAnyClientCert")
# Go's names of the TLS 1.2 cipher suites it offers, in OpenSSL's spelling.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
}
# The headers exporter-toolkit lets a web configuration set, with the values it accepts (None: any).
HEADERS: Mapping[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
AUTH_CACHE_SIZE = 1024
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
AUTH_CACHE_TTL = 300.0  # seconds a verified user/password pair is answered without bcrypt
MAX_QUEUED_CHECKS = 8  # bcrypt verifications waiting for the one verifier; more are refused at once


@dataclass(frozen=True)
class TLSSettings:
    context: ssl.SSLContext
    client_allowed_sans: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebSecurity:
    """What the server enforces; the default is plain HTTP, no auth, no extra headers."""

    tls: TLSSettings | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[str, bytes] = field(default_factory=dict)


def _mapping(value: object, file: str, path: str, allowed: tuple[str, ...]) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(file, path or "(top level)", "must be a mapping")
    for key in value:
        if key not in allowed:
            raise ConfigError(
                file, f"{path}.{key}" if path else str(key), f"unknown key (allowed: {', '.join(allowed)})"
            )
    return value


def _pem(
    item: Mapping[str, object], file: str, path: str, inline: str, name: str, directory: Path
) -> tuple[bytes, Path | None] | None:
    """Inline PEM (``cert``) or a file (``cert_file``), not both: (content, file path or None)."""
    text, filename = item.get(inline), item.get(f"{name}_file")
    if text is not None and filename is not None:
        raise ConfigError(file, f"{path}.{inline}", f"give {inline} or {name}_file, not both")
    if text is not None:
        if not isinstance(text, str):
            raise ConfigError(file, f"{path}.{inline}", "must be a PEM string")
        return text.encode(), None
    if filename is None:
        return None
    if not isinstance(filename, str):
        raise ConfigError(file, f"{path}.{name}_file", "must be a file name")
    resolved = directory / filename  # an absolute file name stays as it is
    try:
        return read_bounded(resolved), resolved
    except ValueError as err:
        raise ConfigError(file, f"{path}.{name}_file", f"{filename} {err}") from None
    except OSError as err:
        raise ConfigError(file, f"{path}.{name}_file", f"cannot read {filename}: {err.strerror or err}") from None


def _load_chain(context: ssl.SSLContext, cert: tuple[bytes, Path | None], key: tuple[bytes, Path | None]) -> None:
    """load_cert_chain reads only files: inline PEM goes through a private temporary directory,
    files are loaded where they are (so a read-only root filesystem needs no writable /tmp)."""
    if cert[1] is not None and key[1] is not None:
        context.load_cert_chain(cert[1], key[1])
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)  # pragma: no mutate - mkdtemp already makes it 0o700; this says so
        (Path(tmp) / "cert.pem").write_bytes(cert[0])
        (Path(tmp) / "key.pem").write_bytes(key[0])
        context.load_cert_chain(Path(tmp) / "cert.pem", Path(tmp) / "key.pem")


def _tls(value: object, file: str, directory: Path) -> TLSSettings | None:
    path = "tls_server_config"
    item = _mapping(
        value,
        file,
        path,
        (
            "cert",
            "key",
            "client_ca",
            "cert_file",
            "key_file",
            "client_ca_file",
            "client_auth_type",
            "client_allowed_sans",
            "min_version",
            "max_version",
            "cipher_suites",
            "prefer_server_cipher_suites",
            "curve_preferences",
        ),
    )
    if not item:
        return None
    cert = _pem(item, file, path, "cert", "cert", directory)
    key = _pem(item, file, path, "key", "key", directory)
    if cert is None or key is None:
        raise ConfigError(file, path, "needs a certificate and its key (cert_file and key_file)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        _load_chain(context, cert, key)
    except ssl.SSLError as err:
        raise ConfigError(file, path, f"certificate and key cannot be used together: {err.reason or err}") from None
    for name, attribute, default in (
        ("min_version", "minimum_version", "TLS12"),
        ("max_version", "maximum_version", "TLS13"),
    ):
        version = item.get(name, default)
        if version not in TLS_VERSIONS:
            raise ConfigError(file, f"{path}.{name}", f"must be one of {', '.join(TLS_VERSIONS)}")
        setattr(context, attribute, TLS_VERSIONS[str(version)])
    if context.minimum_version > context.maximum_version:
        raise ConfigError(file, f"{path}.min_version", "is above max_version")
    auth = item.get("client_auth_type", "NoClientCert")
    if auth in UNVERIFIED_CLIENT_AUTH:
        raise ConfigError(
            file,
            f"{path}.client_auth_type",
            f"{auth} accepts certificates without verifying them; use RequireAndVerifyClientCert",
        )
    if auth not in CLIENT_AUTH:
        raise ConfigError(file, f"{path}.client_auth_type", f"must be one of {', '.join(CLIENT_AUTH)}")
    context.verify_mode = CLIENT_AUTH[str(auth)]
    client_ca = _pem(item, file, path, "client_ca", "client_ca", directory)
    if context.verify_mode != ssl.CERT_NONE:
        if client_ca is None:
            raise ConfigError(file, f"{path}.client_ca_file", f"is required with client_auth_type {auth}")
        try:
            context.load_verify_locations(cadata=client_ca[0].decode())
        except (ssl.SSLError, ValueError) as err:
            raise ConfigError(file, f"{path}.client_ca_file", f"holds no usable CA certificate: {err}") from None
    sans = item.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) for s in sans):
        raise ConfigError(file, f"{path}.client_allowed_sans", "must be a list of strings")
    if sans and context.verify_mode != ssl.CERT_REQUIRED:
        raise ConfigError(file, f"{path}.client_allowed_sans", "needs client_auth_type RequireAndVerifyClientCert")
    suites = item.get("cipher_suites") or []
    if not isinstance(suites, list):
        raise ConfigError(file, f"{path}.cipher_suites", "must be a list")
    if suites:
        unknown = [s for s in suites if s not in CIPHER_SUITES]
        if unknown:
            raise ConfigError(file, f"{path}.cipher_suites", f"unsupported cipher suite {unknown[0]!r}")
        context.set_ciphers(":".join(CIPHER_SUITES[s] for s in suites))
    elif context.minimum_version < ssl.TLSVersion.TLSv1_2:
        # OpenSSL 3 refuses TLS 1.0 and 1.1 at its default security level: an explicit
        # min_version below TLS12 is honoured, as exporter-toolkit honours it.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    # Python's server contexts prefer the server's order already: false must clear it.
    if item.get("prefer_server_cipher_suites", True):
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if item.get("curve_preferences"):
        raise ConfigError(file, f"{path}.curve_preferences", "is not supported by this exporter; remove it")
    return TLSSettings(context, tuple(sans))


def _headers(value: object, file: str) -> dict[str, str]:
    item = _mapping(value, file, "http_server_config", ("http2", "headers"))
    http2 = item.get("http2")  # accepted for exporter-toolkit compatibility; HTTP/1.1 is served
    if http2 is not None and not isinstance(http2, bool):
        raise ConfigError(file, "http_server_config.http2", "must be true or false")
    headers = _mapping(item.get("headers"), file, "http_server_config.headers", tuple(HEADERS))
    result = {}
    for name, raw in headers.items():
        if raw in (None, ""):
            continue
        allowed = HEADERS[name]
        if not isinstance(raw, str) or (allowed and raw.lower() not in allowed):
            hint = f" (one of: {', '.join(allowed)})" if allowed else ""
            raise ConfigError(file, f"http_server_config.headers.{name}", f"invalid value{hint}")
        result[name] = raw
    return result


def _users(value: object, file: str) -> dict[str, bytes]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(file, "basic_auth_users", "must be a mapping of user names to bcrypt hashes")
    import bcrypt  # loaded only where basic auth is configured (0.4 MiB)

    users = {}
    for user, hashed in value.items():
        path = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigError(file, "basic_auth_users", f"{user!r} is not a valid user name")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(file, path, "must be a bcrypt hash ($2y$...), not a password")
        if not BCRYPT_HASH.fullmatch(hashed):  # read here: bcrypt releases differ in what they refuse
            raise ConfigError(file, path, "is not a valid bcrypt hash")
        try:
            bcrypt.checkpw(b"", hashed.encode())  # pragma: no mutate - any password: only the hash is checked
        except ValueError:
            raise ConfigError(file, path, "is not a valid bcrypt hash") from None
        users[user] = hashed.encode()
    return users


def load_web_config(file: str | None) -> WebSecurity:
    """Read and validate a web configuration file; None gives plain HTTP without auth."""
    if not file:
        return WebSecurity()
    document = load_yaml(file)
    keys = ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit")
    top = _mapping(document, file, "", keys)  # pragma: no mutate - "" and None both mean the top level
    if top.get("rate_limit") is not None:
        raise ConfigError(file, "rate_limit", "is not supported by this exporter; remove it")
    directory = Path(file).resolve().parent
    return WebSecurity(
        tls=_tls(top.get("tls_server_config"), file, directory),
        headers=_headers(top.get("http_server_config"), file),
        users=_users(top.get("basic_auth_users"), file),
    )


BCRYPT_MAX_PASSWORD = 72  # bytes bcrypt uses; longer passwords are refused, as exporter-toolkit does


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a ``$2b$12$...`` hash (10 when it cannot be read)."""
    parts = hashed.split(b"$")
    return int(parts[2]) if len(parts) > 3 and parts[2].isdigit() and 4 <= int(parts[2]) <= 31 else 10


class BasicAuth:
    """Checks Authorization headers against bcrypt hashes, caching successes only."""

    def __init__(self) -> None:
        # Checked for unknown users, at the configured cost, so that a wrong user name costs
        # what a wrong password does and user names cannot be told apart by timing.
        self._dummies: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, float] = OrderedDict()  # successes: key -> when verified
        # Credentials being verified now: later arrivals wait for that one bcrypt run.
        self._pending: dict[bytes, threading.Event] = {}

    def _dummy(self, users: Mapping[str, bytes]) -> bytes:
        import bcrypt

        costs = [bcrypt_cost(h) for h in users.values()]
        cost = max(set(costs), key=costs.count)  # the most common configured cost
        with self._lock:
            dummy = self._dummies.get(cost)
        if dummy is None:
            dummy = bcrypt.hashpw(b"unknown user", bcrypt.gensalt(cost))  # pragma: no mutate - any password will do
            with self._lock:
                self._dummies[cost] = dummy
        return dummy

    @staticmethod
    def _credentials(header: str | None) -> tuple[str, str] | None:
        """(user, password) of a Basic Authorization header; None when it is not one."""
        if not header:
            return None
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "basic":  # the scheme is case-insensitive (RFC 9110)
            return None
        try:
            user, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return (user, password) if sep else None

    @staticmethod
    def _key(user: str, password: str, hashed: bytes) -> bytes:
        # Any separator that cannot occur in a user name keeps the parts apart.
        return hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()  # pragma: no mutate

    def cached(self, users: Mapping[str, bytes], header: str | None) -> bool | None:
        """The answer when no bcrypt is needed (no users, a malformed header, a recent success);
        None when only a bcrypt verification can tell."""
        if not users:
            return True
        credentials = self._credentials(header)
        if credentials is None:
            return False
        hashed = users.get(credentials[0])
        if hashed is None:
            return None  # an unknown user costs a verification too, so names cannot be told apart
        key = self._key(*credentials, hashed)
        with self._lock:
            verified = self._cache.get(key)
        return True if verified is not None and time.monotonic() - verified < AUTH_CACHE_TTL else None

    def verified_before(self, users: Mapping[str, bytes], header: str | None) -> bool:
        """These credentials succeeded before (their cache entry may have expired since)."""
        credentials = self._credentials(header)
        hashed = users.get(credentials[0]) if credentials else None
        if credentials is None or hashed is None:
            return False
        with self._lock:
            return self._key(*credentials, hashed) in self._cache

    def check(self, users: Mapping[str, bytes], header: str | None) -> bool:
        if not users:
            return True
        import bcrypt  # loaded only where basic auth is configured (0.4 MiB)

        credentials = self._credentials(header)
        if credentials is None:
            return False
        user, password = credentials
        hashed = users.get(user)
        if hashed is None or len(password.encode()) > BCRYPT_MAX_PASSWORD:
            bcrypt.checkpw(password.encode()[:BCRYPT_MAX_PASSWORD], self._dummy(users))
            return False
        key = self._key(user, password, hashed)
        while True:
            with self._lock:
                verified = self._cache.get(key)
                if verified is not None and time.monotonic() - verified < AUTH_CACHE_TTL:
                    self._cache.move_to_end(key)
                    return True
                pending = self._pending.get(key)
                if pending is None:
                    self._pending[key] = threading.Event()
                    break  # this thread verifies
            pending.wait()  # another thread is verifying these very credentials: then look again
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
            if ok:
                with self._lock:
                    self._cache[key] = time.monotonic()
                    self._cache.move_to_end(key)
                    while len(self._cache) > AUTH_CACHE_SIZE:
                        self._cache.popitem(last=False)  # pragma: no mutate - None is False here: the oldest
            return ok
        finally:
            with self._lock:
                self._pending.pop(key).set()


def peer_sans(peer: dict | None) -> set[str]:
    """The SAN values (DNS, IP, e-mail, URI) of a verified peer certificate."""
    if not peer:
        return set()
    return {value for _, value in peer.get("subjectAltName", ())}


class CredentialChecks:
    """bcrypt verifications, one at a time on one thread, behind a queue of ``MAX_QUEUED_CHECKS``.

    Beyond the queue a check is refused at once (``submit`` returns None), except for
    credentials that succeeded before: a scraper whose cached success expired is never shut
    out by a flood of wrong passwords.
    """

    def __init__(self, auth: BasicAuth, max_queued: int = MAX_QUEUED_CHECKS) -> None:
        self.auth = auth
        self.max_queued = max_queued
        self._queue: queue.Queue[tuple[Callable[[], bool], Future[bool]] | None] = queue.Queue()
        self._waiting = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, users: Mapping[str, bytes], header: str | None) -> Future[bool] | None:
        with self._lock:
            if self._waiting >= self.max_queued and not self.auth.verified_before(users, header):
                return None
            self._waiting += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="bcrypt", daemon=True)
                self._thread.start()
        future: Future[bool] = Future()
        self._queue.put((lambda: self.auth.check(users, header), future))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            check, future = item
            with self._lock:
                self._waiting -= 1
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(check())
            except Exception as err:
                future.set_exception(err)

    def close(self) -> None:
        self._queue.put(None)
