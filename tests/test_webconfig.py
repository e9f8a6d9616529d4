"""The web configuration in process: each key's accepted and refused values, the TLS context it
builds, and basic auth's answers. test_web_security.py serves the same files over real sockets."""

from __future__ import annotations

import base64
import ssl
import threading
import time
from pathlib import Path

import bcrypt
import pytest
from conftest import write
from pki import make_ca, make_client_cert, make_server_cert

from exporter.config import ConfigError
from exporter.webconfig import (
    AUTH_CACHE_SIZE,
    BasicAuth,
    WebSecurity,
    bcrypt_cost,
    load_web_config,
    peer_sans,
)

HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def pem(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pem")
    ca = make_ca()
    server = make_server_cert(ca)
    server.write(d, "server")
    (d / "ca.pem").write_bytes(ca.cert_pem)
    other = make_server_cert(make_ca("another CA"))
    other.write(d, "other")
    return {
        "dir": str(d),
        "cert": str(d / "server.crt"),
        "key": str(d / "server.key"),
        "ca": str(d / "ca.pem"),
        "other_key": str(d / "other.key"),
        "cert_pem": server.cert_pem.decode(),
        "key_pem": server.key_pem.decode(),
        "ca_pem": ca.cert_pem.decode(),
    }


def load(tmp_path: Path, text: str):
    return load_web_config(str(write(tmp_path / "web.yml", text)))


def refusal(tmp_path: Path, text: str) -> tuple[str, str]:
    file = write(tmp_path / "web.yml", text)
    with pytest.raises(ConfigError) as caught:
        load_web_config(str(file))
    assert caught.value.file == str(file)
    return caught.value.path, caught.value.problem


def tls(pem, extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: {pem['cert']}\n  key_file: {pem['key']}\n{extra}"


# ---------------------------------------------------------------- the file


def test_no_file_and_an_empty_file_mean_plain_http_without_auth(tmp_path):
    assert load_web_config(None) == WebSecurity()
    assert load_web_config("") == WebSecurity()
    assert load(tmp_path, "") == WebSecurity()
    assert load(tmp_path, "tls_server_config:\nhttp_server_config:\nbasic_auth_users:\n") == WebSecurity()


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        ("- a list\n", "(top level)", "must be a mapping"),
        (
            "tls_config: {}\n",
            "tls_config",
            "unknown key (allowed: tls_server_config, http_server_config, basic_auth_users, rate_limit)",
        ),
        ("rate_limit: {interval: 1s}\n", "rate_limit", "is not supported by this exporter; remove it"),
        ("http_server_config: []\n", "http_server_config", "must be a mapping"),
        ("http_server_config: {http3: true}\n", "http_server_config.http3", "unknown key (allowed: http2, headers)"),
        ("http_server_config: {http2: 'yes'}\n", "http_server_config.http2", "must be true or false"),
        (
            "http_server_config: {headers: {X-Powered-By: me}}\n",
            "http_server_config.headers.X-Powered-By",
            "unknown key (allowed: Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, "
            "X-XSS-Protection, Strict-Transport-Security)",
        ),
        (
            "http_server_config: {headers: {X-Frame-Options: allow}}\n",
            "http_server_config.headers.X-Frame-Options",
            "invalid value (one of: deny, sameorigin)",
        ),
        (
            "http_server_config: {headers: {X-Content-Type-Options: sniff}}\n",
            "http_server_config.headers.X-Content-Type-Options",
            "invalid value (one of: nosniff)",
        ),
        (
            "http_server_config: {headers: {Content-Security-Policy: 3}}\n",
            "http_server_config.headers.Content-Security-Policy",
            "invalid value",
        ),
        ("basic_auth_users: [alice]\n", "basic_auth_users", "must be a mapping of user names to bcrypt hashes"),
        (f"basic_auth_users: {{'a:b': '{HASH}'}}\n", "basic_auth_users", "'a:b' is not a valid user name"),
        (f"basic_auth_users: {{'': '{HASH}'}}\n", "basic_auth_users", "'' is not a valid user name"),
        (f"basic_auth_users: {{1: '{HASH}'}}\n", "basic_auth_users", "1 is not a valid user name"),
        (
            "basic_auth_users: {alice: secret}\n",
            "basic_auth_users.alice",
            "must be a bcrypt hash ($2y$...), not a password",
        ),
        ("basic_auth_users: {alice: 7}\n", "basic_auth_users.alice", "must be a bcrypt hash ($2y$...), not a password"),
        ("basic_auth_users: {alice: $2b$10$short}\n", "basic_auth_users.alice", "is not a valid bcrypt hash"),
    ],
)
def test_each_bad_key_is_named_with_its_problem(tmp_path, text, path, problem):
    assert refusal(tmp_path, text) == (path, problem)


