"""The installed console script: exit codes, JSON fields, tables, config errors, no tracebacks."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
from conftest import EXAMPLES, confirmed_catalog, run_cli, write

from exporter import __version__

DEMO = str(EXAMPLES / "demo.yml")


def config(tmp_path, body: str):
    return str(write(tmp_path / "c.yml", body))


def test_version_flag():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"azurestack-exporter {__version__}"


def test_python_dash_m_is_the_same_program():
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--version"], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, f"azurestack-exporter {__version__}")


def test_check_json_of_the_demo(tmp_path):
    result = run_cli("check", f"--config.file={DEMO}", "--output=json")
    assert result.returncode == 1, result.stderr  # dub-lab is out of support
    report = json.loads(result.stdout)
    assert set(report) >= {"generated_at", "policy", "catalog", "stamps"}
    assert report["policy"]["supported_releases"] == 3
    assert report["catalog"]["latest"] == "2601"
    assert report["catalog"]["releases"][0] == "1802" and report["catalog"]["releases"][-1] == "2601"
    stamps = {s["stamp"]: s for s in report["stamps"]}
    assert list(stamps) == ["ams-prod", "fra-prod", "lon-dr", "dub-lab"]
    fra = stamps["fra-prod"]
    assert fra == fra | {
        "source": "static",
        "up": True,
        "version": "1.2506.0.15",
        "update_version": "2506",
        "versions_behind": 1,
        "in_support": True,
        "latest_hotfix_installed": False,
        "update_path": ["2601"],
        "out_of_support_since": None,
        "error": None,
    }
    assert fra["next_update"] == {"kind": "hotfix", "update_version": "2506", "build": "1.2506.3.30"}
    assert fra["latest_hotfix"] == "1.2506.3.30" and fra["missing_hotfixes"] == ["1.2506.2.24", "1.2506.3.30"]
    assert fra["pending_hotfix_released"] == "2025-09-22"  # 1.2506.2.24, documented by 2025-09-22
    assert fra["hotfix_overdue"] is True
    assert fra["support_expected_end"]["estimate"] is True
    catalog = report["catalog"]
    assert (catalog["newest_release_date"], catalog["newest_release_date_basis"]) == ("2026-04-08", "documented_by")
    # Confirmed on 2026-05-13, when the next release was expected on 2026-09-29: stale from then.
    assert (catalog["confirmed"], catalog["stale_after"]) == (
        "2026-05-13T00:00:00Z",
        {"date": "2026-09-29", "estimate": True},
    )
    assert catalog["stale"] is (dt.datetime.now(dt.UTC).date() >= dt.date(2026, 9, 29))
    forecast = catalog["forecast"]
    assert forecast["estimate"] is True and forecast["cadence_days"] == 174.0
    assert forecast["due_by_cadence"] == "2026-09-29"
    assert forecast["next_release_expected"] >= report["generated_at"][:10]  # never in the past
    assert (forecast["backtest_median_error_days"], forecast["backtest_p90_error_days"]) == (27.0, 73.8)
    dub = stamps["dub-lab"]
    assert (dub["versions_behind"], dub["in_support"], dub["verdict"]) == (3, False, "out_of_support")
    assert dub["update_path"] == ["2501", "2506", "2601"]
    assert dub["superseded_by"] == "2601"
    assert dub["out_of_support_since"] == "2026-04-08" and dub["support_expected_end"] is None
    assert stamps["lon-dr"]["verdict"] == "ending_soon"
    assert stamps["ams-prod"]["latest_hotfix_installed"] is True
    assert stamps["ams-prod"]["next_update"] is None


def test_check_table_of_the_demo():
    result = run_cli("check", f"--config.file={DEMO}")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "Latest release: 2601 (31 releases known); supported: N, N-1, N-2"
    assert lines[1].startswith(
        "Catalog: confirmed complete on 2026-05-13 by bundled exporter/data/catalog.yml; "
        "newest known release 2601, documented by 2026-04-08 ("
    )
    assert "next release expected about 20" in lines[1] and "(forecast" in lines[1]
    assert "STALE since ~2026-09-29" in lines[1] or "counts as stale from ~2026-09-29" in lines[1]
    assert lines[2] == "Catalog sources: bundled exporter/data/catalog.yml"
    assert lines[4].split() == [
        *("STAMP", "VERSION", "UPDATE", "BEHIND", "VERDICT", "SUPPORT", "ENDS", "NEXT", "UPDATE", "READY")
    ]
    rows = {line.split()[0]: line for line in lines[5:] if line and not line.startswith("~")}
    assert rows["ams-prod"].split()[1:5] == ["1.2601.1.14", "2601", "0", "in"]
    assert "up to date" in rows["ams-prod"] and " ~20" in rows["ams-prod"]
    assert "hotfix 1.2506.3.30 (overdue), then 1 update" in rows["fra-prod"]
    assert "ended 2026-04-08" in rows["dub-lab"]
    assert any(line.startswith("~ dates are forecasts") and "27 days (median)" in line for line in lines)
    assert "ending soon" in rows["lon-dr"]
    assert "OUT OF SUPPORT" in rows["dub-lab"] and "2501 (1.2501.0.21), then 2 more updates" in rows["dub-lab"]


def test_check_exit_0_when_every_stamp_is_in_support_and_the_knowledge_is_fresh(tmp_path):
    body = "stamps: [{name: a, version: 1.2601.0.4}, {name: b, version: 1.2501.0.21}]\n"
    result = run_cli("check", "--config.file", config(tmp_path, confirmed_catalog(tmp_path) + body))
    assert result.returncode == 0, result.stdout + result.stderr
    stale = run_cli("check", "--config.file", config(tmp_path, body))  # the bundled catalog alone: stale now
    assert stale.returncode == 4, stale.stdout + stale.stderr


def test_check_exit_1_when_a_stamp_is_out_of_support(tmp_path):
    result = run_cli(
        "check",
        "--config.file",
        config(tmp_path, "stamps: [{name: a, version: 1.2601.0.4}, {name: b, version: 1.2408.0.19}]\n"),
    )
    assert result.returncode == 1


def test_check_exit_3_when_a_stamp_cannot_be_evaluated(tmp_path):
    path = config(tmp_path, "stamps: [{name: ok, version: 1.2601.0.4}, {name: ancient, version: 1.0.171201.1}]\n")
    result = run_cli("check", "--config.file", path, "--output", "json")
    assert result.returncode == 3
    stamps = {s["stamp"]: s for s in json.loads(result.stdout)["stamps"]}
    assert stamps["ancient"]["in_support"] is None
    assert "older than every release" in stamps["ancient"]["error"]
    table = run_cli("check", "--config.file", path)
    assert table.returncode == 3
    assert "ancient: build 1.0.171201.1 is older than every release the catalog knows" in table.stdout


def test_check_exit_1_wins_over_3(tmp_path):
    path = config(tmp_path, "stamps: [{name: old, version: 1.2306.4.102}, {name: ancient, version: 1.0.171201.1}]\n")
    assert run_cli("check", "--config.file", path).returncode == 1


def test_supported_releases_from_config_changes_the_verdict(tmp_path):
    body = confirmed_catalog(tmp_path) + "policy: {supported_releases: 4}\nstamps: [{name: b, version: 1.2408.0.19}]\n"
    result = run_cli("check", "--config.file", config(tmp_path, body), "--output=json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["stamps"][0]["verdict"] == "ending_soon"


def test_inline_release_newer_than_bundled_counts(tmp_path):
    body = """
    catalog:
      releases: [{update: "2608", build: 1.2608.0.3, released: 2026-10}]
    stamps: [{name: b, version: 1.2501.0.21}]
    """
    result = run_cli("check", "--config.file", config(tmp_path, body), "--output=json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["catalog"]["latest"] == "2608"
    assert report["catalog"]["latest_released"] == "2026-10"
    assert report["stamps"][0]["versions_behind"] == 3
    assert [s["source"] for s in report["catalog"]["sources"]] == ["inline", "bundled"]


def test_a_typed_in_build_ahead_of_the_catalog_is_flagged_and_moves_no_other_stamp(tmp_path):
    """A build typed into the configuration may be a typo: believed for its stamp, never for the fleet."""
    body = "stamps: [{name: new, version: 1.2608.0.3}, {name: old, version: 1.2501.1.47}]\n"
    result = run_cli("check", "--config.file", config(tmp_path, body), "--output=json")
    report = json.loads(result.stdout)
    assert report["catalog"]["latest"] == "2601" and "2608" not in report["catalog"]["releases"]
    stamps = {s["stamp"]: s for s in report["stamps"]}
    assert (stamps["new"]["versions_behind"], stamps["new"]["ahead_of_catalog"]) == (0, True)
    assert [(u["build"], u["reason"], u["typed_in"]) for u in stamps["new"]["unknown_builds"]] == [
        ("1.2608.0.3", "release_unknown", True)
    ]
    assert stamps["old"]["versions_behind"] == 2 and stamps["old"]["in_support"] is True
    assert stamps["old"]["unknown_builds"] == []
    table = run_cli("check", "--config.file", config(tmp_path, body))
    assert "new: 1.2608.0.3: update version 2608 is no release any catalog source knows; typed in" in table.stdout
    assert result.returncode != 1


def test_catalog_bundled_false_uses_only_configured_releases(tmp_path):
    body = """
    catalog:
      bundled: false
      releases: [{update: "2501"}, {update: "2506"}]
    stamps: [{name: a, version: 1.2501.0.21}]
    """
    report = json.loads(run_cli("check", "--config.file", config(tmp_path, body), "--output=json").stdout)
    assert report["catalog"]["releases"] == ["2501", "2506"]
    assert report["stamps"][0]["versions_behind"] == 1


@pytest.mark.parametrize("command", [["check"], []])
def test_bad_config_exits_2_with_one_clear_line_and_no_traceback(tmp_path, command):
    path = config(
        tmp_path,
        "stamps:\n  - name: west\n    admin:\n      endpoint: https://a.example\n"
        "      tenant: adfs\n      client_secret_env: HOME\n",
    )
    result = run_cli(*command, f"--config.file={path}", "--config.check" if not command else "--output=table")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == f"azurestack-exporter: configuration error: {path}: stamps[0].admin.client_id: required key missing"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "stamps: [{name: a, version: 1.2408.1.50}, {name: a, version: 1.2408.1.50}]",
            "stamps[1].name: duplicate stamp name",
        ),
        (
            "stamps: [{name: a, version: 1.2408.1}]",
            "stamps[0].version: version '1.2408.1' is not an Azure Stack Hub build",
        ),
        ("stamps: [{name: a, version: 1.2408.1.50, bogus: 1}]", "stamps[0].bogus: unknown key"),
        ("stamps: [{name: a, version: 1.2408.1.50}\n", "YAML error"),
        ("catalog: {releases: [{update: '2408', released: 2024-13-01}]}", "catalog.releases[0].released"),
        ("\x00\x01", "YAML error"),
    ],
)
def test_server_start_with_bad_config_exits_2(tmp_path, body, fragment):
    result = run_cli(f"--config.file={config(tmp_path, body)}", "--web.listen-address=127.0.0.1:0", timeout=20)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path):
    result = run_cli("check", f"--config.file={tmp_path / 'absent.yml'}")
    assert result.returncode == 2
    assert f"{tmp_path / 'absent.yml'}: cannot read file: No such file or directory" in result.stderr


def test_config_check_valid(tmp_path):
    result = run_cli(f"--config.file={DEMO}", "--config.check")
    assert result.returncode == 0
    assert result.stdout.strip() == f"{DEMO}: configuration is valid: 4 stamps (4 static, 0 admin)"


def test_config_check_never_prints_a_secret(tmp_path):
    (tmp_path / "secret").write_text("Sup3r-Secret-Value")
    body = (
        "stamps: [{name: w, admin: {endpoint: 'https://a.example', tenant: adfs, client_id: x,"
        " client_secret_file: secret}}]\n"
    )
    result = run_cli(f"--config.file={config(tmp_path, body)}", "--config.check")
    assert result.returncode == 0
    assert "Sup3r" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--no-such-flag"],
        ["check", "--output=xml"],
        ["--log.level=verbose"],
        ["--web.listen-address=10132"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    result = run_cli(*args, f"--config.file={DEMO}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_check_json_log_format_keeps_stdout_pure_json():
    result = run_cli("check", f"--config.file={DEMO}", "--output=json", "--log.format=json", "--log.level=debug")
    json.loads(result.stdout)


def test_check_json_knows_the_latest_hotfixes_and_base_builds_of_the_audit(tmp_path):
    """One hotfix short is not up to date, and the next update names the right base build."""
    stamps = {
        "a": "1.2506.2.24",  # one short of 1.2506.3.30
        "b": "1.2601.1.13",  # one short of 1.2601.1.14
        "c": "1.2005.47.135",  # one short of 1.2005.48.137
        "d": "1.2108.2.130",  # next: 2206, base 1.2206.0.6 (not the hotfix 1.2206.1.24)
        "e": "1.1907.29.80",  # next: 1908, base 1.1908.4.33 (not the kit's 1.1908.0.20)
        "f": "1.2506.3.30",  # next: 2601, base 1.2601.0.4
    }
    body = "stamps:\n" + "".join(f"  - {{name: {name}, version: {version}}}\n" for name, version in stamps.items())
    result = run_cli("check", "--config.file", config(tmp_path, body), "--output=json")
    assert result.returncode == 1, result.stderr  # c, d and e are out of support
    report = {s["stamp"]: s for s in json.loads(result.stdout)["stamps"]}
    for name, latest in [("a", "1.2506.3.30"), ("b", "1.2601.1.14"), ("c", "1.2005.48.137")]:
        assert (report[name]["latest_hotfix"], report[name]["latest_hotfix_installed"]) == (latest, False)
        assert report[name]["next_update"] == {"kind": "hotfix", "update_version": latest[2:6], "build": latest}
    assert report["d"]["next_update"] == {"kind": "update", "update_version": "2206", "build": "1.2206.0.6"}
    assert report["e"]["next_update"] == {"kind": "update", "update_version": "1908", "build": "1.1908.4.33"}
    assert report["f"]["next_update"] == {"kind": "update", "update_version": "2601", "build": "1.2601.0.4"}
    assert report["f"]["latest_hotfix_installed"] is True


def test_check_refuses_a_configuration_with_no_stamps(tmp_path):
    """A gate that passes with nothing monitored would be worse than no gate."""
    result = run_cli("check", "--config.file", config(tmp_path, "refresh_interval: 5m\n"))
    assert result.returncode == 2
    assert "configures no stamps: check has nothing to vouch for" in result.stderr
    valid = run_cli("--config.check", "--config.file", config(tmp_path, "refresh_interval: 5m\n"))
    assert valid.returncode == 0 and "warning: no stamps are configured: nothing is monitored" in valid.stderr
