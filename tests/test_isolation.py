"""A failure stays where it happened: one stamp's odd answer, one bad file or one live source
changes no other stamp's values, never stops the refresh, and is said where it came from.

Each test runs the installed exporter against the fake admin endpoint (Microsoft's recorded
shapes, with the hostile values a broken or malicious stamp could send), and reads what an
operator reads: /metrics, /api/v1/stamps, the status page and ``check``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import SECRET, exporter_process, http_get, http_post, run_cli, write
from fake_azurestack import FakeStamp, Run, Update
from test_admin_e2e import config_for, metrics, sample, stamps_json

NOW_ISO = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 3600))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def until(check, timeout: float = 20.0):
    """Poll until ``check`` returns something truthy; return it (or the last falsy value)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = check()
        if seen or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


def healthy(name: str, version: str = "1.2506.2.24") -> FakeStamp:
    stamp = FakeStamp(name, secret=SECRET, current_version=version)
    stamp.updates = [Update(version, "Installed"), Update("1.2601.0.4", "Ready")]
    return stamp


# ---------------------------------------------------------------- 1. one stamp freezes the fleet


def test_a_non_ascii_digit_in_one_oem_version_freezes_nothing(tmp_path, fake, pki):
    """ "2.4.²": str.isdigit is true and int() raises. The OEM verdict is absent for that stamp;
    every stamp stays up and keeps moving (a later change on another stamp shows)."""
    odd = healthy("odd")
    odd.current_oem_version = "2.4.\u00b2"
    other = healthy("other")
    extra = "catalog:\n  oem:\n    Dell: [2.4.2411.6, 2.4.2502.3]\n"
    config = config_for(tmp_path, fake, pki, [odd, other], static=False, extra=extra)
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        body = metrics(exporter.url)
        assert sample(body, "azurestack_stamp_up", stamp="odd") == 1
        assert sample(body, "azurestack_stamp_oem_in_support", stamp="other", oem_family="Dell") == 1
        assert sample(body, "azurestack_stamp_oem_in_support", stamp="odd", oem_family="Dell") is None
        other.current_version = "1.2601.1.14"  # the fleet keeps being evaluated
        other.updates = [Update("1.2601.1.14", "Installed")]
        moved = until(lambda: sample(metrics(exporter.url), "azurestack_stamp_versions_behind", stamp="other") == 0)
        assert moved
        assert http_get(f"{exporter.url}/-/ready")[0] == 200
        assert sample(metrics(exporter.url), "azurestack_exporter_publisher_up") == 1


# ---------------------------------------------------------------- 2. one stamp blinds the fleet


def test_lone_surrogates_and_control_characters_from_one_stamp_blind_no_view(tmp_path, fake, pki):
    """A lone surrogate is legal in JSON and cannot be written as UTF-8; an escape sequence could
    rewrite a terminal. Both are made printable at the border; every view answers for every stamp."""
    odd = healthy("odd")
    odd.state = "Applied\ud800Successfully"
    odd.oem_family = "Dell\ud800\x1b[2J"
    odd.current_oem_version = "2.4\udfff"
    odd.updates = [Update("1.2506.2.24", "Installed"), Update("1.2601.0.4", "Ready\ud800\x07")]
    odd.runs = {"1.2506.2.24": [Run("Failed", NOW_ISO, "PT1H", failed_step="Step \ud800\x1b[31m")]}
    other = healthy("other")
    config = config_for(tmp_path, fake, pki, [odd, other], static=False)
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        status, _, raw = http_get(f"{exporter.url}/metrics")
        assert status == 200
        body = raw.decode("utf-8")  # strict: the exposition is valid UTF-8
        assert sample(body, "azurestack_stamp_up", stamp="odd") == 1
        assert sample(body, "azurestack_stamp_up", stamp="other") == 1
        assert "\x1b" not in body and "\x07" not in body
        assert sample(body, "azurestack_stamp_update_state", stamp="odd", state="Applied\ufffdSuccessfully") == 1
        for path in ("/", "/api/v1/stamps", "/probe?target=odd"):
            status, _, page = http_get(f"{exporter.url}{path}")
            assert status == 200, path
            assert b"\x1b" not in page, path
        odd_json = stamps_json(exporter.url)["odd"]
        assert odd_json["oem_family"] == "Dell\ufffd\ufffd[2J"
        assert odd_json["update_runs"]["last"]["failed_step"] == "Step \ufffd\ufffd[31m"