def test_headers_users_and_http2_are_read(tmp_path):
    hashes = {prefix: HASH.replace("$2b$", prefix, 1) for prefix in ("$2a$", "$2b$", "$2y$")}
    security = load(
        tmp_path,
        f"""
        http_server_config:
          http2: false
          headers:
            X-XSS-Protection: ""
            X-Frame-Options: DENY
            Strict-Transport-Security:
            X-Content-Type-Options: nosniff
            Content-Security-Policy: default-src 'self'
        basic_auth_users:
          a: '{hashes["$2a$"]}'
          b: '{hashes["$2b$"]}'
          y: '{hashes["$2y$"]}'
        """,
    )
    assert security.headers == {
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'self'",
    }
    assert security.users == {"a": hashes["$2a$"].encode(), "b": hashes["$2b$"].encode(), "y": hashes["$2y$"].encode()}
    assert security.tls is None


# ---------------------------------------------------------------- TLS


def test_tls_defaults_are_tls_1_2_to_1_3_without_client_certificates(tmp_path, pem):
    settings = load(tmp_path, tls(pem)).tls
    assert settings is not None
    context = settings.context
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER
    assert context.options == ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).options | ssl.OP_CIPHER_SERVER_PREFERENCE
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_NONE
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert settings.client_allowed_sans == ()
    assert all(c["protocol"] != "TLSv1.0" for c in context.get_ciphers())


def test_relative_files_are_read_beside_the_web_config(tmp_path, pem):
    directory = Path(pem["dir"])
    text = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    assert load_web_config(str(write(directory / "web.yml", text))).tls is not None


def test_inline_pem_is_accepted(tmp_path, pem):
    indent = "\n    "
    text = (
        "tls_server_config:\n"
        f"  cert: |{indent}{indent.join(pem['cert_pem'].splitlines())}\n"
        f"  key: |{indent}{indent.join(pem['key_pem'].splitlines())}\n"
        f"  client_ca: |{indent}{indent.join(pem['ca_pem'].splitlines())}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
    )
    settings = load(tmp_path, text).tls
    assert settings is not None
    assert settings.context.verify_mode == ssl.CERT_REQUIRED
    assert len(settings.context.get_ca_certs()) == 1


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("TLS10", ssl.TLSVersion.TLSv1),
        ("TLS11", ssl.TLSVersion.TLSv1_1),
        ("TLS12", ssl.TLSVersion.TLSv1_2),
        ("TLS13", ssl.TLSVersion.TLSv1_3),
    ],
)
def test_min_version_is_honoured(tmp_path, pem, version, expected):
    context = load(tmp_path, tls(pem, f"  min_version: {version}\n")).tls.context
    assert context.minimum_version == expected


def test_a_min_version_below_tls_1_2_lowers_the_security_level_and_above_does_not(tmp_path, pem):
    old = load(tmp_path, tls(pem, "  min_version: TLS10\n")).tls.context
    new = load(tmp_path, tls(pem, "  min_version: TLS12\n")).tls.context
    # At security level 0 OpenSSL offers SHA-1 suites that level 1 and above withhold.
    assert len(old.get_ciphers()) > len(new.get_ciphers())


def test_max_version_is_honoured(tmp_path, pem):
    context = load(tmp_path, tls(pem, "  max_version: TLS12\n")).tls.context
    assert context.maximum_version == ssl.TLSVersion.TLSv1_2


def test_cipher_suites_are_translated_to_openssl_names(tmp_path, pem):
    text = tls(
        pem,
        "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]\n  prefer_server_cipher_suites: false\n",
    )
    context = load(tmp_path, text).tls.context
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"}
    assert context.options == ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).options & ~ssl.OP_CIPHER_SERVER_PREFERENCE


