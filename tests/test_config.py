"""Configuration: valid files load; every bad one names file, key path and problem."""

from __future__ import annotations

import os
import pprint
import time
from pathlib import Path

import pytest
from conftest import write
from pki import make_ca, make_client_cert

from exporter.config import ConfigError, config_warnings, load_config, parse_duration, parse_yaml, redact_url
from exporter.versions import Version

# Every test here runs under libyaml's parser and under PyYAML's own (conftest.yaml_loader).
pytestmark = pytest.mark.usefixtures("yaml_loader")

PLACEHOLDER_PAIR = (
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
)


def test_full_example_loads(tmp_path):
    (tmp_path / "secret").write_text("s3cret")
    (tmp_path / "ca.pem").write_bytes(make_ca().cert_pem)
    make_client_cert("spn").write_combined(tmp_path / "spn.pem")
    write(tmp_path / "more.yml", "releases: [{update: '2608', build: 1.2608.0.3}]\n")
    config = load_config(
        str(
            write(
                tmp_path / "c.yml",
                """
                refresh_interval: 2m
                policy: {supported_releases: 4, hotfix_grace_period: 30d}
                catalog:
                  bundled: false
                  files: [more.yml]
                  releases:
                    - update: "2601"
                      build: 1.2601.0.4
                      released: 2026-03
                stamps:
                  - name: east
                    version: 1.2408.1.50
                    oem_version: 2.4.2407.13
                    labels: {site: ams, rack: 7}
                  - name: west
                    admin:
                      endpoint: https://adminmanagement.west.contoso.com/
                      tenant: adfs
                      client_id: 00000000-0000-0000-0000-000000000000
                      client_secret_file: secret
                      ca_file: ca.pem
                      timeout: 15s
                  - name: north
                    admin:
                      endpoint: https://adminmanagement.north.contoso.com
                      tenant: contoso.onmicrosoft.com
                      client_id: 11111111-0000-0000-0000-000000000000
                      client_certificate_file: spn.pem
                      location: north
                      subscription_id: 22222222-0000-0000-0000-000000000000
                """,
            )
        )
    )
    assert config.refresh_interval == 120
    assert config.policy.supported_releases == 4
    assert config.policy.hotfix_grace_period == 30 * 86400
    assert config.catalog.bundled is False
    assert [r.update for r in config.catalog.releases] == ["2601"]
    assert [r.update for r in config.catalog.files[0].releases] == ["2608"]
    east, west, north = config.stamps
    assert east.version == Version(1, 2408, 1, 50) and east.source == "static"
    assert east.labels == {"site": "ams", "rack": "7"}
    assert west.source == "admin" and west.admin.endpoint == "https://adminmanagement.west.contoso.com"
    assert west.admin.client_secret_file == str(tmp_path / "secret")
    assert west.admin.timeout == 15
    assert north.admin.client_certificate_file == str(tmp_path / "spn.pem")
    assert north.admin.location == "north"


def test_defaults(tmp_path):
    config = load_config(str(write(tmp_path / "c.yml", "stamps: [{name: a, version: 1.2506.0.15}]\n")))
    assert config.refresh_interval == 300
    assert config.policy.supported_releases == 3
    assert config.policy.hotfix_grace_period == 45 * 86400
    assert config.catalog.bundled is True


def test_empty_file_is_a_config_without_stamps(tmp_path):
    assert load_config(str(write(tmp_path / "c.yml", "# nothing yet\n"))).stamps == ()


def test_the_secret_itself_is_not_kept(tmp_path):
    (tmp_path / "secret").write_text("hunter2-very-secret")
    config = load_config(
        str(
            write(
                tmp_path / "c.yml",
                """
                stamps:
                  - name: west
                    admin: {endpoint: "https://a.example", tenant: adfs, client_id: x, client_secret_file: secret}
                """,
            )
        )
    )
    assert "hunter2" not in repr(config)


ADMIN = "endpoint: https://adminmanagement.west.contoso.com, tenant: adfs, client_id: abc"


