"""The demo of docs/development.md: the fake admin endpoint run alone, read by the exporter.

A newcomer's first look at admin stamps is this demo, so each stamp must tell a story a
real stamp could: the update location's state, the update offered, the last run, its start
and its duration, and the path to the latest release agree with one another, and with the
table the docs give. The fake runs as its own process on a chosen port; the exporter reads
it over HTTPS as it reads real stamps.
"""

from __future__ import annotations

import datetime
import json
import re
import socket
import subprocess
import sys
import time

from conftest import ROOT, free_port, run_cli
from processes import start, stop

DOC = ROOT / "docs" / "development.md"
FAILED_STATES = ("UpdateFailed", "PreparationFailed", "NeedsAttention")
COLUMNS = ("stamp", "runs", "update state", "offered", "last update run", "path to the latest", "behind", "verdict")


def documented_stories() -> dict[str, list[list[str]]]:
    """The demo's table in docs/development.md: per stamp, the backquoted values of each column."""
    section = DOC.read_text().split("## Trying it without a stamp")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert tuple(cell.strip() for cell in lines[0].strip("|").split("|")) == COLUMNS
    rows = [[re.findall(r"`([^`]*)`", cell) for cell in line.strip("|").split("|")] for line in lines[1:]]
    return {row[0][0]: row for row in rows if row[0]}


def seen(stamp: dict) -> list[list[str]]:
    """What the exporter reports of a stamp, in the columns of the docs' table."""
    last = stamp["update_runs"]["last"] or {}
    run = [last.get("update"), last.get("state")] + ([last["failed_step"]] if last.get("failed_step") else [])
    return [
        [stamp["stamp"]],
        [stamp["version"]],
        [stamp["update_state"]],
        [part for update in stamp["updates_available"] for part in (update["version"], update["state"])],
        [part for part in run if part],
        list(stamp["update_path"]),
        [str(stamp["versions_behind"])],
        [stamp["verdict"]],
    ]


def seconds(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso).timestamp()


def test_the_demo_serves_on_its_port_and_each_stamp_tells_the_documented_consistent_story(tmp_path):
    documented = documented_stories()
    assert len(documented) == 4  # one row per story
    port, log = free_port(), tmp_path / "fake.log"
    demo = tmp_path / "demo"
    fake = start(
        [sys.executable, str(ROOT / "tests" / "fake_azurestack.py"), "--stamps", "4", "--dir", str(demo),
         "--port", str(port)],
        log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (demo / "exporter.yml").exists():
            assert fake.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert f"serving 4 stamps at https://127.0.0.1:{port};" in log.read_text()
        config = demo / "exporter.yml"
        assert config.read_text().count(f"endpoint: https://127.0.0.1:{port}/stamps/") == 4
        result = run_cli("check", f"--config.file={config}", "--output=json")
        assert result.returncode == 1, result.stderr  # stamp0002 is out of support
        report = json.loads(result.stdout)
    finally:
        stop(fake)
    now = seconds(report["generated_at"])
    stamps = {stamp["stamp"]: stamp for stamp in report["stamps"]}
    assert sorted(stamps) == sorted(documented)
    for name, stamp in stamps.items():
        assert stamp["up"] is True and stamp["error"] is None, (name, stamp["error"])
        assert seen(stamp) == documented[name], name
        last, offered = stamp["update_runs"]["last"], stamp["updates_available"]
        # One package at a time, in Microsoft's order: the offer is the next release's base build.
        if offered:
            assert [u["version"] for u in offered] == [stamp["next_update"]["build"]], name
            assert stamp["next_update"]["kind"] == "update", name
        else:
            assert stamp["versions_behind"] == 0 and stamp["update_state"] == "AppliedSuccessfully", name
        # The location's state agrees with the last run, as a real stamp's does.
        assert (stamp["update_state"] in FAILED_STATES) == (last["state"] == "Failed"), name
        assert (stamp["update_state"] == "UpdateInProgress") == (last["state"] == "InProgress"), name
        started = seconds(last["started"])
        if last["state"] == "InProgress":  # its duration is the time since it started
            assert abs(now - started - last["duration_seconds"]) < 60, (name, last)
        else:
            assert started + last["duration_seconds"] <= now, (name, last)
        if last["state"] == "Succeeded":  # the stamp was last updated when that run ended
            assert abs(seconds(stamp["last_updated"]) - started - last["duration_seconds"]) < 1, (name, last)


def test_the_demo_refuses_a_port_in_use(tmp_path):
    """--port names the port or fails, saying so: it does not quietly serve elsewhere."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "fake_azurestack.py"), "--dir", str(tmp_path / "demo"),
             "--port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2 and f"cannot serve on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "demo" / "exporter.yml").exists()