def test_client_certificates_are_verified_against_the_client_ca(tmp_path, pem):
    for auth, mode in (
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ):
        text = tls(pem, f"  client_auth_type: {auth}\n  client_ca_file: {pem['ca']}\n")
        context = load(tmp_path, text).tls.context
        assert context.verify_mode == mode
        assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "azurestack-exporter test CA"),),)]


def test_client_allowed_sans_are_kept(tmp_path, pem):
    text = tls(
        pem,
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pem['ca']}\n"
        "  client_allowed_sans: [prometheus.example.internal, 10.0.0.7]\n",
    )
    assert load(tmp_path, text).tls.client_allowed_sans == ("prometheus.example.internal", "10.0.0.7")


@pytest.mark.parametrize(
    ("extra", "path", "problem"),
    [
        (
            "  tls_cert: x\n",
            "tls_server_config.tls_cert",
            "unknown key (allowed: cert, key, client_ca, cert_file, "
            "key_file, client_ca_file, client_auth_type, client_allowed_sans, min_version, max_version, cipher_suites, "
            "prefer_server_cipher_suites, curve_preferences)",
        ),
        ("  min_version: TLS14\n", "tls_server_config.min_version", "must be one of TLS10, TLS11, TLS12, TLS13"),
        ("  max_version: SSL3\n", "tls_server_config.max_version", "must be one of TLS10, TLS11, TLS12, TLS13"),
        ("  min_version: TLS13\n  max_version: TLS12\n", "tls_server_config.min_version", "is above max_version"),
        (
            "  client_auth_type: RequireAnyClientCert\n",
            "tls_server_config.client_auth_type",
            "RequireAnyClientCert accepts certificates without verifying them; use RequireAndVerifyClientCert",
        ),
        (
            "  client_auth_type: RequestClientCert\n",
            "tls_server_config.client_auth_type",
            "RequestClientCert accepts certificates without verifying them; use RequireAndVerifyClientCert",
        ),
        (
            "  client_auth_type: Always\n",
            "tls_server_config.client_auth_type",
            "must be one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert",
        ),
        (
            "  client_auth_type: VerifyClientCertIfGiven\n",
            "tls_server_config.client_ca_file",
            "is required with client_auth_type VerifyClientCertIfGiven",
        ),
        (
            "  client_allowed_sans: [a]\n",
            "tls_server_config.client_allowed_sans",
            "needs client_auth_type RequireAndVerifyClientCert",
        ),
        ("  client_allowed_sans: a\n", "tls_server_config.client_allowed_sans", "must be a list of strings"),
        ("  client_allowed_sans: [1]\n", "tls_server_config.client_allowed_sans", "must be a list of strings"),
        ("  cipher_suites: TLS_AES_128_GCM_SHA256\n", "tls_server_config.cipher_suites", "must be a list"),
        (
            "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "tls_server_config.cipher_suites",
            "unsupported cipher suite 'TLS_RSA_WITH_RC4_128_SHA'",
        ),
        (
            "  curve_preferences: [X25519]\n",
            "tls_server_config.curve_preferences",
            "is not supported by this exporter; remove it",
        ),
        ("  cert: inline\n", "tls_server_config.cert", "give cert or cert_file, not both"),
        (
            "  client_ca: 7\n  client_ca_file: x\n",
            "tls_server_config.client_ca",
            "give client_ca or client_ca_file, not both",
        ),
    ],
)
def test_each_bad_tls_key_is_named_with_its_problem(tmp_path, pem, extra, path, problem):
    assert refusal(tmp_path, tls(pem, extra)) == (path, problem)