@pytest.mark.parametrize(
    ("body", "path", "problem"),
    [
        ("stamps: [{name: a, version: 1.2408.1.50, admn: {}}]", "stamps[0].admn", "unknown key; did you mean 'admin'?"),
        ("refresh: 5m", "refresh", "unknown key; did you mean 'refresh_interval'?"),
        (
            "stamps: [{name: a, version: 1.2408.1.50}, {name: a, version: 1.2501.0.21}]",
            "stamps[1].name",
            "duplicate stamp name 'a' (also stamps[0])",
        ),
        ("stamps: [{name: a, version: 1.2408.1}]", "stamps[0].version", "not an Azure Stack Hub build"),
        ("stamps: [{name: a, version: 1.2408}]", "stamps[0].version", "must be a string"),
        ("stamps: [{name: a}]", "stamps[0]", "needs exactly one of 'version'"),
        ("stamps: [{version: 1.2408.1.50}]", "stamps[0].name", "required key missing"),
        ("stamps: [{name: 7, version: 1.2408.1.50}]", "stamps[0].name", "must be a string"),
        ("stamps: [{name: '  ', version: 1.2408.1.50}]", "stamps[0].name", "must not be empty"),
        ("stamps: {name: a}", "stamps", "must be a list"),
        ("stamps: [{name: a, version: 1.2408.1.50, oem_version: 2.4}]", "stamps[0].oem_version", "must be a string"),
        (
            "stamps: [{name: a, version: 1.2408.1.50, labels: {stamp: x}}]",
            "stamps[0].labels.stamp",
            "set by the exporter",
        ),
        (
            "stamps: [{name: a, version: 1.2408.1.50, labels: {bad-name: x}}]",
            "stamps[0].labels",
            "not a valid Prometheus label",
        ),
        ("stamps: [{name: a, version: 1.2408.1.50, labels: {site: [x]}}]", "stamps[0].labels.site", "must be a string"),
        ("refresh_interval: 5", "refresh_interval", "not a duration"),
        ("refresh_interval: 5 minutes", "refresh_interval", "not a duration"),
        ("refresh_interval: 0s", "refresh_interval", "longer than zero"),
        ("policy: {supported_releases: '3'}", "policy.supported_releases", "whole number"),
        ("policy: {supported_releases: true}", "policy.supported_releases", "whole number"),
        ("policy: {supported_releases: 0}", "policy.supported_releases", "at least 1"),
        ("policy: {hotfix_grace_period: 45}", "policy.hotfix_grace_period", "not a duration"),
        ("policy: [3]", "policy", "must be a mapping"),
        ("catalog: {bundled: yes please}", "catalog.bundled", "true or false"),
        ("catalog: {files: [missing.yml]}", "catalog.files[0]", "cannot read missing.yml"),
        ("catalog: {files: missing.yml}", "catalog.files", "must be a list"),
        ("catalog: {releases: [{update: '2413'}]}", "catalog.releases[0].update", "not a YYMM"),
        ("catalog: {releases: [{update: '2408', released: 2024-13-01}]}", "catalog.releases[0].released", "YYYY-MM-DD"),
        ("catalog: {urls: ['ftp://x/y.yml']}", "catalog.urls[0]", "not an http:// or https:// URL"),
        ("stamps: [{name: w, admin: {" + ADMIN + "}}]", "stamps[0].admin", "one credential is required"),
        (
            "stamps: [{name: w, admin: {tenant: adfs, client_id: x, client_secret_env: HOME}}]",
            "stamps[0].admin.endpoint",
            "required key missing",
        ),
        (
            "stamps: [{name: w, admin: {endpoint: 'http://x.example', tenant: adfs, client_id: x,"
            " client_secret_env: HOME}}]",
            "stamps[0].admin.endpoint",
            "not an https:// URL",
        ),
        (
            "stamps: [{name: w, admin: {endpoint: 'https://x.example', tenant: adfs, client_secret_env: HOME}}]",
            "stamps[0].admin.client_id",
            "required key missing",
        ),
        (
            "stamps: [{name: w, admin: {" + ADMIN + ", client_secret_file: /nonexistent/secret}}]",
            "stamps[0].admin.client_secret_file",
            "cannot read /nonexistent/secret: No such file or directory",
        ),
        (
            "stamps: [{name: w, admin: {" + ADMIN + ", client_secret_env: AZS_EXPORTER_TEST_UNSET}}]",
            "stamps[0].admin.client_secret_env",
            "AZS_EXPORTER_TEST_UNSET is not set",
        ),
        (
            "stamps: [{name: w, admin: {" + ADMIN + ", client_secret_env: HOME, client_secret_file: /etc/hostname}}]",
            "stamps[0].admin.client_secret_env",
            "give only one credential",
        ),
        (
            "stamps: [{name: w, admin: {" + ADMIN + ", client_certificate_file: /etc/hostname}}]",
            "stamps[0].admin.client_certificate_file",
            "no PEM certificate",
        ),
        (
            "stamps: [{name: w, admin: {" + ADMIN + ", client_secret_env: HOME, ca_file: /nonexistent/ca.pem}}]",
            "stamps[0].admin.ca_file",
            "cannot read /nonexistent/ca.pem",
        ),
        (
            "stamps: [{name: w, admin: {" + ADMIN + ", client_secret_env: HOME, timeout: fast}}]",
            "stamps[0].admin.timeout",
            "not a duration",
        ),
        (
            "stamps: [{name: w, admin: {" + ADMIN + ", client_secret_env: HOME, tls_insecure: true}}]",
            "stamps[0].admin.tls_insecure",
            "unknown key",
        ),
        ("[1, 2]", "(top level)", "must be a mapping"),
    ],
)
def test_bad_config_names_file_key_path_and_problem(tmp_path, body, path, problem):
    file = write(tmp_path / "bad.yml", body + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(file))
    assert info.value.file == str(file)
    assert info.value.path == path
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{file}: {path}: ")


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    file = write(tmp_path / "bad.yml", "stamps:\n  - name: a\n    version: [1.2408\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(file))
    assert info.value.path.startswith("line ")
    assert "YAML error" in info.value.problem


def test_duplicate_yaml_key_is_refused(tmp_path):
    file = write(tmp_path / "bad.yml", "stamps:\n  - name: a\n    name: b\n    version: 1.2408.1.50\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(file))
    assert "duplicate key 'name'" in info.value.problem
    assert info.value.path == "line 3, column 5"


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.yml"))
    assert "cannot read file: No such file or directory" in str(info.value)


def test_error_inside_a_catalog_file_names_that_file(tmp_path):
    catalog = write(tmp_path / "cat.yml", "releases:\n  - update: '2408'\n    build: 1.2501.0.21\n")
    file = write(tmp_path / "c.yml", "catalog: {files: [cat.yml]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(file))
    assert info.value.file == str(catalog)
    assert info.value.path == "releases[0].build"


def _cert_config(tmp_path, pem: bytes) -> str:
    (tmp_path / "spn.pem").write_bytes(pem)
    body = "stamps: [{name: w, admin: {" + ADMIN + ", client_certificate_file: spn.pem}}]\n"
    return str(write(tmp_path / "c.yml", body))


@pytest.mark.parametrize(
    ("make_pem", "problem"),
    [
        (lambda: PLACEHOLDER_PAIR.encode(), "the PEM certificate cannot be read"),
        (lambda: make_client_cert("a").cert_pem + make_client_cert("b").key_pem, "does not belong to the certificate"),
        (lambda: make_client_cert("a").cert_pem, "no PEM private key"),
    ],
)
def test_client_certificate_file_is_checked(tmp_path, make_pem, problem):
    with pytest.raises(ConfigError) as info:
        load_config(_cert_config(tmp_path, make_pem()))
    assert info.value.path == "stamps[0].admin.client_certificate_file"
    assert problem in info.value.problem


def test_encrypted_client_key_is_refused_with_a_hint(tmp_path):
    from cryptography.hazmat.primitives import serialization

    spn = make_client_cert("a")
    encrypted = spn.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    with pytest.raises(ConfigError, match="private key is encrypted"):
        load_config(_cert_config(tmp_path, spn.cert_pem + encrypted))


def test_durations():
    assert parse_duration("30s") == 30
    assert parse_duration("5m") == 300
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45d") == 45 * 86400
    assert parse_duration("500ms") == 0.5
    for bad in ("", "5", "m", "5x", "1.5h", 5, None):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("body", "path", "problem"),
    [
        (
            "policy: {exceptions: [{from: 2020-03-01, supported_releases: 4}]}",
            "policy.exceptions[0].until",
            "required key missing",
        ),
        (
            "policy: {exceptions: [{from: 2020-03, until: 2020-09-25, supported_releases: 4}]}",
            "policy.exceptions[0].from",
            "needs a day",
        ),
        (
            "policy: {exceptions: [{from: 2020-09-25, until: 2020-03-01, supported_releases: 4}]}",
            "policy.exceptions[0].until",
            "before 'from'",
        ),
        (
            "policy: {exceptions: [{from: 2020-03-01, until: 2020-09-25}]}",
            "policy.exceptions[0].supported_releases",
            "required key missing",
        ),
        ("policy: {exceptions: {from: 2020-03-01}}", "policy.exceptions", "must be a list"),
        ("policy: {oem_supported_releases: 0}", "policy.oem_supported_releases", "at least 1"),
        ("catalog: {oem: {Dell: []}}", "catalog.oem.Dell", "non-empty list"),
        ("catalog: {oem: {Dell: [2.4]}}", "catalog.oem.Dell[0]", "not an OEM package version"),
        ("catalog: {oem: {Dell: ['2.4.x.1']}}", "catalog.oem.Dell[0]", "not an OEM package version"),
        (
            "catalog: {urls: [{url: 'https://a.example/c.yml', ca_file: /nonexistent.pem}]}",
            "catalog.urls[0].ca_file",
            "cannot read",
        ),
        ("catalog: {urls: [{uri: 'https://a.example/c.yml'}]}", "catalog.urls[0].uri", "unknown key"),
        ("catalog: {urls: 'https://a.example/c.yml'}", "catalog.urls", "must be a list"),
        ("catalog: {update_graph_url: 'file:///etc/passwd'}", "catalog.update_graph_url", "not an http"),
        ("catalog: {timeout: soon}", "catalog.timeout", "not a duration"),
        ("stamps: [{name: a, version: 1.2601.0.4, oem_family: 7}]", "stamps[0].oem_family", "must be a string"),
    ],
)
def test_bad_catalog_and_policy_additions(tmp_path, body, path, problem):
    file = write(tmp_path / "bad.yml", body + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(file))
    assert info.value.path == path
    assert problem in info.value.problem


def test_catalog_additions_load(tmp_path):
    (tmp_path / "ca.pem").write_bytes(make_ca().cert_pem)
    config = load_config(
        str(
            write(
                tmp_path / "c.yml",
                """
        catalog:
          ca_file: ca.pem
          urls: ["https://catalog.contoso.com/azs.yml", {url: "http://mirror.local/azs.yml"}]
          update_graph_url: https://updates.contoso.com/azurestackupdate.xml
          timeout: 20s
          oem: {Dell: ["2.4.2508.4", "2.4.2411.6"]}
        policy:
          oem_supported_releases: 2
          exceptions:
            - {from: 2020-03-01, until: 2020-09-25, supported_releases: 4, reason: COVID-19}
    """,
            )
        )
    )
    catalog = config.catalog
    assert [u.url for u in catalog.urls] == ["https://catalog.contoso.com/azs.yml", "http://mirror.local/azs.yml"]
    assert all(u.ca_file == str(tmp_path / "ca.pem") for u in catalog.urls)
    assert catalog.update_graph.url.endswith("azurestackupdate.xml") and catalog.timeout == 20
    assert catalog.oem == {"dell": ("2.4.2411.6", "2.4.2508.4")}
    assert config.policy.oem_supported_releases == 2
    assert config.policy.exceptions[0].supported_releases == 4


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "ca.pem holds no readable PEM certificate"),
        (b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n", "holds no readable PEM certificate"),
        (b"\x00\x01binary", "holds no readable PEM certificate"),
    ],
)
def test_a_ca_file_that_holds_no_certificate_is_refused_at_check_time(tmp_path, content, problem):
    (tmp_path / "ca.pem").write_bytes(content)
    path = write(
        tmp_path / "c.yml",
        "stamps: [{name: w, admin: {endpoint: https://a.example, tenant: adfs, client_id: x, "
        "client_secret_env: HOME, ca_file: ca.pem}}]\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert "stamps[0].admin.ca_file" in str(err.value) and problem in str(err.value)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_special_files_are_refused_without_reading_them(tmp_path, special):
    """/dev/zero would be read until memory runs out; a FIFO with no writer would hang."""
    import os

    if special == "fifo":
        special = str(tmp_path / "fifo")
        os.mkfifo(special)
    for key in ("client_secret_file", "ca_file"):
        credential = "client_secret_env: HOME" if key == "ca_file" else ""
        body = (
            f"stamps: [{{name: w, admin: {{endpoint: https://a.example, tenant: adfs, client_id: x, "
            f"{credential}{', ' if credential else ''}{key}: {special}}}}}]\n"
        )
        with pytest.raises(ConfigError) as err:
            load_config(str(write(tmp_path / "c.yml", body)))
        assert f"stamps[0].admin.{key}" in str(err.value) and "is not a regular file" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(special)
    assert "is not a regular file" in str(err.value)


def test_yaml_merge_bombs_are_bounded_in_local_files(tmp_path):
    """Nine levels of nine merges, about 500 bytes: 9**9 entries if expanded. Refused, with a clear error."""

    def level(n: int) -> str:
        if n == 0:
            return "&a0 {x: 1}"
        return f"&a{n} {{<<: [{level(n - 1)}, " + ", ".join([f"*a{n - 1}"] * 8) + "]}"

    bomb = write(tmp_path / "bomb.yml", f"stamps: {level(9)}\n")
    assert len(bomb.read_bytes()) < 1000
    # Older PyYAML expands every merge (our bound refuses it); 6.0.4 and later merge each key
    # once (the document loads small, and is refused as a configuration). Either way: refused
    # at once, as a configuration error naming the file, whatever the installed PyYAML says.
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        load_config(str(bomb))
    assert time.monotonic() - started < 5
    assert err.value.file == str(bomb)
    # Merges of distinct keys expand under every PyYAML: 101 copies of 1,000 keys is past our bound.
    keys = ", ".join(f"k{i}: {i}" for i in range(1000))
    wide = write(tmp_path / "wide.yml", "x: &A {" + keys + "}\nstamps: [" + ", ".join(["{<<: *A}"] * 101) + "]\n")
    assert len(wide.read_bytes()) < 20_000
    with pytest.raises(ConfigError) as err:
        load_config(str(wide))
    assert "100000" in err.value.problem and err.value.path.startswith("line 2,")
    friendly = write(
        tmp_path / "ok.yml",
        "x-admin: &admin {endpoint: https://a.example, tenant: adfs, client_id: x, client_secret_env: HOME}\n"
        "stamps:\n  - {name: a, admin: {<<: *admin}}\n  - {name: b, admin: {<<: *admin, timeout: 5s}}\n",
    )
    with pytest.raises(ConfigError) as err:  # an unknown top-level key, but the merges themselves load
        load_config(str(friendly))
    assert "x-admin: unknown key" in str(err.value) and "expand" not in str(err.value)


# ---------------------------------------------------------------- every message, pinned
#
# Each bad document below, with the key path and problem it gives, is pinned in
# tests/golden/config-errors.txt (regenerate with UPDATE_GOLDEN=1 and read the diff), and a full
# configuration's parsed form in tests/golden/config-parsed.txt.

GOLDEN = Path(__file__).parent / "golden"
STAMP = "stamps: [{name: a, version: 1.2408.1.50}]\n"
BASE = "endpoint: 'https://adm.example', tenant: adfs, client_id: c"


def adm(fields: str) -> str:
    """A one-stamp document whose admin block holds these fields."""
    return "stamps: [{name: a, admin: {" + fields + "}}]"


ERROR_CASES = [
    "[1, 2]",
    "7",
    "{1: a}",
    "{stamp: []}",
    "{colour: red}",
    "refresh_interval: 0s",
    "refresh_interval: -5m",
    "refresh_interval: 5",
    "refresh_interval: 5x",
    "refresh_interval: ''",
    "refresh_concurrency: 0",
    "refresh_concurrency: 257",
    "refresh_concurrency: true",
    "refresh_concurrency: '4'",
    "stamps: {a: 1}",
    "stamps: [7]",
    "stamps: [[a]]",
    "stamps: [null]",
    "stamps: [{version: 1.2408.1.50}]",
    "stamps: [{name: '', version: 1.2408.1.50}]",
    "stamps: [{name: 7, version: 1.2408.1.50}]",
    "stamps: [{name: a}]",
    "stamps: [{name: a, version: 1.2408.1.50, admin: {" + BASE + ", client_secret_file: secret}}]",
    "stamps: [{name: a, version: 1.24.0.1}]",
    "stamps: [{name: a, version: 1.2408.1.50}, {name: b, version: 1.2408.1.50}, {name: ' a ', version: 1.2408.1.50}]",
    "stamps: [{name: a, version: 1.2408.1.50, oem_version: 2}]",
    "stamps: [{name: a, version: 1.2408.1.50, oem_family: '  '}]",
    "stamps: [{name: a, version: 1.2408.1.50, labels: [x]}]",
    "stamps: [{name: a, version: 1.2408.1.50, labels: {9x: y}}]",
    "stamps: [{name: a, version: 1.2408.1.50, labels: {__x: y}}]",
    "stamps: [{name: a, version: 1.2408.1.50, labels: {stamp: y}}]",
    "stamps: [{name: a, version: 1.2408.1.50, labels: {x: true}}]",
    "stamps: [{name: a, version: 1.2408.1.50, labels: {x: [y]}}]",
    "stamps: [{name: a, version: 1.2408.1.50, labels: {x: null}}]",
    "stamps: [{name: a, admin: []}]",
    adm("endpoint: 'https://adm.example'"),
    adm("endpoint: 'http://adm.example', tenant: adfs, client_id: c, client_secret_file: s"),
    adm("endpoint: 'https://', tenant: adfs, client_id: c, client_secret_file: s"),
    adm("endpoint: 'https://adm.example', client_id: c, client_secret_file: s"),
    adm("endpoint: 'https://adm.example', tenant: adfs, client_secret_file: s"),
    adm(BASE),
    adm(BASE + ", client_secret_file: secret, client_secret_env: X"),
    adm(BASE + ", client_secret_env: X, client_certificate_file: spn.pem"),
    adm(BASE + ", client_secret_file: nope"),
    adm(BASE + ", client_secret_file: 3"),
    adm(BASE + ", client_secret_env: ASE_SURELY_UNSET"),
    adm(BASE + ", client_certificate_file: secret"),
    adm(BASE + ", client_certificate_file: 3"),
    adm(BASE + ", client_certificate_file: missing.pem"),
    adm(BASE + ", client_secret_env: 3"),
    adm(BASE + ", client_secret_file: secret, ca_file: 3"),
    adm(BASE + ", client_certificate_file: encrypted.pem"),
    adm(BASE + ", client_certificate_file: bad-key.pem"),
    adm(BASE + ", client_certificate_file: cert-only.pem"),
    adm(BASE + ", client_certificate_file: mismatched.pem"),
    adm(BASE + ", client_certificate_file: placeholder.pem"),
    adm(BASE + ", client_secret_file: secret, ca_file: secret"),
    adm(BASE + ", client_secret_file: secret, ca_file: missing.pem"),
    adm(BASE + ", client_secret_file: secret, timeout: 0s"),
    adm(BASE + ", client_secret_file: secret, location: 4"),
    adm(BASE + ", client_secret_file: secret, subscription_id: ''"),
    adm(BASE + ", client_secret_file: secret, tennant: x"),
    "policy: []",
    "policy: {supported_releases: 0}",
    "policy: {supported_releases: 2.5}",
    "policy: {supported_releases: true}",
    "policy: {supported_releases: '3'}",
    "policy: {oem_supported_releases: 0}",
    "policy: {hotfix_grace_period: 0d}",
    "policy: {hotfix_grace_period: soon}",
    "policy: {exceptions: {from: 2020-01-01}}",
    "policy: {exceptions: [7]}",
    "policy: {exceptions: [null]}",
    "policy: {exceptions: [{until: 2020-12-31, supported_releases: 4}]}",
    "policy: {exceptions: [{from: 2020-03-01, supported_releases: 4}]}",
    "policy: {exceptions: [{from: 2020-03, until: 2020-12-31, supported_releases: 4}]}",
    "policy: {exceptions: [{from: 2020-03-01, until: 2020-12, supported_releases: 4}]}",
    "policy: {exceptions: [{from: 2020-13-01, until: 2020-12-31, supported_releases: 4}]}",
    "policy: {exceptions: [{from: 2020-03-01, until: 2020-02-28, supported_releases: 4}]}",
    "policy: {exceptions: [{from: 2020-03-01, until: 2020-12-31}]}",
    "policy: {exceptions: [{from: 2020-03-01, until: 2020-12-31, supported_releases: 0}]}",
    "policy: {exceptions: [{from: 2020-03-01, until: 2020-12-31, supported_releases: 4, reason: 5}]}",
    "policy: {exceptions: [{from: 2020-03-01, until: 2020-12-31, supported_releases: 4, why: x}]}",
    "catalog: []",
    "catalog: {bundle: false}",
    "catalog: {bundled: 'no'}",
    "catalog: {files: more.yml}",
    "catalog: {files: [7]}",
    "catalog: {files: [null]}",
    "catalog: {files: [missing.yml]}",
    "catalog: {files: [bad-catalog.yml]}",
    "catalog: {files: [not-yaml.yml]}",
    "catalog: {ca_file: secret}",
    "catalog: {ca_file: 5}",
    "catalog: {urls: 'https://c.example/r.yml'}",
    "catalog: {urls: ['ftp://c.example/r.yml']}",
    "catalog: {urls: [7]}",
    "catalog: {urls: [{uri: 'https://c.example/r.yml'}]}",
    "catalog: {urls: [{ca_file: ca.pem}]}",
    "catalog: {urls: [{url: 'https://c.example/r.yml', ca_file: secret}]}",
    "catalog: {urls: [{url: 'https://c.example/r.yml', ca_file: 5}]}",
    "catalog: {urls: [{url: 'ftp://c.example/r.yml'}]}",
    "catalog: {update_graph_url: 'c.example/graph.xml'}",
    "catalog: {update_graph_url: [x]}",
    "catalog: {timeout: 0s}",
    "catalog: {oem: [Dell]}",
    "catalog: {oem: {Dell: []}}",
    "catalog: {oem: {Dell: 2.4.2411.6}}",
    "catalog: {oem: {Dell: [2.4.2411.6, banana]}}",
    "catalog: {oem: {Dell: [7]}}",
    "catalog: {oem: {' ': [2.4.2411.6]}}",
    "catalog: {releases: {update: '2601'}}",
    "catalog: {releases: [{update: '2601', build: 1.2506.0.1}]}",
    # Absurd values: bounded, refused with the key path.
    "refresh_interval: 25h",
    "refresh_interval: 1234567890s",
    "policy: {supported_releases: 101}",
    "policy: {oem_supported_releases: 10000000}",
    "policy: {hotfix_grace_period: 3651d}",
    "policy: {exceptions: [{from: 2020-03-18, until: 9999-12-31, supported_releases: 4}]}",
    "policy: {exceptions: [{from: 1999-03-18, until: 2020-12-31, supported_releases: 4}]}",
    'policy: {exceptions: [{from: 2020-03-18, until: 2020-12-31, supported_releases: 4, reason: "a\\x1bb"}]}',
    "catalog: {timeout: 11m}",
    "catalog: {releases: [{update: '2601', released: 1900-01}]}",
    adm(BASE + ", client_secret_env: HOME, timeout: 601s"),
    'stamps: [{name: "a\\ud800", version: 1.2408.1.50}]',
    'stamps: [{name: "a\\tb", version: 1.2408.1.50}]',
    "stamps: [{name: " + "n" * 129 + ", version: 1.2408.1.50}]",
    'stamps: [{name: a, version: 1.2408.1.50, labels: {site: "x\\u202ey"}}]',
    'stamps: [{name: a, version: 1.2408.1.50, oem_version: "2.4\\x00"}]',
]


def _error_for(directory: Path, document: str) -> str:
    try:
        load_config(str(write(directory / "c.yml", document)))
    except ConfigError as err:
        return f"{err.path}: {err.problem}"
    return "(accepted)"


@pytest.fixture
def config_dir(tmp_path):
    (tmp_path / "secret").write_text("s3cret")
    (tmp_path / "ca.pem").write_bytes(make_ca().cert_pem)
    pair = make_client_cert("spn")
    (tmp_path / "cert-only.pem").write_bytes(pair.cert_pem)
    (tmp_path / "mismatched.pem").write_bytes(pair.cert_pem + make_client_cert("other").key_pem)
    (tmp_path / "placeholder.pem").write_text(PLACEHOLDER_PAIR)
    from cryptography.hazmat.primitives import serialization

    encrypted = pair.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    (tmp_path / "encrypted.pem").write_bytes(pair.cert_pem + encrypted)
    (tmp_path / "bad-key.pem").write_bytes(
        pair.cert_pem + b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    )
    write(tmp_path / "more.yml", "releases: [{update: '2608', build: 1.2608.0.3}]\n")
    write(tmp_path / "bad-catalog.yml", "releases: [{update: '2608', build: 1.2601.0.3}]\n")
    (tmp_path / "not-yaml.yml").write_text("releases: [\n")
    return tmp_path


def test_every_bad_document_gives_its_pinned_key_path_and_problem(config_dir, monkeypatch):
    monkeypatch.delenv("ASE_SURELY_UNSET", raising=False)
    monkeypatch.setenv("X", "set")
    actual = "".join(f"{case}\n  => {_error_for(config_dir, case)}\n" for case in ERROR_CASES)
    golden = GOLDEN / "config-errors.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(actual)
    assert actual == golden.read_text()
    assert "(accepted)" not in actual


def test_a_full_configuration_parses_to_its_pinned_form(config_dir, monkeypatch):
    monkeypatch.setenv("ASE_SECRET", "s3cret")
    make_client_cert("spn").write_combined(config_dir / "spn.pem")
    config = load_config(
        str(
            write(
                config_dir / "c.yml",
                """
                refresh_interval: 1h30m
                refresh_concurrency: 256
                policy:
                  supported_releases: 4
                  oem_supported_releases: 2
                  hotfix_grace_period: 1d12h
                  exceptions:
                    - {from: 2020-03-01, until: 2020-12-31, supported_releases: 4, reason: COVID-19}
                    - {from: 2030-01-01, until: 2030-01-01, supported_releases: 1}
                catalog:
                  bundled: false
                  files: [more.yml]
                  ca_file: ca.pem
                  urls:
                    - https://c.example/a.yml
                    - {url: 'http://c.example/b.yml?sig=x', ca_file: ca.pem}
                    - {url: 'https://c.example/c.yml'}
                  update_graph_url: https://u.example/graph.xml
                  timeout: 500ms
                  oem: {' Dell ': [2.4.2502.3, 2.4.2411.6, 2.4.2411.6], HPE: [2.10.0, 2.9.1]}
                  releases: [{update: '2611', build: 1.2611.0.2}]
                stamps:
                  - {name: ' east ', version: 1.2408.1.50, oem_version: ' 2.4.2411.6 ', oem_family: Dell,
                     labels: {site: ams, rack: 7, ratio: 0.5}}
                  - name: west
                    admin:
                      endpoint: https://adm.west.example//
                      tenant: adfs
                      client_id: c
                      client_secret_env: ASE_SECRET
                      location: west
                      subscription_id: s
                      timeout: 15s
                  - name: north
                    admin: {endpoint: 'https://adm.north.example', tenant: t, client_id: c,
                            client_certificate_file: spn.pem, ca_file: ca.pem}
                  - {name: south, admin: {endpoint: 'https://adm.south.example', tenant: t, client_id: c,
                     client_secret_file: secret}}
                """,
            )
        )
    )
    actual = pprint.pformat(config, width=110).replace(str(config_dir), "<dir>") + "\n"
    warnings = "\n".join(config_warnings(config)) + "\n"
    golden = GOLDEN / "config-parsed.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(actual + warnings)
    assert actual + warnings == golden.read_text()


def test_warnings_name_plain_http_sources_without_their_query_and_an_empty_fleet(config_dir):
    config = load_config(
        str(
            write(
                config_dir / "c.yml",
                "catalog: {update_graph_url: 'http://user:pw@u.example:8080/g.xml?sig=s#f', urls: ['https://a.example/x']}",
            )
        )
    )
    assert config_warnings(config) == [
        "catalog source http://u.example:8080/g.xml is plain http://: anyone on the network path can change "
        "which releases the exporter believes in; use https://",
        "no stamps are configured: nothing is monitored",
    ]
    assert config_warnings(load_config(str(write(config_dir / "c.yml", STAMP)))) == []
    assert redact_url("https://h.example/p?q=1") == "https://h.example/p"
    assert redact_url("not a url") == "not a url"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: &x 1\nb: *x\n", "YAML anchors and aliases are not accepted in a downloaded document"),
        ("a: &x {b: 1}\n", "YAML anchors and aliases are not accepted in a downloaded document"),
        ("- &x [1]\n", "YAML anchors and aliases are not accepted in a downloaded document"),
    ],
)
def test_downloaded_yaml_refuses_anchors_and_aliases_that_local_files_accept(text, problem):
    import yaml

    assert parse_yaml(text) is not None
    with pytest.raises(yaml.YAMLError) as caught:
        parse_yaml(text, untrusted=True)
    assert caught.value.problem == problem
    assert parse_yaml("a: [1, {b: 2}]\n", untrusted=True) == {"a": [1, {"b": 2}]}


