"""The installed exporter against the fake admin endpoint over real HTTPS, with real msal token flows."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    SECRET,
    confirmed_catalog,
    eventually,
    exporter_process,
    free_port,
    http_get,
    http_post,
    require_tool,
    run_cli,
    write,
)
from fake_azurestack import FakeAzureStack, FakeStamp, Run, Update
from pki import make_ca, make_client_cert, make_server_cert

SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def admin_block(fake: FakeAzureStack, stamp: FakeStamp, pki, *, timeout: str = "2s", ca: bool = True) -> str:
    lines = [
        f"    admin:\n      endpoint: {fake.endpoint(stamp.name)}",
        f"      tenant: {'adfs' if stamp.identity == 'adfs' else stamp.tenant}",
        f"      client_id: {stamp.client_id}",
        f"      timeout: {timeout}",
    ]
    if stamp.certificate is not None:
        lines.append(f"      client_certificate_file: {pki['spn_file']}")
    else:
        lines.append(f"      client_secret_file: {pki['secret_file']}")
    if ca:
        lines.append(f"      ca_file: {pki['ca_file']}")
    return "\n".join(lines) + "\n"


def config_for(
    tmp_path: Path,
    fake: FakeAzureStack,
    pki,
    stamps: list[FakeStamp],
    *,
    static: bool = True,
    interval: str = "1s",
    extra: str = "",
    **admin_kwargs,
) -> Path:
    pki.setdefault("spn_file", tmp_path / "spn.pem")
    body = f"refresh_interval: {interval}\n{extra}stamps:\n"
    if static:
        body += "  - name: static-east\n    version: 1.2506.2.24\n"
    for stamp in stamps:
        fake.add_stamp(stamp)
        body += f"  - name: {stamp.name}\n" + admin_block(fake, stamp, pki, **admin_kwargs)
    return write(tmp_path / "exporter.yml", body)


def stamps_json(url: str) -> dict[str, dict]:
    status, _, body = http_get(f"{url}/api/v1/stamps")
    assert status == 200
    return {s["stamp"]: s for s in json.loads(body)["stamps"]}


def wait_for(check: Callable[[], bool], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def metrics(url: str) -> str:
    status, _, body = http_get(f"{url}/metrics")
    assert status == 200
    return body.decode()


def sample(body: str, name: str, **labels: str) -> float | None:
    """The value of one sample, matching the given labels exactly (all of them)."""
    for line in body.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("} ")[0] if "{" in line else ""))
        if line.split("{")[0].split(" ")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


# ---------------------------------------------------------------- the two identity flows


def test_adfs_secret_and_entra_certificate_stamps_are_read_and_evaluated(tmp_path, fake, pki, monkeypatch):
    adfs = FakeStamp(
        "adfs-west",
        secret=SECRET,
        current_version="1.2501.1.47",
        current_oem_version="2.4.2504.2",
        updates=[
            Update("1.2501.1.47", "Installed"),
            Update("1.2506.0.15", "Ready"),
            Update("1.2609.0.7", "Ready", "OEM"),  # an OEM package: never a Microsoft release
        ],
    )
    entra = FakeStamp(
        "entra-north",
        certificate=pki["spn"].cert,
        identity="entra",
        current_version="1.2408.1.50",
        state="UpdateAvailable",
        updates=[Update("1.2608.0.3", "Downloading")],  # offered but unknown to the catalog
    )
    config = config_for(tmp_path, fake, pki, [adfs, entra])
    env = {"REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE}  # must not override ca_file
    with exporter_process(config, tmp_path=tmp_path, env=env) as running:
        body = metrics(running.url)  # ready means every admin stamp has been read once
        assert sample(body, "azurestack_stamp_up", stamp="adfs-west") == 1
        assert sample(body, "azurestack_stamp_up", stamp="entra-north") == 1
        assert (
            sample(
                body,
                "azurestack_stamp_info",
                stamp="adfs-west",
                version="1.2501.1.47",
                update_version="2501",
                oem_version="2.4.2504.2",
                source="admin",
            )
            == 1
        )
        # 2608 offered to entra-north joins the catalog as observed: adfs-west is now 3 behind.
        assert sample(body, "azurestack_release_info", update_version="2608", source="observed", build="") == 1
        assert sample(body, "azurestack_release_info", update_version="2609") is None
        assert sample(body, "azurestack_stamp_versions_behind", stamp="adfs-west") == 3
        assert sample(body, "azurestack_stamp_in_support", stamp="adfs-west") == 0
        assert sample(body, "azurestack_stamp_versions_behind", stamp="entra-north") == 4
        assert sample(body, "azurestack_stamp_versions_behind", stamp="static-east") == 2
        # Update location state set and timestamps (no zone; 7 fractional digits).
        assert sample(body, "azurestack_stamp_update_state", stamp="adfs-west", state="AppliedSuccessfully") == 1
        assert sample(body, "azurestack_stamp_update_state", stamp="adfs-west", state="UpdateFailed") == 0
        assert sample(body, "azurestack_stamp_update_state", stamp="entra-north", state="UpdateAvailable") == 1
        assert sample(body, "azurestack_stamp_last_checked_timestamp_seconds", stamp="adfs-west") == 1759331861.0
        assert sample(body, "azurestack_stamp_last_updated_timestamp_seconds", stamp="adfs-west") == pytest.approx(
            1759219752.8824552
        )
        # Updates not installed, OEM ones included with their package type.
        assert (
            sample(
                body,
                "azurestack_stamp_update_available",
                stamp="adfs-west",
                version="1.2506.0.15",
                package_type="Infrastructure",
                state="Ready",
            )
            == 1
        )
        assert sample(body, "azurestack_stamp_update_available", stamp="adfs-west", package_type="OEM") == 1
        assert sample(body, "azurestack_stamp_update_available", stamp="adfs-west", version="1.2501.1.47") is None
        for reason in ("timeout", "tls", "connection", "auth", "http", "parse"):
            assert sample(body, "azurestack_stamp_collection_errors_total", stamp="entra-north", reason=reason) == 0
        assert sample(body, "azurestack_stamp_collection_duration_seconds", stamp="entra-north") > 0

        # Background refresh: more reads happen, each stamp keeps one token.
        reads = len(adfs.log)
        wait_for(lambda: len(adfs.log) >= reads + 4, what="background refreshes")
        assert fake.token_requests.count("adfs-west") == 1
        assert fake.token_requests.count("entra-north") == 1
        # Discovery is cached: metadata, subscriptions and locations were read once.
        assert sum(1 for line in adfs.log if line.startswith("GET /metadata/endpoints")) == 1
        assert sum(1 for line in adfs.log if line.startswith("GET /subscriptions?")) == 1

        report = stamps_json(running.url)
        assert report["adfs-west"]["update_state"] == "AppliedSuccessfully"
        assert report["entra-north"]["last_checked"] == "2025-10-01T15:17:41Z"
        assert {u["version"] for u in report["adfs-west"]["updates_available"]} == {"1.2506.0.15", "1.2609.0.7"}


def test_pagination_follows_next_link(tmp_path, fake, pki):
    stamp = FakeStamp(
        "paged",
        secret=SECRET,
        page_size=1,
        updates=[Update(v, "Ready") for v in ("1.2408.1.50", "1.2501.0.21", "1.2501.1.47", "1.2506.0.15")]
        + [Update("2.4.2508.4", "Ready", "OEM")],
    )
    with exporter_process(config_for(tmp_path, fake, pki, [stamp], static=False), tmp_path=tmp_path) as running:
        body = metrics(running.url)
        versions = {m for m in re.findall(r'azurestack_stamp_update_available\{[^}]*version="([^"]+)"', body)}
        assert versions == {"1.2408.1.50", "1.2501.0.21", "1.2501.1.47", "1.2506.0.15", "2.4.2508.4"}
        first_read = [line for line in stamp.log if "/updates?" in line][:5]
        assert "$skiptoken" not in first_read[0]
        assert [line.rsplit("$skiptoken=", 1)[-1] for line in first_read[1:]] == ["1", "2", "3", "4"]


@pytest.mark.parametrize("answer", ["400 InvalidApiVersionParameter", "404 InvalidResourceType"])
def test_api_version_falls_back_to_2016_and_sticks(tmp_path, fake, pki, answer):
    stamp = FakeStamp("old", secret=SECRET, api_versions=("2016-05-01",), current_version="1.2506.2.24")
    stamp.faults.api_version_404 = answer.startswith("404")
    with exporter_process(config_for(tmp_path, fake, pki, [stamp], static=False), tmp_path=tmp_path) as running:
        body = metrics(running.url)
        assert sample(body, "azurestack_stamp_up", stamp="old") == 1
        assert sample(body, "azurestack_stamp_versions_behind", stamp="old") == 1
        # The 2016 schema has no packageType: the OEM package is still recognised by its name.
        assert sample(body, "azurestack_stamp_update_available", stamp="old", version="2.4.2502.3") == 1
        assert sample(body, "azurestack_release_info", update_version="2502") is None
        wait_for(lambda: sum("updateLocations/local?" in line for line in stamp.log) >= 3, what="more reads")
        location_reads = [line for line in stamp.log if "updateLocations/local?" in line]
        assert location_reads[0].endswith("api-version=2021-07-01")
        assert all(line.endswith("api-version=2016-05-01") for line in location_reads[1:])


# ---------------------------------------------------------------- faults


FAULTS = {
    "slow": ({"latency": 4.0}, "timeout"),
    "error500": ({"status": 500}, "http"),
    "denied401": ({"status": 401}, "auth"),
    "throttled429": ({"status": 429, "retry_after": 30}, "http"),
    "html": ({"html": True}, "parse"),
    "truncated": ({"truncated": True}, "parse"),
    "oversized": ({"oversized": 24 * 1024 * 1024}, "size"),
    "tokendown": ({"token_down": True}, "auth"),
    "foreignlink": ({"foreign_next_link": True}, "parse"),
    # Hostile peers: each must end in its own reason, never "crashed, values kept, still up".
    "drip": ({"drip": 1.0}, "timeout"),  # prompt headers, then a byte a second
    "deepjson": ({"deep_json": 20_000}, "parse"),  # RecursionError in the JSON parser
    "emptyobjects": ({"empty_objects": 1_000_000}, "size"),  # a few MiB that would parse to gigabytes
    "retrysuperscript": ({"status": 429, "retry_after_raw": "\u00b2"}, "http"),  # "²".isdigit() is True
}


def test_every_fault_marks_only_its_stamp_down_and_recovers(tmp_path, fake, pki):
    healthy = FakeStamp("healthy", secret=SECRET, current_version="1.2601.0.4")
    faulty = {}
    for name, (faults, _) in FAULTS.items():
        stamp = FakeStamp(name, secret=SECRET, current_version="1.2501.1.47", page_size=1)
        for key, value in faults.items():
            setattr(stamp.faults, key, value)
        faulty[name] = stamp
    # A second stamp host whose certificate comes from a CA the exporter does not trust.
    with FakeAzureStack(make_server_cert(make_ca("untrusted CA"))) as other:
        badtls = FakeStamp("badtls", secret=SECRET)
        config = config_for(tmp_path, fake, pki, [healthy, *faulty.values()], interval="1s")
        other.add_stamp(badtls)
        with open(config, "a") as handle:
            handle.write("  - name: badtls\n" + admin_block(other, badtls, pki))
        with exporter_process(config, tmp_path=tmp_path) as running:
            body = metrics(running.url)
            assert sample(body, "azurestack_stamp_up", stamp="healthy") == 1
            assert sample(body, "azurestack_stamp_up", stamp="static-east") == 1
            assert sample(body, "azurestack_stamp_versions_behind", stamp="healthy") == 0
            expected = {name: reason for name, (_, reason) in FAULTS.items()} | {"badtls": "tls"}
            for name, reason in expected.items():
                assert sample(body, "azurestack_stamp_up", stamp=name) == 0, name
                assert sample(body, "azurestack_stamp_collection_errors_total", stamp=name, reason=reason) >= 1, name
                assert sample(body, "azurestack_stamp_versions_behind", stamp=name) is None, name
            report = stamps_json(running.url)
            for name, reason in expected.items():
                assert report[name]["up"] is False and report[name]["error"].startswith(reason + ": "), report[name]

            # A scrape never waits for a read: the slow stamp's reads block for its 2 s timeout,
            # so a scrape that waited for one would take that long (this is not a speed target).
            for _ in range(20):
                started = time.monotonic()
                metrics(running.url)
                assert time.monotonic() - started < 1.5

            # Recovery on the next refresh once the faults clear.
            for stamp in faulty.values():
                stamp.faults.clear()
            other.use_certificate(make_server_cert(pki["ca"]))

            def all_up() -> bool:
                current = metrics(running.url)
                return all(sample(current, "azurestack_stamp_up", stamp=n) == 1 for n in expected)

            wait_for(all_up, timeout=30, what="every stamp to recover")
            body = metrics(running.url)
            for name in expected:
                assert sample(body, "azurestack_stamp_versions_behind", stamp=name) is not None
        log = running.log()
    assert 'msg="Collection failed" stamp=slow' in log and "reason=timeout" in log


def test_a_failing_stamp_keeps_its_last_good_values(tmp_path, fake, pki):
    stamp = FakeStamp("flaky", secret=SECRET, current_version="1.2408.1.50", state="UpdateFailed")
    with exporter_process(config_for(tmp_path, fake, pki, [stamp], static=False), tmp_path=tmp_path) as running:
        body = metrics(running.url)
        assert sample(body, "azurestack_stamp_in_support", stamp="flaky") == 0
        stamp.faults.status = 500
        wait_for(lambda: sample(metrics(running.url), "azurestack_stamp_up", stamp="flaky") == 0, what="stamp down")
        body = metrics(running.url)
        assert sample(body, "azurestack_stamp_in_support", stamp="flaky") == 0
        assert sample(body, "azurestack_stamp_versions_behind", stamp="flaky") == 3
        assert sample(body, "azurestack_stamp_update_state", stamp="flaky", state="UpdateFailed") == 1
        assert sample(body, "azurestack_stamp_collection_errors_total", stamp="flaky", reason="http") >= 1
        report = stamps_json(running.url)["flaky"]
        assert report["up"] is False and report["versions_behind"] == 3 and report["in_support"] is False
        assert report["error"].startswith("http: ")
    assert run_cli("check", f"--config.file={tmp_path / 'exporter.yml'}").returncode == 3


# ---------------------------------------------------------------- credentials and secrets


def test_wrong_secret_is_an_auth_error_and_no_secret_appears_anywhere(tmp_path, fake, pki):
    right = FakeStamp("right", secret=SECRET, current_version="1.2506.2.24")
    wrong = FakeStamp("wrong", secret="the-server-expects-another-one")
    config = config_for(tmp_path, fake, pki, [right, wrong])
    outputs = []
    with exporter_process(config, "--log.level=debug", tmp_path=tmp_path) as running:
        body = metrics(running.url)
        assert sample(body, "azurestack_stamp_up", stamp="right") == 1
        assert sample(body, "azurestack_stamp_up", stamp="wrong") == 0
        assert sample(body, "azurestack_stamp_collection_errors_total", stamp="wrong", reason="auth") >= 1
        report = stamps_json(running.url)
        assert report["wrong"]["error"].startswith("auth: token request refused: invalid_client")
        outputs += [body, json.dumps(report), http_get(f"{running.url}/")[2].decode()]
        wait_for(lambda: len(wrong.log) >= 2, what="a second attempt")
    outputs.append(running.log())
    for args in (["--output=json"], ["--output=table"]):
        result = run_cli("check", f"--config.file={config}", *args, "--log.level=debug")
        assert result.returncode == 3  # "wrong" could not be evaluated; nothing out of support
        outputs += [result.stdout, result.stderr]
    check = run_cli(f"--config.file={config}", "--config.check")
    outputs += [check.stdout, check.stderr]
    everything = "\n".join(outputs)
    assert "invalid_client" in everything
    assert SECRET not in everything
    assert SECRET[:12] not in everything


def test_ca_file_is_used_and_the_environment_bundle_is_not(tmp_path, fake, pki):
    """REQUESTS_CA_BUNDLE names a bundle that trusts the fake; without ca_file the stamp must still fail."""
    env_bundle = tmp_path / "env-bundle.pem"
    env_bundle.write_bytes(pki["ca"].cert_pem)
    trusted = FakeStamp("with-ca", secret=SECRET)
    untrusted = FakeStamp("without-ca", secret=SECRET)
    config = config_for(tmp_path, fake, pki, [trusted], static=False)
    with open(config, "a") as handle:
        fake.add_stamp(untrusted)
        handle.write("  - name: without-ca\n" + admin_block(fake, untrusted, pki, ca=False))
    env = {"REQUESTS_CA_BUNDLE": str(env_bundle), "CURL_CA_BUNDLE": str(env_bundle), "SSL_CERT_FILE": str(env_bundle)}
    with exporter_process(config, tmp_path=tmp_path, env=env) as running:
        body = metrics(running.url)
        assert sample(body, "azurestack_stamp_up", stamp="with-ca") == 1
        assert sample(body, "azurestack_stamp_up", stamp="without-ca") == 0
        assert sample(body, "azurestack_stamp_collection_errors_total", stamp="without-ca", reason="tls") >= 1


def test_check_collects_admin_stamps_once(tmp_path, fake, pki):
    good = FakeStamp("good", secret=SECRET, current_version="1.2506.2.24")
    config = config_for(tmp_path, fake, pki, [good], extra=confirmed_catalog(tmp_path))
    result = run_cli("check", f"--config.file={config}", "--output=json")
    assert result.returncode == 0, result.stdout + result.stderr
    stamps = {s["stamp"]: s for s in json.loads(result.stdout)["stamps"]}
    assert stamps["good"]["source"] == "admin" and stamps["good"]["version"] == "1.2506.2.24"
    assert stamps["good"]["update_state"] == "AppliedSuccessfully"
    good.current_version = "1.2408.1.50"
    assert run_cli("check", f"--config.file={config}").returncode == 1
    good.faults.status = 500
    table = run_cli("check", f"--config.file={config}")
    assert table.returncode == 3
    assert "good: http: metadata endpoint answered HTTP 500" in table.stdout


def test_certificate_file_with_a_key_that_does_not_match_is_a_config_error(tmp_path, fake, pki):
    stamp = FakeStamp("mismatch", certificate=pki["spn"].cert, identity="entra")
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(make_client_cert("another spn").cert_pem + pki["spn"].key_pem)
    pki["spn_file"] = mixed
    config = config_for(tmp_path, fake, pki, [stamp], static=False)
    result = run_cli("check", f"--config.file={config}", "--output=json")
    assert result.returncode == 2
    assert (
        "stamps[0].admin.client_certificate_file: the private key does not belong to the certificate" in result.stderr
    )


def test_entra_certificate_wrong_for_the_client_is_an_auth_error(tmp_path, fake, pki):
    stamp = FakeStamp("unregistered", certificate=make_client_cert("registered spn").cert, identity="entra")
    config = config_for(tmp_path, fake, pki, [stamp], static=False)
    result = run_cli("check", f"--config.file={config}", "--output=json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["stamps"][0]["error"].startswith("auth: token request refused: invalid_client")


def test_stamps_with_the_same_endpoint_and_credentials_share_one_read(tmp_path, fake, pki):
    stamp = FakeStamp("shared", secret=SECRET, current_version="1.2601.0.4")
    config = config_for(tmp_path, fake, pki, [stamp], static=False, interval="10m")
    block = admin_block(fake, stamp, pki)
    with open(config, "a") as handle:
        handle.write("  - name: shared-alias\n" + block)
    with exporter_process(config, tmp_path=tmp_path) as running:
        body = metrics(running.url)
        assert sample(body, "azurestack_stamp_up", stamp="shared") == 1
        assert sample(body, "azurestack_stamp_up", stamp="shared-alias") == 1
        assert sample(body, "azurestack_stamp_versions_behind", stamp="shared-alias") == 0
    assert fake.token_requests.count("shared") == 1
    assert sum(1 for line in stamp.log if "updateLocations/local?" in line) == 1  # one reading for both


# ---------------------------------------------------------------- hostile and broken peers


def test_a_stamp_offering_a_build_from_the_future_is_refused_and_flips_no_one(tmp_path, fake, pki):
    """1.9912.0.1 offered by one stamp would make 9912 "latest" and put the whole fleet out of support."""
    liar = FakeStamp("liar", secret=SECRET, current_version="1.2601.1.14")
    liar.updates = [Update("1.2601.1.14", "Installed"), Update("1.9912.0.1", "Ready")]
    honest = FakeStamp("honest", secret=SECRET, current_version="1.2601.1.14")
    with exporter_process(config_for(tmp_path, fake, pki, [liar, honest]), tmp_path=tmp_path) as running:
        report = stamps_json(running.url)
        assert report["liar"]["up"] is False
        assert report["liar"]["error"] == "parse: refused: the stamp reports build 1.9912.0.1, beyond the current month"
        assert (report["honest"]["versions_behind"], report["honest"]["in_support"]) == (0, True)
        assert (report["static-east"]["versions_behind"], report["static-east"]["in_support"]) == (1, True)
        body = metrics(running.url)
        assert sample(body, "azurestack_release_info", update_version="9912") is None


def test_a_deleted_client_certificate_marks_the_stamp_down_with_a_reason(tmp_path, fake, pki):
    stamp = FakeStamp("certified", certificate=pki["spn"].cert, identity="entra", current_version="1.2601.1.14")
    config = config_for(tmp_path, fake, pki, [stamp], static=False)
    with exporter_process(config, tmp_path=tmp_path) as running:
        assert sample(metrics(running.url), "azurestack_stamp_up", stamp="certified") == 1
        Path(pki["spn_file"]).unlink()
        fake.tokens.clear()  # the cached token is gone too: the next read needs the certificate

        def down() -> bool:
            current = stamps_json(running.url)["certified"]
            return current["up"] is False and (current["error"] or "").startswith("auth: cannot read")

        wait_for(down, what="the stamp to go down for want of its certificate")
        body = metrics(running.url)
        assert sample(body, "azurestack_stamp_collection_errors_total", stamp="certified", reason="auth") >= 1
        assert sample(body, "azurestack_stamp_versions_behind", stamp="certified") == 0  # last good values kept
    assert "Collection crashed" not in running.log()


def test_sigterm_with_a_read_in_flight_exits_promptly(tmp_path, fake, pki):
    """A peer dripping a byte a second holds a read open; shutdown must not wait for it."""
    stamp = FakeStamp("dripping", secret=SECRET)
    stamp.faults.drip = 1.0
    fake.add_stamp(stamp)
    config = write(
        tmp_path / "exporter.yml",
        "refresh_interval: 1m\nstamps:\n  - name: dripping\n" + admin_block(fake, stamp, pki, timeout="60s"),
    )
    with exporter_process(config, tmp_path=tmp_path, ready_check=False) as running:
        wait_for(lambda: stamp.faults.dripped >= 2, what="the read to be blocked on the dripping body")
        # Not ready while the only stamp's first read is unfinished: its verdict is not known yet.
        status, _, body = http_get(f"{running.url}/-/ready")
        assert (status, body) == (503, b"Not ready: the first evaluation has not finished\n")
        running.process.send_signal(signal.SIGTERM)
        try:
            code = running.process.wait(timeout=10)
        finally:
            stamp.faults.drip = 0.0
        assert code == 0
    assert 'msg="Shutting down"' in running.log()


def test_a_token_endpoint_echoing_the_form_leaks_the_secret_nowhere_and_json_logs_stay_json(tmp_path, fake, pki):
    """msal logs a non-JSON token answer as it came: the form, secret included, URL-encoded."""
    secret = "e2e+Secret/9d=2b&41 x"  # characters that form encoding changes
    (tmp_path / "odd-secret").write_text(secret)
    pki["secret_file"] = tmp_path / "odd-secret"
    stamp = FakeStamp("echo", secret=secret)
    stamp.faults.token_echo = True
    config = config_for(tmp_path, fake, pki, [stamp], static=False)
    with exporter_process(config, "--log.format=json", tmp_path=tmp_path) as running:
        report = stamps_json(running.url)["echo"]
        page = http_get(f"{running.url}/")[2].decode()
        body = metrics(running.url)
    assert report["up"] is False and report["error"].split(":")[0] in ("auth", "error")
    log = running.log()
    lines = [line for line in log.splitlines() if line.strip()]
    for line in lines:
        json.loads(line)  # one JSON object a line: no bare tracebacks from a library
    forms = {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for text in (log, json.dumps(report), page, body):
        for form in forms:
            assert form not in text
    assert any(json.loads(line).get("msg", "").startswith("Token response is not in json format") for line in lines)


def test_a_catalog_url_query_never_reaches_errors_logs_or_pages(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/catalog.yml?sig=SIGNATURE-SECRET&se=2027"
    config = write(
        tmp_path / "c.yml",
        f'refresh_interval: 1s\ncatalog:\n  urls: ["{closed}"]\nstamps: [{{name: a, version: 1.2601.0.4}}]\n',
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        wait_for(lambda: "connection" in str(stamps_json_catalog(running.url)), what="the source to fail to connect")
        texts = [http_get(f"{running.url}{path}")[2].decode() for path in ("/", "/metrics", "/api/v1/stamps")]
    for text in [*texts, running.log()]:
        assert "SIGNATURE-SECRET" not in text and "se=2027" not in text


def stamps_json_catalog(url: str) -> list[dict]:
    return json.loads(http_get(f"{url}/api/v1/stamps")[2])["catalog"]["sources"]


# ---------------------------------------------------------------- update runs


def iso(hours_ago: float) -> str:
    moment = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


@pytest.mark.parametrize("api_version", ["2021-07-01", "2016-05-01"])
def test_update_runs_give_state_failed_step_typical_duration_and_time_to_compliance(tmp_path, fake, pki, api_version):
    """Three stamps: one with a history of succeeded runs, one whose last run failed at a named
    step, one running for 30 hours with no history of its own (so the fleet's typical run)."""
    history = FakeStamp("history", secret=SECRET, current_version="1.2506.0.15", api_versions=(api_version,))
    history.updates = [Update("1.2501.0.21", "Installed"), Update("1.2506.0.15", "Installed"), Update("1.2601.0.4")]
    history.runs = {
        "1.2506.0.15": [Run("Succeeded", iso(900), "PT14H"), Run("Succeeded", iso(500), "PT10H")],
        "1.2501.0.21": [Run("Succeeded", iso(2000), "PT12H30M"), Run("Failed", iso(2100), "PT2H")],
    }
    failing = FakeStamp("failing", secret=SECRET, current_version="1.2506.0.15", api_versions=(api_version,))
    failing.updates = [Update("1.2506.0.15", "Installed"), Update("1.2601.0.4", "InstallationFailed")]
    failing.runs = {"1.2601.0.4": [Run("Failed", iso(5), "PT3H", failed_step="Update SeedRing ECE")]}
    running = FakeStamp("running", secret=SECRET, current_version="1.2506.0.15", api_versions=(api_version,))
    running.updates = [Update("1.2506.0.15", "Installed"), Update("1.2601.0.4", "Installing")]
    running.runs = {"1.2601.0.4": [Run("InProgress", iso(30), "PT1H")]}
    config = config_for(tmp_path, fake, pki, [history, failing, running], static=False)
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        body = metrics(exporter.url)
        report = stamps_json(exporter.url)
        page = http_get(f"{exporter.url}/")[2].decode()
        table = run_cli("check", f"--config.file={config}")
    # The history stamp: newest run, median of its succeeded runs (12.5 h), one package to 2601.
    assert sample(body, "azurestack_stamp_last_update_run_info", stamp="history", state="Succeeded",
                  update="1.2506.0.15", failed_step="") == 1  # fmt: skip
    assert sample(body, "azurestack_stamp_update_run_typical_duration_seconds", stamp="history", basis="stamp") == 45000
    assert sample(body, "azurestack_stamp_time_to_compliance_seconds", stamp="history") == 45000
    assert sample(body, "azurestack_stamp_last_update_run_duration_seconds", stamp="history") == 36000
    # The failing stamp: the failed step is a label; its text, cut to 200 characters, is on an info metric
    # of its own (one series per failed run), and whole in JSON and on the page.
    assert sample(body, "azurestack_stamp_last_update_run_info", stamp="failing", state="Failed",
                  update="1.2601.0.4", failed_step="Update SeedRing ECE") == 1  # fmt: skip
    error_lines = [
        line for line in body.splitlines() if line.startswith("azurestack_stamp_last_update_run_error_info{")
    ]
    assert len(error_lines) == 1 and 'stamp="failing"' in error_lines[0]
    assert 'error="Update is blocked due to health check failure. To remediate' in error_lines[0]
    assert body.count("To remediate") == 1
    last = report["failing"]["update_runs"]["last"]
    assert (last["state"], last["failed_step"]) == ("Failed", "Update SeedRing ECE")
    assert last["error"].startswith("Update is blocked due to health check failure. To remediate")
    assert "To remediate please check" in page and "Update SeedRing ECE" in page
    # The running stamp: 30 hours and counting, judged against the fleet's typical run.
    took = sample(body, "azurestack_stamp_last_update_run_duration_seconds", stamp="running")
    assert 30 * 3600 - 120 < took < 30 * 3600 + 120
    fleet = sample(body, "azurestack_stamp_update_run_typical_duration_seconds", stamp="running", basis="fleet")
    assert fleet == 45000  # the median of the stamps' own typical runs: only history has one
    assert report["running"]["update_runs"]["typical_basis"] == "fleet"
    # Start-by dates exist where a support end is forecast, and are labelled as estimates.
    assert report["history"]["update_runs"]["start_by"]["estimate"] is True
    end = sample(body, "azurestack_stamp_support_expected_end_timestamp_seconds", stamp="history")
    assert sample(body, "azurestack_stamp_update_start_by_timestamp_seconds", stamp="history") == end - 45000
    assert "history: last update run 1.2506.0.15 Succeeded (10.0 h); typical run 12.5 h (stamp)" in table.stdout
    assert "start updating by ~" in table.stdout
    # An admin fleet's exposition, runs and all, is as clean for promtool as the demo's.
    lint = subprocess.run(
        [require_tool("promtool"), "check", "metrics"], input=body, capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0 and lint.stdout == "" and lint.stderr == "", lint.stdout + lint.stderr
    # Runs were read for the updates that matter only, and within the same read.
    assert any("updates/Microsoft1.2601.0.4/updateRuns" in line for line in failing.log)
    assert not any("updateRuns" in line and "OEM" in line for line in history.log)


def test_a_429_with_a_short_retry_after_is_retried_and_the_read_succeeds(tmp_path, fake, pki):
    stamp = FakeStamp("throttled", secret=SECRET, current_version="1.2601.1.14")
    stamp.faults.status, stamp.faults.retry_after, stamp.faults.times = 429, 1, 1
    config = config_for(tmp_path, fake, pki, [stamp], static=False)
    result = run_cli("check", f"--config.file={config}", "--output=json")
    report = json.loads(result.stdout)["stamps"][0]
    assert (report["up"], report["versions_behind"]) == (True, 0), report
    assert stamp.log[0] == stamp.log[1]  # the throttled request, asked again after Retry-After


def test_client_secret_env_is_the_credential_sent(tmp_path, fake, pki):
    stamp = FakeStamp("from-env", secret=SECRET, current_version="1.2601.1.14")
    fake.add_stamp(stamp)
    block = admin_block(fake, stamp, pki).replace(
        f"client_secret_file: {pki['secret_file']}", "client_secret_env: AZS_SECRET"
    )
    config = write(tmp_path / "c.yml", "stamps:\n  - name: from-env\n" + block)
    good = run_cli("check", f"--config.file={config}", "--output=json", env={"AZS_SECRET": SECRET})
    assert json.loads(good.stdout)["stamps"][0]["up"] is True
    wrong = run_cli("check", f"--config.file={config}", "--output=json", env={"AZS_SECRET": "not-the-secret"})
    assert json.loads(wrong.stdout)["stamps"][0]["error"].startswith("auth: token request refused: invalid_client")


def test_a_reload_during_a_first_read_keeps_that_read(tmp_path, fake, pki):
    """A reload that leaves a stamp's endpoint and credentials alone (here: a new label) must not
    throw away the read in flight; otherwise readiness and values wait a whole refresh interval."""
    stamp = FakeStamp("slow-first", secret=SECRET, current_version="1.2506.2.24")
    stamp.faults.latency = 0.4  # every request: the read takes a few seconds
    fake.add_stamp(stamp)
    block = admin_block(fake, stamp, pki, timeout="20s")
    config = write(tmp_path / "exporter.yml", "refresh_interval: 10m\nstamps:\n  - name: slow-first\n" + block)
    with exporter_process(config, tmp_path=tmp_path, ready_check=False) as running:
        wait_for(lambda: len(stamp.log) >= 1, what="the first read to start")
        write(config, "refresh_interval: 10m\nstamps:\n  - name: slow-first\n    labels: {site: x}\n" + block)
        assert http_post(f"{running.url}/-/reload")[0] == 200
        assert http_get(f"{running.url}/-/ready")[0] == 503  # the read is still in flight
        assert eventually(lambda: http_get(f"{running.url}/-/ready")[0], 200, timeout=15) == 200, running.log()
        body = metrics(running.url)
        assert sample(body, "azurestack_stamp_up", stamp="slow-first") == 1
        assert 'version="1.2506.2.24"' in body and 'site="x"' in body
