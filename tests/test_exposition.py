"""/metrics of the running exporter: golden exposition, promtool lint, formats, endpoints."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, exporter_process, http_get, http_post, require_tool, write

GOLDEN = Path(__file__).parent / "golden" / "demo.prom"
# Samples whose value is the time of the run; the golden file holds a placeholder.
VOLATILE = (
    "azurestack_stamp_last_success_timestamp_seconds",
    "azurestack_catalog_source_last_success_timestamp_seconds",
    "azurestack_exporter_config_last_reload_success_timestamp_seconds",
    "azurestack_exporter_last_evaluation_timestamp_seconds",
    # Forecasts move with the wait once Microsoft's next release is late: tested on their own below.
    "azurestack_stamp_support_expected_end_timestamp_seconds",
    "azurestack_catalog_next_release_expected_timestamp_seconds",
)


def normalise(exposition: str) -> str:
    """Keep the azurestack_* families; replace run-time timestamps with <time>."""
    kept = []
    for line in exposition.splitlines():
        name = line.split()[2] if line.startswith("#") else re.split(r"[{ ]", line, maxsplit=1)[0]
        if not name.startswith("azurestack_"):
            continue
        if not line.startswith("#") and name in VOLATILE:
            line = line.rsplit(" ", 1)[0] + " <time>"
        kept.append(line)
    return "\n".join(kept) + "\n"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with exporter_process(EXAMPLES / "demo.yml", tmp_path=tmp_path_factory.mktemp("demo")) as running:
        yield running


def scrape(url: str, **headers: str) -> str:
    status, _, body = http_get(f"{url}/metrics", headers=headers)
    assert status == 200
    return body.decode()


def test_demo_exposition_matches_the_golden_file(demo):
    actual = normalise(scrape(demo.url))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(actual)
    assert actual == GOLDEN.read_text()


def test_promtool_check_metrics_finds_nothing(demo):
    promtool = require_tool("promtool")
    body = scrape(demo.url)
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_in_support_and_versions_behind_per_stamp(demo):
    body = scrape(demo.url)
    for stamp, behind, support in [("ams-prod", 0, 1), ("fra-prod", 1, 1), ("lon-dr", 2, 1), ("dub-lab", 3, 0)]:
        assert f'azurestack_stamp_versions_behind{{stamp="{stamp}"}} {behind}.0' in body
        assert f'azurestack_stamp_in_support{{stamp="{stamp}"}} {support}.0' in body
    assert 'azurestack_stamp_latest_hotfix_installed{stamp="fra-prod"} 0.0' in body
    assert 'azurestack_stamp_latest_hotfix_installed{stamp="ams-prod"} 1.0' in body
    assert "process_resident_memory_bytes" in body


def samples(body: str, name: str) -> dict[str, float]:
    """``{stamp or "": value}`` of one metric in an exposition."""
    out = {}
    for line in body.splitlines():
        match = re.match(rf'{name}(?:{{stamp="([^"]*)"}})? (\S+)$', line)
        if match:
            out[match.group(1) or ""] = float(match.group(2))
    return out


def test_bundled_dates_give_freshness_and_a_forecast_with_no_configuration(demo):
    body = scrape(demo.url)
    # 2601, documented by 2026-04-08: the newest dated release of the bundled catalog.
    assert samples(body, "azurestack_catalog_latest_release_timestamp_seconds") == {"": 1775606400.0}
    assert samples(body, "azurestack_stamp_out_of_support_since_timestamp_seconds") == {"dub-lab": 1775606400.0}
    # fra-prod lacks 1.2506.2.24 (documented by 2025-09-22): the oldest hotfix it misses with a date.
    assert samples(body, "azurestack_stamp_pending_hotfix_released_timestamp_seconds") == {"fra-prod": 1758499200.0}
    cadence = samples(body, "azurestack_catalog_release_interval_seconds")[""]
    next_release = samples(body, "azurestack_catalog_next_release_expected_timestamp_seconds")[""]
    assert cadence == 174 * 86400  # median of 2408->2501, 2501->2506, 2506->2601
    evaluated = samples(body, "azurestack_exporter_last_evaluation_timestamp_seconds")[""]
    # Due 174 days after 2601; once that day has passed the expectation moves with the wait, and
    # never lies in the past.
    assert next_release == 1775606400.0 + cadence or next_release > evaluated
    end = samples(body, "azurestack_stamp_support_expected_end_timestamp_seconds")
    assert set(end) == {"ams-prod", "fra-prod", "lon-dr"}  # dub-lab is out of support: no forecast
    first = next_release
    assert first >= evaluated
    assert end["lon-dr"] == first  # N-2: the next release ends its support
    assert end["fra-prod"] == first + cadence
    assert end["ams-prod"] == first + 2 * cadence


def test_openmetrics_format_when_asked(demo):
    status, headers, body = http_get(f"{demo.url}/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    assert 'azurestack_stamp_in_support{stamp="dub-lab"} 0.0' in text
    assert "azurestack_stamp_collection_errors_total" not in text  # static stamps never fail


def test_gzip_when_accepted(demo):
    status, headers, body = http_get(f"{demo.url}/metrics", {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert b"azurestack_stamp_in_support" in gzip.decompress(body)


def test_health_ready_landing_and_api(demo):
    assert http_get(f"{demo.url}/-/healthy")[0] == 200
    assert http_get(f"{demo.url}/-/ready")[0] == 200
    status, headers, body = http_get(f"{demo.url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert '<div class="card bad"><span class="n">1</span>out of support</div>' in page
    assert '<div class="card warn"><span class="n">1</span>ending soon</div>' in page
    assert '<div class="card ok"><span class="n">2</span>in support</div>' in page
    for stamp in ("ams-prod", "fra-prod", "lon-dr", "dub-lab"):
        assert f'id="stamp-{stamp}"' in page
    assert 'href="/metrics"' in page and 'href="/api/v1/stamps"' in page
    assert headers["Content-Security-Policy"].startswith("default-src 'none'; style-src 'self'")
    status, headers, body = http_get(f"{demo.url}/api/v1/stamps")
    assert status == 200 and headers["Content-Type"] == "application/json"
    report = json.loads(body)
    assert [s["verdict"] for s in report["stamps"]] == ["in_support", "in_support", "ending_soon", "out_of_support"]
    assert http_get(f"{demo.url}/nothing-here")[0] == 404


def test_head_answers_headers_only_and_the_connection_stays_in_step(demo):
    """A HEAD answer with a body would be read as the start of the next answer on the connection."""
    import socket

    host, port = demo.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"HEAD /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, get = answer.split(b"HTTP/1.1 ", 2)[1:]
    assert head.startswith(b"200 ") and head.endswith(b"Content-Length: 8\r\n\r\n")
    assert get.startswith(b"200 ") and get.endswith(b"\r\n\r\nHealthy\n")


def test_custom_telemetry_path(tmp_path):
    with exporter_process(EXAMPLES / "demo.yml", "--web.telemetry-path=/stats", tmp_path=tmp_path) as running:
        assert http_get(f"{running.url}/stats")[0] == 200
        assert http_get(f"{running.url}/metrics")[0] == 404


def test_reload_applies_a_good_config_and_refuses_a_bad_one(tmp_path):
    config = write(tmp_path / "c.yml", "stamps: [{name: east, version: 1.2408.1.50}]\n")
    with exporter_process(config, tmp_path=tmp_path) as running:
        assert 'azurestack_stamp_in_support{stamp="east"} 0.0' in scrape(running.url)
        write(config, "stamps: [{name: east, version: 1.2601.0.4}]\n")
        assert http_post(f"{running.url}/-/reload") == (200, b"configuration reloaded\n")
        body = scrape(running.url)
        assert 'azurestack_stamp_in_support{stamp="east"} 1.0' in body
        assert "azurestack_exporter_config_last_reload_successful 1.0" in body

        write(config, "stamps: [{name: east, version: not-a-version}]\n")
        status, message = http_post(f"{running.url}/-/reload")
        assert status == 500
        assert b"stamps[0].version" in message
        body = scrape(running.url)
        assert 'azurestack_stamp_in_support{stamp="east"} 1.0' in body  # the old config keeps serving
        assert (
            'azurestack_stamp_info{oem_version="",source="static",stamp="east",update_version="2601",version="1.2601.0.4"}'
            in body
        )
        assert "azurestack_exporter_config_last_reload_successful 0.0" in body
        assert http_get(f"{running.url}/-/reload")[0] == 405


def test_sigterm_stops_cleanly(tmp_path):
    with exporter_process(EXAMPLES / "demo.yml", tmp_path=tmp_path) as running:
        running.process.terminate()
        assert running.process.wait(timeout=10) == 0
        assert 'msg="Shutting down"' in running.log()


def test_json_logs(tmp_path):
    with exporter_process(EXAMPLES / "demo.yml", "--log.format=json", tmp_path=tmp_path) as running:
        pass
    lines = [json.loads(line) for line in running.log().splitlines() if line.strip()]
    assert lines[0]["msg"] == "Loaded configuration" and lines[0]["stamps"] == 4
    assert all({"ts", "level", "msg"} <= set(line) for line in lines)


def test_slow_and_idle_clients_do_not_block_other_scrapers(demo):
    import socket

    host, port = demo.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port))) for _ in range(20)]
    half = socket.create_connection((host, int(port)))
    half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finishes its request
    reader = socket.create_connection((host, int(port)))
    reader.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)  # and never reads the answers
    try:
        for _ in range(10):
            status, _, body = http_get(f"{demo.url}/metrics", timeout=5)
            assert status == 200 and b"azurestack_stamp_in_support" in body
    finally:
        for sock in [*idle, half, reader]:
            sock.close()


def test_gauges_follow_the_configured_policy_and_the_dated_catalog(tmp_path):
    """Under supported_releases: 4, N-3 is in support and ending soon; the pending hotfix is the
    oldest dated one missing, not the newest."""
    config = write(
        tmp_path / "c.yml",
        """
        policy:
          supported_releases: 4
          hotfix_grace_period: 30d
        stamps:
          - {name: n3, version: 1.2408.1.50}
          - {name: n4, version: 1.2406.1.23}
          - {name: short, version: 1.2601.0.4}
        """,
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        body = scrape(running.url)
    assert samples(body, "azurestack_policy_supported_releases") == {"": 4.0}
    assert samples(body, "azurestack_policy_hotfix_grace_period_seconds") == {"": 30 * 86400.0}
    assert samples(body, "azurestack_stamp_in_support") == {"n3": 1.0, "n4": 0.0, "short": 1.0}
    assert samples(body, "azurestack_stamp_versions_behind") == {"n3": 3.0, "n4": 4.0, "short": 0.0}
    # n4 left support with 2601 (documented by 2026-04-08), the fourth release after 2406.
    assert samples(body, "azurestack_stamp_out_of_support_since_timestamp_seconds") == {"n4": 1775606400.0}
    # short lacks 1.2601.1.10 (2026-04-29), .1.13 and .1.14: the oldest is what is overdue.
    assert samples(body, "azurestack_stamp_pending_hotfix_released_timestamp_seconds") == {"short": 1777420800.0}
    # n3 is at the last position of an N-3 policy: its support ends with the next release.
    ends = samples(body, "azurestack_stamp_support_expected_end_timestamp_seconds")
    assert set(ends) == {"n3", "short"} and ends["n3"] < ends["short"]


def test_the_2020_exception_widens_the_gauges_while_in_force(tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    config = write(
        tmp_path / "c.yml",
        f"""
        policy:
          exceptions:
            - {{from: {today - dt.timedelta(days=1)}, until: {today + dt.timedelta(days=1)}, supported_releases: 4,
               reason: "as in 2020: temporary N-3"}}
        stamps: [{{name: n3, version: 1.2408.1.50}}]
        """,
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        body = scrape(running.url)
    assert samples(body, "azurestack_policy_supported_releases") == {"": 4.0}
    assert samples(body, "azurestack_stamp_in_support") == {"n3": 1.0}


def test_sigterm_lets_a_scrape_being_served_finish(tmp_path):
    """A scraper reading a large exposition slowly when SIGTERM arrives still gets all of it."""
    import socket

    stamps = "".join(f"  - {{name: stamp-{i:05}, version: 1.2506.0.15}}\n" for i in range(6000))
    config = write(tmp_path / "c.yml", "stamps:\n" + stamps)
    with exporter_process(config, tmp_path=tmp_path) as running:
        host, port = running.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader's small window
        sock.settimeout(15)
        sock.connect((host, int(port)))
        with sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = sock.recv(4096)
            time.sleep(1)  # the server is now blocked writing the rest
            running.process.terminate()
            while chunk := sock.recv(65536):
                answer += chunk
        assert running.process.wait(timeout=15) == 0
    head, body = answer.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    assert length > 4_000_000 and len(body) == length
    assert b'azurestack_stamp_in_support{stamp="stamp-05999"}' in body