@pytest.mark.parametrize(
    ("value", "kind"),
    [(None, "null"), (True, "a boolean"), ({}, "a mapping"), ([], "a list"), ("", "a string"), (1.5, "a number"),
     (b"x", "a bytes")],
)  # fmt: skip
def test_kinds_are_named_in_plain_words(value, kind):
    from exporter.config import _kind

    assert _kind(value) == kind


def test_a_config_error_without_a_key_path_names_the_file_and_problem():
    assert str(ConfigError("c.yml", "", "cannot read file")) == "c.yml: cannot read file"
    assert str(ConfigError("c.yml", "stamps", "must be a list")) == "c.yml: stamps: must be a list"


def test_remote_sources_default_to_no_ca_file_no_graph_and_the_default_timeout(config_dir):
    from exporter.config import DEFAULT_REMOTE_TIMEOUT

    catalog = load_config(str(write(config_dir / "c.yml", "catalog: {urls: ['https://c.example/r.yml']}"))).catalog
    assert catalog.urls[0].ca_file is None
    assert catalog.update_graph is None
    assert catalog.timeout == DEFAULT_REMOTE_TIMEOUT


def test_a_refused_anchor_is_located_in_the_document():
    import yaml

    with pytest.raises(yaml.YAMLError) as caught:
        parse_yaml("a: 1\nb: &x 2\n", untrusted=True)
    assert caught.value.problem_mark.line == 1


