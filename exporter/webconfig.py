"""``--web.config.file``: TLS, client certificates, basic auth and headers, as the Prometheus
exporter-toolkit defines them, so one web configuration serves all of an operator's exporters.

Loaded and validated completely (bad files are a ``ConfigError``, exit 2 at start, a refused
reload later); an accepted configuration becomes an immutable ``WebSecurity`` the server swaps
in whole. Basic-auth checks cost a bcrypt verification (~70 ms at cost 10) only the first time
a user/password pair succeeds; later requests hit an in-memory cache of successes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import ssl
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

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
    users = {}
    for user, hashed in value.items():
        path = f"basic_auth_users.{user}"
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigError(file, "basic_auth_users", f"{user!r} is not a valid user name")
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(file, path, "must be a bcrypt hash ($2y$...), not a password")
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
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        # Credentials being verified now: later arrivals wait for that one bcrypt run.
        self._pending: dict[bytes, threading.Event] = {}

    def _dummy(self, users: Mapping[str, bytes]) -> bytes:
        costs = [bcrypt_cost(h) for h in users.values()]
        cost = max(set(costs), key=costs.count)  # the most common configured cost
        with self._lock:
            dummy = self._dummies.get(cost)
        if dummy is None:
            dummy = bcrypt.hashpw(b"unknown user", bcrypt.gensalt(cost))  # pragma: no mutate - any password will do
            with self._lock:
                self._dummies[cost] = dummy
        return dummy

    def check(self, users: Mapping[str, bytes], header: str | None) -> bool:
        if not users:
            return True
        if not header:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "basic":  # the scheme is case-insensitive (RFC 9110)
            return False
        try:
            user, sep, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        if not sep:
            return False
        hashed = users.get(user)
        if hashed is None or len(password.encode()) > BCRYPT_MAX_PASSWORD:
            bcrypt.checkpw(password.encode()[:BCRYPT_MAX_PASSWORD], self._dummy(users))
            return False
        # Any separator that cannot occur in a user name keeps the parts apart.
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()  # pragma: no mutate
        while True:
            with self._lock:
                if key in self._cache:
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
                    self._cache[key] = None  # pragma: no mutate - an ordered set: the value is unused
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