def test_a_stamp_name_that_cannot_be_printed_is_refused_with_its_key_path(tmp_path):
    for name in ('"bad\\ud800"', '"bell\\x07"', '"two\\nlines"'):
        config = write(
            tmp_path / "bad.yml",
            f"stamps:\n  - name: ok\n    version: 1.2506.2.24\n  - name: {name}\n    version: 1.2506.2.24\n",
        )
        result = run_cli("--config.check", f"--config.file={config}")
        assert result.returncode == 2, name
        assert "stamps[1].name: must be printable text" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- 3. absurd numbers


def test_absurd_run_durations_are_absent_and_never_spread_to_other_stamps(tmp_path, fake, pki):
    absurd = healthy("absurd")
    absurd.runs = {
        "1.2506.2.24": [
            Run("Succeeded", NOW_ISO, "P3000000D"),
            Run("Succeeded", "2026-01-02T00:00:00Z", "PT" + "9" * 400 + "S"),
            Run("Succeeded", "2026-01-03T00:00:00Z", "NaN"),
        ]
    }
    history = healthy("history")
    history.runs = {"1.2506.2.24": [Run("Succeeded", NOW_ISO, "PT10H")]}
    newcomer = healthy("newcomer")  # no runs of its own: the fleet's typical run
    config = config_for(tmp_path, fake, pki, [absurd, history, newcomer], static=False)
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        report = stamps_json(exporter.url)
        assert report["absurd"]["update_runs"]["last"]["duration_seconds"] is None
        assert report["absurd"]["update_runs"]["typical_duration_seconds"] == 36000  # the fleet's: history's own
        assert report["newcomer"]["update_runs"]["typical_duration_seconds"] == 36000
        assert report["newcomer"]["update_runs"]["typical_basis"] == "fleet"
        for stamp in report.values():
            start_by = stamp["update_runs"]["start_by"]
            assert start_by is None or re.fullmatch(r"20\d\d-\d\d-\d\d", start_by["date"])
        assert http_get(f"{exporter.url}/")[0] == 200
        body = metrics(exporter.url)
        values = [line.rsplit(" ", 1)[1] for line in body.splitlines() if line and not line.startswith("#")]
        assert not [v for v in values if v in ("NaN", "+Inf", "-Inf")]
    table = run_cli("check", f"--config.file={config}")
    assert table.returncode in (0, 3, 4) and "Traceback" not in table.stderr