def test_unreadable_undecodable_oversized_and_too_deep_files_are_refused_for_the_file(tmp_path):
    def refusal(path: Path) -> tuple[str, str, str]:
        with pytest.raises(ConfigError) as caught:
            load_config(str(path))
        return caught.value.file, caught.value.path, caught.value.problem

    missing = tmp_path / "missing.yml"
    assert refusal(missing) == (str(missing), "", "cannot read file: No such file or directory")
    latin = tmp_path / "latin.yml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert refusal(latin) == (str(latin), "", "file is not UTF-8 text")
    huge = tmp_path / "huge.yml"
    with huge.open("wb") as out:
        out.truncate(64 * 1024 * 1024)
    file, path, problem = refusal(huge)
    assert (file, path) == (str(huge), "") and problem.startswith("cannot read file: it ")
    broken = tmp_path / "broken.yml"
    broken.write_text("stamps: [\n")
    file, path, problem = refusal(broken)
    assert (file, path) == (str(broken), "line 2, column 1") and problem.startswith("YAML error: ")
    deep = tmp_path / "deep.yml"
    deep.write_text("[" * 5000 + "]" * 5000)
    file, path, problem = refusal(deep)
    assert (file, path) == (str(deep), "") and problem.startswith("YAML error: ")


def test_refresh_concurrency_accepts_1_to_256(config_dir):
    for value in (1, 256):
        config = load_config(str(write(config_dir / "c.yml", f"refresh_concurrency: {value}\n")))
        assert config.refresh_concurrency == value