def test_tls_files_and_pem_are_checked(tmp_path, pem):
    assert refusal(tmp_path, f"tls_server_config:\n  cert_file: {pem['cert']}\n") == (
        "tls_server_config",
        "needs a certificate and its key (cert_file and key_file)",
    )
    assert refusal(tmp_path, f"tls_server_config:\n  key_file: {pem['key']}\n") == (
        "tls_server_config",
        "needs a certificate and its key (cert_file and key_file)",
    )
    assert refusal(tmp_path, f"tls_server_config:\n  cert: 7\n  key_file: {pem['key']}\n") == (
        "tls_server_config.cert",
        "must be a PEM string",
    )
    assert refusal(tmp_path, f"tls_server_config:\n  cert_file: [a]\n  key_file: {pem['key']}\n") == (
        "tls_server_config.cert_file",
        "must be a file name",
    )
    assert refusal(tmp_path, f"tls_server_config:\n  cert_file: {pem['cert']}\n  key_file: missing.key\n") == (
        "tls_server_config.key_file",
        "cannot read missing.key: No such file or directory",
    )
    path, problem = refusal(
        tmp_path, f"tls_server_config:\n  cert_file: {pem['cert']}\n  key_file: {pem['other_key']}\n"
    )
    assert (path, problem) == ("tls_server_config", "certificate and key cannot be used together: KEY_VALUES_MISMATCH")
    path, problem = refusal(
        tmp_path, tls(pem, f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pem['key']}\n")
    )
    assert path == "tls_server_config.client_ca_file"
    assert problem.startswith("holds no usable CA certificate: ")


def test_a_huge_tls_file_is_refused_without_reading_it_all(tmp_path, pem):
    huge = tmp_path / "huge.crt"
    with huge.open("wb") as out:
        out.truncate(64 * 1024 * 1024)
    path, problem = refusal(tmp_path, f"tls_server_config:\n  cert_file: {huge}\n  key_file: {pem['key']}\n")
    assert path == "tls_server_config.cert_file"
    assert problem.startswith(f"{huge} ")


# ---------------------------------------------------------------- basic auth


def header(user: str, password: str, scheme: str = "Basic") -> str:
    return f"{scheme} " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_accepts_the_right_password_only():
    users = {"alice": HASH.encode()}
    auth = BasicAuth()
    assert auth.check(users, header("alice", "secret"))
    assert auth.check(users, header("alice", "secret", "basic"))
    assert auth.check(users, "  " + header("alice", "secret", "BASIC") + "  ")
    assert not auth.check(users, header("alice", "Secret"))
    assert not auth.check(users, header("bob", "secret"))
    assert not auth.check(users, header("alice", "secret", "Bearer"))
    assert not auth.check(users, None)
    assert not auth.check(users, "Basic")
    assert not auth.check(users, "Basic !!!")
    assert not auth.check(users, "Basic " + base64.b64encode(b"alice").decode())
    assert not auth.check(users, "Basic " + base64.b64encode(b"alice:\xff").decode())
    assert auth.check({}, None)


def test_passwords_over_72_bytes_are_refused_even_when_their_prefix_matches():
    password = "p" * 72
    users = {"alice": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4))}
    auth = BasicAuth()
    assert auth.check(users, header("alice", password))
    assert not auth.check(users, header("alice", password + "extra"))


def test_a_password_containing_a_colon_is_kept_whole():
    users = {"alice": bcrypt.hashpw(b"a:b", bcrypt.gensalt(4))}
    assert BasicAuth().check(users, header("alice", "a:b"))


def test_successes_are_cached_and_failures_are_not():
    users = {"alice": bcrypt.hashpw(b"secret", bcrypt.gensalt(12))}
    auth = BasicAuth()
    started = time.perf_counter()
    assert auth.check(users, header("alice", "secret"))
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert auth.check(users, header("alice", "secret"))
    assert time.perf_counter() - started < first / 10
    assert len(auth._cache) == 1
    assert not auth.check(users, header("alice", "wrong"))
    assert len(auth._cache) == 1


def test_the_cache_is_bounded():
    users = {f"u{i}": bcrypt.hashpw(b"p", bcrypt.gensalt(4)) for i in range(AUTH_CACHE_SIZE + 3)}
    auth = BasicAuth()
    for user in users:
        assert auth.check(users, header(user, "p"))
    assert len(auth._cache) == AUTH_CACHE_SIZE


def test_a_changed_hash_is_not_answered_from_the_cache():
    auth = BasicAuth()
    assert auth.check({"alice": HASH.encode()}, header("alice", "secret"))
    assert not auth.check({"alice": bcrypt.hashpw(b"new", bcrypt.gensalt(4))}, header("alice", "secret"))