@pytest.mark.parametrize(
    ("document", "path", "problem"),
    [
        ("refresh_interval: " + "9" * 4000 + "s\n", "refresh_interval", "far too long a duration"),
        ("refresh_interval: 400d\n", "refresh_interval", "must be at most 1d"),
        ("policy: {supported_releases: 10000000}\n", "policy.supported_releases", "must be at most 100"),
        ("policy: {hotfix_grace_period: 99999d}\n", "policy.hotfix_grace_period", "must be at most 3650d"),
        (
            "policy: {exceptions: [{from: 2020-03-18, until: 9999-12-31, supported_releases: 4}]}\n",
            "policy.exceptions[0].until",
            "is not between 2015 and 2099",
        ),
        ("catalog: {timeout: 2h}\n", "catalog.timeout", "must be at most 10m"),
    ],
)
def test_absurd_configuration_values_are_refused_with_their_key_path(tmp_path, document, path, problem):
    config = write(tmp_path / "absurd.yml", document + "stamps: [{name: a, version: 1.2506.2.24}]\n")
    result = run_cli("--config.check", f"--config.file={config}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{config}: {path}: " in result.stderr and problem in result.stderr


def test_a_reload_with_an_absurd_value_is_refused_and_said_so_while_stamps_keep_refreshing(tmp_path, fake, pki):
    stamp = healthy("west")
    config = config_for(tmp_path, fake, pki, [stamp], static=False)
    good = config.read_text()
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        config.write_text(
            "policy: {exceptions: [{from: 2020-03-18, until: 9999-12-31, supported_releases: 4}]}\n" + good
        )
        status, body = http_post(f"{exporter.url}/-/reload")
        assert status >= 400 and b"policy.exceptions[0].until" in body
        after = metrics(exporter.url)
        assert sample(after, "azurestack_exporter_config_last_reload_successful") == 0
        assert sample(after, "azurestack_policy_supported_releases") == 3  # the old configuration serves
        stamp.current_version = "1.2601.1.14"  # reads go on under the old configuration
        stamp.updates = [Update("1.2601.1.14", "Installed")]
        assert until(lambda: sample(metrics(exporter.url), "azurestack_stamp_versions_behind", stamp="west") == 0)


# ---------------------------------------------------------------- 4. one stamp moves others


def test_builds_of_unknown_releases_between_known_ones_move_no_other_stamp(tmp_path, fake, pki):
    """Offered 2502, 2503 and 2504 (none exists): believed by nobody else, flagged on that stamp."""
    liar = healthy("liar", "1.2506.2.24")
    liar.updates = [Update("1.2506.2.24", "Installed")] + [Update(f"1.25{m:02d}.0.1", "Ready") for m in (2, 3, 4)]
    n2 = healthy("n2", "1.2501.1.47")
    config = config_for(tmp_path, fake, pki, [liar, n2], static=False)
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        body = metrics(exporter.url)
        assert sample(body, "azurestack_stamp_versions_behind", stamp="n2") == 2
        assert sample(body, "azurestack_stamp_in_support", stamp="n2") == 1
        assert sample(body, "azurestack_stamp_versions_behind", stamp="liar") == 1
        for month in (2, 3, 4):
            build = f"1.25{month:02d}.0.1"
            assert sample(body, "azurestack_release_info", update_version=f"25{month:02d}") is None
            assert sample(body, "azurestack_stamp_unknown_build_info", stamp="liar", build=build,
                          reason="release_unknown") == 1  # fmt: skip
        report = stamps_json(exporter.url)
        assert [u["build"] for u in report["liar"]["unknown_builds"]] == ["1.2502.0.1", "1.2503.0.1", "1.2504.0.1"]
        assert report["n2"]["unknown_builds"] == []
        assert (
            "1.2503.0.1: update version 2503 is no release any catalog source knows"
            in http_get(f"{exporter.url}/")[2].decode()
        )


def test_a_new_release_one_stamp_is_offered_is_believed_for_everyone(tmp_path, fake, pki):
    """Consistent with every source (newer than every known release, not beyond this month): evidence."""
    month = time.strftime("%y%m", time.gmtime())
    ahead = healthy("ahead", "1.2601.1.14")
    ahead.updates = [Update("1.2601.1.14", "Installed"), Update(f"1.{month}.0.7", "Ready")]
    n2 = healthy("n2", "1.2506.3.30")
    config = config_for(tmp_path, fake, pki, [ahead, n2], static=False)
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        body = metrics(exporter.url)
        assert sample(body, "azurestack_release_info", update_version=month, source="observed", build="") == 1
        assert sample(body, "azurestack_stamp_versions_behind", stamp="n2") == 2
        assert sample(body, "azurestack_stamp_unknown_build_info", stamp="ahead", build=f"1.{month}.0.7",
                      reason="release_unknown") is None  # fmt: skip


# ---------------------------------------------------------------- 5. runs dated in the future


def test_a_run_dated_in_the_future_has_its_date_refused_and_is_not_the_last_run(tmp_path, fake, pki):
    stamp = healthy("west")
    stamp.runs = {"1.2506.2.24": [Run("InProgress", "9998-01-01T00:00:00Z", "PT1H"), Run("Succeeded", NOW_ISO, "PT9H")]}
    stamp.last_checked = "9998-01-01T00:00:00"
    config = config_for(tmp_path, fake, pki, [stamp], static=False)
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        report = stamps_json(exporter.url)["west"]
        assert report["update_runs"]["last"]["state"] == "Succeeded"
        assert report["last_checked"] is None
        assert len(report["refused_values"]) == 2
        assert "lastChecked 9998-01-01T00:00:00Z is in the future" in report["refused_values"]
        body = metrics(exporter.url)
        assert sample(body, "azurestack_stamp_refused_values", stamp="west") == 2
        assert sample(body, "azurestack_stamp_last_checked_timestamp_seconds", stamp="west") is None
        assert "refused: lastChecked 9998-01-01T00:00:00Z is in the future" in http_get(f"{exporter.url}/")[2].decode()


# ---------------------------------------------------------------- 6. enormous answers


def test_a_stamp_listing_144000_updates_goes_down_with_a_reason_and_costs_nothing(tmp_path, fake, pki):
    huge = healthy("huge")
    huge.faults.compact_updates = 24_000  # about 1.7 MB a page: under the byte bound
    huge.faults.compact_pages = 6
    other = healthy("other")
    config = config_for(tmp_path, fake, pki, [huge, other], static=False, timeout="20s")
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        assert until(lambda: stamps_json(exporter.url)["huge"]["error"])
        report = stamps_json(exporter.url)
        assert report["huge"]["up"] is False and report["huge"]["error"].startswith("size: updates list has more than")
        assert report["other"]["up"] is True
        status, _, raw = http_get(f"{exporter.url}/metrics")
        assert status == 200 and len(raw) < 5 * 1024 * 1024
        assert sample(raw.decode(), "azurestack_stamp_collection_errors_total", stamp="huge", reason="size") >= 1
        assert rss_mib(exporter.process.pid) < 256


# ---------------------------------------------------------------- 10. check prints no terminal controls


def test_check_escapes_control_characters_a_stamp_sends(tmp_path, fake, pki):
    """An ARM error message is the stamp's own text: it must not recolour, clear or forge the table."""
    forger = healthy("forger")
    forger.faults.status = 500
    forger.faults.message = "\x1b[2J\x1b[32mall good\x1b[0m\nwest  1.2601.1.14  2601  0  in support"
    config = config_for(tmp_path, fake, pki, [forger], static=False)
    result = run_cli("check", f"--config.file={config}", timeout=120)
    assert result.returncode == 3
    assert "\x1b" not in result.stdout and "\x1b" not in result.stderr
    forged = [line for line in result.stdout.splitlines() if line.startswith("west ")]
    assert forged == []
    assert "\ufffd[2J\ufffd[32mall good\ufffd[0m west 1.2601.1.14" in result.stdout  # made printable, on one line


# ---------------------------------------------------------------- 12. the real shapes of a failed run


def test_a_failed_run_recorded_without_time_started_shows_its_step_and_error_everywhere(tmp_path, fake, pki):
    """A real failed hotfix run (issue #15395 of Azure/azure-powershell, an ASDK): no timeStarted,
    progress only {name, errorMessage, status} (shape U18 in recorded-bodies/README.md)."""
    stamp = healthy("asdk")
    stamp.updates = [Update("1.2506.2.24", "Installed"), Update("1.2506.3.30", "PreparationFailed")]
    stamp.runs = {
        "1.2506.2.24": [Run("Succeeded", NOW_ISO, "PT9H")],
        "1.2506.3.30": [
            Run(
                "Failed",
                None,
                "PT0S",
                progress={
                    "name": "Preparing to install",
                    "errorMessage": "The update self extractor exited with error code 1.",
                    "status": "Failed",
                },
            )
        ],
    }
    config = config_for(tmp_path, fake, pki, [stamp], static=False)
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        last = stamps_json(exporter.url)["asdk"]["update_runs"]["last"]
        assert (last["update"], last["state"], last["started"]) == ("1.2506.3.30", "Failed", None)
        assert (last["failed_step"], last["error"]) == (
            "Preparing to install",
            "The update self extractor exited with error code 1.",
        )
        body = metrics(exporter.url)
        assert sample(body, "azurestack_stamp_last_update_run_info", stamp="asdk", update="1.2506.3.30",
                      state="Failed", failed_step="Preparing to install") == 1  # fmt: skip
        assert sample(body, "azurestack_stamp_last_update_run_error_info", stamp="asdk", update="1.2506.3.30",
                      failed_step="Preparing to install",
                      error="The update self extractor exited with error code 1.") == 1  # fmt: skip
        page = http_get(f"{exporter.url}/")[2].decode()
        assert "Preparing to install" in page and "The update self extractor exited with error code 1." in page


def test_a_refused_reload_says_every_problem_on_the_status_page_and_in_the_json(tmp_path):
    config = write(tmp_path / "c.yml", "stamps: [{name: a, version: 1.2601.1.14}]\n")
    with exporter_process(config, tmp_path=tmp_path) as exporter:
        page = http_get(f"{exporter.url}/")[2].decode()
        assert "configuration loaded 20" in page and 'id="reload"' not in page
        config.write_text("refresh_interval: 5x\nstamps: [{name: a, version: 1.2601.1.14}, {name: a, version: x}]\n")
        status, body = http_post(f"{exporter.url}/-/reload")
        assert status >= 400 and body.decode().startswith(f"{config}: 3 problems:\n")
        page = http_get(f"{exporter.url}/")[2].decode()
        refused = re.search(r'<p class="alert" id="reload">(.*?)</p>', page, re.S).group(1)
        assert "was refused; the configuration loaded" in refused and "keeps serving" in refused
        for path in ("refresh_interval", "stamps[1].version", "stamps[1].name: duplicate stamp name"):
            assert path in refused
        document = json.loads(http_get(f"{exporter.url}/api/v1/stamps")[2])["exporter"]
        assert document["last_reload_successful"] is False and "3 problems" in document["last_reload_error"]
        config.write_text("stamps: [{name: a, version: 1.2601.1.14}]\n")
        assert http_post(f"{exporter.url}/-/reload")[0] == 200
        assert 'id="reload"' not in http_get(f"{exporter.url}/")[2].decode()