def test_an_endpoint_loses_its_trailing_slashes_only(config_dir):
    document = "stamps: [{name: a, admin: {" + BASE + ", client_secret_file: secret}}]"
    document = document.replace("https://adm.example", "https://adm.example/X//")
    assert load_config(str(write(config_dir / "c.yml", document))).stamps[0].admin.endpoint == "https://adm.example/X"


def _merges(copies: int) -> str:
    """An anchor of 10,001 entries merged into ``copies`` mappings: each merge adds 10,000 entries."""
    anchor = ", ".join(f"k{i}: {i}" for i in range(10_001))
    merged = "".join(f"m{i}: {{<<: *a, own: 1}}\n" for i in range(copies))
    return f"base: &a {{{anchor}}}\n{merged}"


def test_merge_keys_may_add_100000_entries_in_all_and_not_one_more():
    assert len(parse_yaml(_merges(10))) == 11
    import yaml

    with pytest.raises(yaml.YAMLError) as caught:
        parse_yaml(_merges(11))
    assert caught.value.problem == "YAML merge keys expand to more than 100000 entries"
    assert caught.value.problem_mark.line == 11


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("a: 1\nb: 2\na: 3\n", "line 3, column 1", "YAML error: found duplicate key 'a'"),
        ("? [1]\n: x\n", "line 1, column 3", "YAML error: found an unhashable key"),
    ],
)
def test_duplicate_and_unhashable_keys_are_located(tmp_path, text, where, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(str(write(tmp_path / "c.yml", text)))
    assert (caught.value.path, caught.value.problem) == (where, problem)


# ---------------------------------------------------------------- YAML: what libyaml could miss


def _nested(shape: str, levels: int) -> str:
    if shape == "flow sequences":
        return "stamps: " + "[" * levels + "]" * levels + "\n"
    if shape == "flow mappings":
        return "stamps: " + "{a: " * levels + "1" + "}" * levels + "\n"
    if shape == "block sequences":
        return "stamps:\n" + "- " * levels + "x\n"
    return "".join(" " * i + "a:\n" for i in range(levels)) + " " * levels + "1\n"  # block mappings


@pytest.mark.parametrize("shape", ["flow sequences", "flow mappings", "block sequences", "block mappings"])
def test_a_document_nested_too_deeply_is_refused_for_its_file_and_from_the_network(tmp_path, shape):
    deep = write(tmp_path / "deep.yml", _nested(shape, 1500))
    with pytest.raises(ConfigError) as caught:
        load_config(str(deep))
    assert (caught.value.file, caught.value.path) == (str(deep), "")
    assert caught.value.problem.startswith("YAML error: ")
    import yaml

    with pytest.raises((yaml.YAMLError, RecursionError)):
        parse_yaml(deep.read_text(), untrusted=True)
    assert parse_yaml(_nested(shape, 30)) is not None  # nesting itself is fine


DEEP_CHILD = """
import sys
import yaml

if sys.argv[1] == "pure":
    yaml.__with_libyaml__ = False  # read before the exporter is imported: the fallback
from exporter.cli import main
from exporter.config import LOADERS, parse_yaml

assert (LOADERS is None) == (sys.argv[1] == "pure")
try:
    parse_yaml(open(sys.argv[2]).read(), untrusted=True)
except (yaml.YAMLError, RecursionError):
    print("downloaded: refused")
sys.exit(main(["--config.check", "--config.file", sys.argv[2]]))
"""


@pytest.mark.parametrize("shape", ["flow sequences", "block sequences"])
def test_a_document_200000_levels_deep_is_refused_without_a_crash(tmp_path, yaml_loader, shape):
    """libyaml's own composer nests on the C stack: with PyYAML 6.0.1 (libyaml 0.2.5) such a
    document, 400 kB, kills the process. It must be an error for the file, under either parser."""
    import subprocess
    import sys

    deep = write(tmp_path / "deep.yml", _nested(shape, 200_000))
    child = subprocess.run(
        [sys.executable, "-c", DEEP_CHILD, yaml_loader, str(deep)], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 2, child.stderr[-2000:]
    assert child.stdout == "downloaded: refused\n"
    assert child.stderr.startswith(f"azurestack-exporter: configuration error: {deep}: YAML error: ")
    assert "Traceback" not in child.stderr


def test_an_alias_bomb_costs_nothing_in_a_local_file_and_is_refused_from_the_network(tmp_path):
    """Ten levels of nine aliases, under 600 bytes: 9**10 strings if expanded. Aliases share one
    node and one value, so the file is validated at once (and refused: the stamps are lists)."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 10)]
    bomb = write(tmp_path / "bomb.yml", "\n".join([*lines, "stamps: *a9", ""]))
    assert len(bomb.read_bytes()) < 600
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(str(bomb))
    assert time.monotonic() - started < 5
    assert caught.value.file == str(bomb)
    assert [e.path for e in caught.value.errors][-9:] == [f"stamps[{i}]" for i in range(9)]
    import yaml

    with pytest.raises(yaml.YAMLError) as refused:
        parse_yaml(bomb.read_text(), untrusted=True)
    assert refused.value.problem == "YAML anchors and aliases are not accepted in a downloaded document"
    assert (refused.value.problem_mark.line, refused.value.problem_mark.column) == (0, 4)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("releases:\n" + "  - {update: '2408', build: 1.2408.0.20}\n" * 2000 + "note: &late x\n", 2001),
        ("? &k a\n: 1\n", 0),
        ("a: {<<: &m {b: 1}, c: 2}\n", 0),
        ("a: !!str &x b\n", 0),
        ("a:\n  - 1\n  - &x\n", 2),
    ],
)
def test_an_anchor_anywhere_in_a_downloaded_document_is_refused_where_it_is(text, line):
    import yaml

    assert parse_yaml(text) is not None or text.endswith("&x\n")
    with pytest.raises(yaml.YAMLError) as caught:
        parse_yaml(text, untrusted=True)
    assert caught.value.problem == "YAML anchors and aliases are not accepted in a downloaded document"
    assert caught.value.problem_mark.line == line


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("{é: 1, é: 2}\n", "line 1, column 8", "YAML error: found duplicate key 'é'"),
        ("name: café\nsite: ünïcode\nname: b\n", "line 3, column 1", "YAML error: found duplicate key 'name'"),
        ("{1: a, 1.0: b}\n", "line 1, column 8", "YAML error: found duplicate key 1.0"),
        ("{yes: a, true: b}\n", "line 1, column 10", "YAML error: found duplicate key True"),
        ("{~: a, null: b}\n", "line 1, column 8", "YAML error: found duplicate key None"),
        ("{[1]: a}\n", "line 1, column 2", "YAML error: found an unhashable key"),
        ("? {a: 1}\n: b\n", "line 1, column 3", "YAML error: found an unhashable key"),
        ("{1: a}\n", "(top level)", "key 1 must be a string"),
        ("stamps: [{null: a, name: a, version: 1.2408.1.50}]\n", "stamps[0]", "key None must be a string"),
        ("stamps: [{name: a, version: 1.2408.1.50, labels: {1.5: x}}]\n", "stamps[0].labels",
         "1.5 is not a valid Prometheus label name"),
    ],
)  # fmt: skip
def test_duplicate_and_non_string_keys_are_refused_where_they_are(tmp_path, text, where, problem):
    with pytest.raises(ConfigError) as caught:
        load_config(str(write(tmp_path / "c.yml", text)))
    assert (caught.value.path, caught.value.problem) == (where, problem)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("stamps: !!int\n", "line 1, column 9", "YAML error: '' is not a valid int"),
        ("refresh_interval: !!int 0o9\n", "line 1, column 19", "YAML error: '0o9' is not a valid int"),
        ("refresh_interval: !!float _\n", "line 1, column 19", "YAML error: '_' is not a valid float"),
        ("stamps: [{name: a, version: !!bool x}]\n", "line 1, column 29", "YAML error: 'x' is not a valid bool"),
    ],
)
def test_a_value_tagged_by_hand_that_is_not_of_its_type_is_refused_where_it_is(tmp_path, text, where, problem):
    """PyYAML's own constructors raise IndexError or KeyError here: it must be an error for the file."""
    file = write(tmp_path / "c.yml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(file))
    assert (caught.value.file, caught.value.path, caught.value.problem) == (str(file), where, problem)
    import yaml

    with pytest.raises(yaml.YAMLError):
        parse_yaml(text, untrusted=True)


def test_every_problem_of_a_configuration_is_reported_at_once_with_its_key_path(tmp_path):
    """A newcomer fixes a file in one pass, not one error per run."""
    bad = write(
        tmp_path / "bad.yml",
        """
        refresh_interval: 5x
        colour: red
        policy: {supported_releases: 0, hotfix_grace_period: 45d}
        stamps:
          - {name: a, version: 1.24.0.1}
          - {name: b, admin: {endpoint: 'http://adm.example', tenant: adfs}}
          - {name: a, version: 1.2408.1.50, labels: {site: ams, 9x: y}}
        """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(str(bad))
    found = [(e.file, e.path, e.problem.split(":")[0]) for e in err.value.errors]
    assert [path for _, path, _ in found] == [
        "colour",
        "refresh_interval",
        "stamps[0].version",
        "stamps[1].admin.endpoint",
        "stamps[1].admin.client_id",
        "stamps[1].admin",
        "stamps[2].labels",
        "stamps[2].name",
        "policy.supported_releases",
    ]
    assert {file for file, _, _ in found} == {str(bad)}
    message = str(err.value)
    assert message.startswith(f"{bad}: 9 problems:\n  colour: unknown key")
    assert "\n  stamps[2].name: duplicate stamp name 'a' (also stamps[0])" in message


def test_problems_in_a_catalog_file_are_reported_with_that_file_beside_the_others(tmp_path):
    write(tmp_path / "releases.yml", "releases: [{update: '2601', build: 1.2506.0.1}]\n")
    bad = write(tmp_path / "c.yml", "catalog: {files: [releases.yml]}\nstamps: [{name: a, version: x}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(bad))
    assert str(err.value).splitlines() == [
        "2 problems:",
        f"  {bad}: stamps[0].version: version 'x' is not an Azure Stack Hub build: expected four dot-separated "
        "numbers such as 1.2408.1.50",
        f"  {tmp_path / 'releases.yml'}: releases[0].build: base build 1.2506.0.1 does not belong to update "
        "version 2601",
    ]