def test_concurrent_checks_of_the_same_credentials_verify_once():
    users = {"alice": bcrypt.hashpw(b"secret", bcrypt.gensalt(10))}
    auth = BasicAuth()
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(auth.check(users, header("alice", "secret")))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 8
    assert auth._pending == {}


def test_unknown_users_cost_a_check_at_the_most_common_configured_cost():
    users = {"alice": bcrypt.hashpw(b"x", bcrypt.gensalt(5)), "bob": bcrypt.hashpw(b"y", bcrypt.gensalt(5))}
    users["carol"] = bcrypt.hashpw(b"z", bcrypt.gensalt(6))
    auth = BasicAuth()
    assert not auth.check(users, header("mallory", "x"))
    assert list(auth._dummies) == [5]
    dummy = auth._dummies[5]
    assert bcrypt_cost(dummy) == 5
    assert not auth.check(users, header("mallory", "y"))
    assert auth._dummies == {5: dummy}  # made once, then reused
    assert auth._dummies[5] is dummy


@pytest.mark.parametrize(
    ("hashed", "cost"),
    [
        (b"$2b$12$abc", 12),
        (b"$2y$04$abc", 4),
        (b"$2b$31$abc", 31),
        (b"$2b$03$abc", 10),
        (b"$2b$32$abc", 10),
        (b"$2b$xx$abc", 10),
        (b"$2b$12", 10),
        (b"plain", 10),
    ],
)
def test_bcrypt_cost_is_read_from_the_hash(hashed, cost):
    assert bcrypt_cost(hashed) == cost


def test_peer_sans_are_every_san_value():
    peer = {"subjectAltName": (("DNS", "prometheus.example"), ("IP Address", "10.0.0.7"), ("URI", "spiffe://x"))}
    assert peer_sans(peer) == {"prometheus.example", "10.0.0.7", "spiffe://x"}
    assert peer_sans({}) == set()
    assert peer_sans(None) == set()
    assert peer_sans({"subject": ()}) == set()


def test_a_client_certificate_with_sans_reports_them(tmp_path):
    ca = make_ca()
    client = make_client_cert("prometheus", ca, sans=["prometheus.example.internal"])
    decoded = ssl._ssl._test_decode_cert(str(client.write(tmp_path, "c")[0]))  # type: ignore[attr-defined]
    assert peer_sans(decoded) == {"prometheus.example.internal"}


def test_inline_and_file_pem_mix_and_a_relative_client_ca_is_read_beside_the_file(pem):
    directory = Path(pem["dir"])
    indent = "\n    "
    text = (
        "tls_server_config:\n"
        f"  cert: |{indent}{indent.join(pem['cert_pem'].splitlines())}\n"
        "  key_file: server.key\n"
        "  client_ca_file: ca.pem\n"
        "  client_auth_type: VerifyClientCertIfGiven\n"
    )
    settings = load_web_config(str(write(directory / "web.yml", text))).tls
    assert settings is not None and len(settings.context.get_ca_certs()) == 1
    text = f"tls_server_config:\n  cert_file: server.crt\n  key: |{indent}{indent.join(pem['key_pem'].splitlines())}\n"
    assert load_web_config(str(write(directory / "web.yml", text))).tls is not None


def test_basic_auth_takes_any_spaces_after_the_scheme_and_refuses_non_base64():
    users = {"alice": HASH.encode()}
    auth = BasicAuth()
    encoded = base64.b64encode(b"alice:secret").decode()
    assert auth.check(users, "Basic   " + encoded)
    assert not auth.check(users, "Basic " + encoded[:4] + "!" + encoded[4:])
    assert not auth.check(users, "")


def test_the_cache_forgets_the_least_recently_used_success_first():
    import hashlib

    users = {f"u{i}": bcrypt.hashpw(b"p", bcrypt.gensalt(4)) for i in range(AUTH_CACHE_SIZE + 1)}
    auth = BasicAuth()
    for user in users:
        assert auth.check(users, header(user, "p"))

    def key(user: str) -> bytes:
        return hashlib.sha256(b"\0".join((user.encode(), b"p", users[user]))).digest()

    assert key("u0") not in auth._cache
    assert key(f"u{AUTH_CACHE_SIZE}") in auth._cache and key("u1") in auth._cache
