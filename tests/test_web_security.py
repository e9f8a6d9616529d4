"""Operating safely: TLS, client certificates, basic auth, headers, reload, /probe, status page."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest
from conftest import EXAMPLES, exporter_process, http_get, http_post, require_tool, run_cli, write
from pki import make_ca, make_client_cert, make_server_cert

DEMO = EXAMPLES / "demo.yml"
PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(__file__).parent / "artifacts"


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca("exporter CA")
    (d / "ca.pem").write_bytes(ca.cert_pem)
    make_server_cert(ca).write(d, "server")
    client = make_client_cert("prometheus", ca)
    client.write(d, "client")
    stranger = make_client_cert("stranger", make_ca("another CA"))
    stranger.write(d, "stranger")
    make_client_cert("prometheus", ca, sans=["prometheus.example.internal"]).write(d, "allowed")
    names = ("ca.pem", "server.crt", "server.key", "client.crt", "client.key", "stranger.crt", "stranger.key")
    return {name: d / name for name in (*names, "allowed.crt", "allowed.key")}


def tls_get(
    url: str,
    ca: Path,
    cert: tuple[Path, Path] | None = None,
    path: str = "/metrics",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=str(ca))
    if cert:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    host, port = url.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def start_https(config: Path, web: Path, tmp_path: Path):
    return exporter_process(config, f"--web.config.file={web}", tmp_path=tmp_path, scheme="https", ready_check=False)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ---------------------------------------------------------------- TLS


def test_tls_serves_https_and_answers_plain_http_with_400(tmp_path, certs):
    web = write(
        tmp_path / "web.yml",
        f"""
        tls_server_config:
          cert_file: {certs["server.crt"]}
          key_file: {certs["server.key"]}
          min_version: TLS12
        http_server_config:
          headers:
            X-Frame-Options: deny
            Strict-Transport-Security: max-age=31536000
    """,
    )
    with start_https(DEMO, web, tmp_path) as running:
        status, headers, body = tls_get(running.url, certs["ca.pem"])
        assert status == 200 and b"azurestack_stamp_in_support" in body
        assert headers["X-Frame-Options"] == "deny"
        assert headers["Strict-Transport-Security"] == "max-age=31536000"
        plain = running.url.replace("https://", "http://")
        status, _, body = http_get(f"{plain}/metrics")
        assert status == 400 and b"HTTP request to an HTTPS server" in body
        # The server presents the configured certificate.
        assert served_certificate(running.url) == (certs["server.crt"]).read_bytes()
        # A client that speaks TLS 1.1 (and could: see the next test) is refused by the server itself.
        with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
            tls11_get(running.url, certs["ca.pem"])
        assert running.process.poll() is None


def tls11_get(url: str, ca: Path) -> int:
    """A client that offers TLS 1.1 only, with OpenSSL's security level lowered so that it can."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    host, port = url.removeprefix("https://").split(":")
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=5)
    try:
        connection.request("GET", "/-/healthy")
        return connection.getresponse().status
    finally:
        connection.close()


def served_certificate(url: str) -> bytes:
    host, port = url.removeprefix("https://").split(":")
    return ssl.get_server_certificate((host, int(port))).encode()


def test_min_version_below_tls12_is_honoured(tmp_path, certs):
    """The positive case of the refusal above: with min_version TLS11 the same client gets in."""
    web = write(
        tmp_path / "web.yml",
        f"""
        tls_server_config:
          cert_file: {certs["server.crt"]}
          key_file: {certs["server.key"]}
          min_version: TLS11
    """,
    )
    with start_https(DEMO, web, tmp_path) as running:
        assert tls11_get(running.url, certs["ca.pem"]) == 200


def test_required_client_certificate(tmp_path, certs):
    web = write(
        tmp_path / "web.yml",
        f"""
        tls_server_config:
          cert_file: {certs["server.crt"]}
          key_file: {certs["server.key"]}
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: {certs["ca.pem"]}
    """,
    )
    with start_https(DEMO, web, tmp_path) as running:
        assert tls_get(running.url, certs["ca.pem"], (certs["client.crt"], certs["client.key"]))[0] == 200
        for cert in (None, (certs["stranger.crt"], certs["stranger.key"])):
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
                tls_get(running.url, certs["ca.pem"], cert)
        assert tls_get(running.url, certs["ca.pem"], (certs["client.crt"], certs["client.key"]))[0] == 200


def test_client_allowed_sans(tmp_path, certs):
    web = write(
        tmp_path / "web.yml",
        f"""
        tls_server_config:
          cert_file: {certs["server.crt"]}
          key_file: {certs["server.key"]}
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: {certs["ca.pem"]}
          client_allowed_sans: [prometheus.example.internal]
    """,
    )
    # A client certificate from the right CA with the allowed SAN gets in; the one without is
    # verified but not allowed.
    allowed = (certs["allowed.crt"], certs["allowed.key"])
    with start_https(DEMO, web, tmp_path) as running:
        assert tls_get(running.url, certs["ca.pem"], allowed)[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            tls_get(running.url, certs["ca.pem"], (certs["client.crt"], certs["client.key"]))
        assert tls_get(running.url, certs["ca.pem"], allowed)[0] == 200


# ---------------------------------------------------------------- basic auth


@pytest.fixture(scope="module")
def hashed() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode()


def test_basic_auth(tmp_path, hashed):
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    with exporter_process(DEMO, f"--web.config.file={web}", tmp_path=tmp_path, ready_check=False) as running:
        status, headers, _ = http_get(f"{running.url}/metrics")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert http_get(f"{running.url}/metrics", basic("prometheus", "wrong"))[0] == 401
        assert http_get(f"{running.url}/metrics", basic("nobody", PASSWORD))[0] == 401
        assert http_get(f"{running.url}/metrics", {"Authorization": "Basic !!!"})[0] == 401
        assert http_get(f"{running.url}/metrics", {"Authorization": "Bearer x"})[0] == 401
        for _ in range(3):  # the first check pays bcrypt, later ones the cache
            status, _, body = http_get(f"{running.url}/metrics", basic("prometheus", PASSWORD))
            assert status == 200 and b"azurestack_stamp_in_support" in body
        for path in ("/", "/api/v1/stamps", "/probe?target=dub-lab", "/static/status.css"):
            assert http_get(f"{running.url}{path}")[0] == 401, path
            assert http_get(f"{running.url}{path}", basic("prometheus", PASSWORD))[0] == 200, path
        # Probes need no password: health and readiness reveal nothing about the fleet.
        for path in ("/-/healthy", "/-/ready"):
            assert http_get(f"{running.url}{path}")[0] == 200, path
            assert http_get(f"{running.url}{path}?x=1")[0] == 200, path
        assert http_post(f"{running.url}/-/reload")[0] == 401
        assert PASSWORD not in running.log()


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("basic_auth_users:\n  prometheus: plaintext\n", "basic_auth_users.prometheus: must be a bcrypt hash"),
        ("basic_auth_users:\n  prometheus: '$2y$10$notreallyahash'\n", "is not a valid bcrypt hash"),
        (
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
            "tls_server_config.cert_file: cannot read /nonexistent.crt",
        ),
        ("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n", "needs a certificate and its key"),
        ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options: invalid value"),
        ("http_server_config:\n  headers:\n    Server: nginx\n", "http_server_config.headers.Server: unknown key"),
        ("tls_config:\n  cert_file: a\n", "tls_config: unknown key"),
    ],
)
def test_bad_web_config_at_start_exits_2(tmp_path, body, fragment):
    web = write(tmp_path / "web.yml", body)
    result = run_cli(f"--config.file={DEMO}", f"--web.config.file={web}", "--web.listen-address=127.0.0.1:0")
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert run_cli(f"--config.file={DEMO}", f"--web.config.file={web}", "--config.check").returncode == 2


def test_web_config_client_auth_without_ca_is_refused(tmp_path, certs):
    web = write(
        tmp_path / "web.yml",
        f"""
        tls_server_config:
          cert_file: {certs["server.crt"]}
          key_file: {certs["server.key"]}
          client_auth_type: RequireAndVerifyClientCert
    """,
    )
    result = run_cli(f"--config.file={DEMO}", f"--web.config.file={web}", "--config.check")
    assert result.returncode == 2
    assert (
        "tls_server_config.client_ca_file: is required with client_auth_type RequireAndVerifyClientCert"
        in result.stderr
    )


# ---------------------------------------------------------------- reload


def test_reload_by_sighup_and_a_bad_web_config_on_reload(tmp_path, hashed):
    config = write(tmp_path / "c.yml", "stamps: [{name: east, version: 1.2408.1.50}]\n")
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    auth = basic("prometheus", PASSWORD)
    with exporter_process(config, f"--web.config.file={web}", tmp_path=tmp_path, ready_check=False) as running:

        def metrics() -> str:
            return http_get(f"{running.url}/metrics", auth)[2].decode()

        def wait_for(text: str) -> None:
            deadline = time.monotonic() + 10
            while text not in metrics():
                assert time.monotonic() < deadline, f"{text} did not appear"
                time.sleep(0.1)

        assert 'azurestack_stamp_in_support{stamp="east"} 0.0' in metrics()
        write(config, "stamps: [{name: east, version: 1.2601.0.4}]\n")
        os.kill(running.process.pid, signal.SIGHUP)
        wait_for('azurestack_stamp_in_support{stamp="east"} 1.0')

        # A bad web configuration refuses the whole reload, even with a good exporter config.
        write(config, "stamps: [{name: east, version: 1.2408.1.50}]\n")
        write(web, "basic_auth_users:\n  prometheus: not-a-hash\n")
        assert http_post(f"{running.url}/-/reload")[0] == 401  # still protected by the old users
        os.kill(running.process.pid, signal.SIGHUP)
        wait_for("azurestack_exporter_config_last_reload_successful 0.0")
        assert 'azurestack_stamp_in_support{stamp="east"} 1.0' in metrics()  # old config still serving

        # Fixing the web config and reloading applies both; new users take effect.
        other = bcrypt.hashpw(b"second", bcrypt.gensalt(4)).decode()
        write(web, f"basic_auth_users:\n  grafana: '{other}'\n")
        os.kill(running.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while http_get(f"{running.url}/metrics", basic("grafana", "second"))[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        body = http_get(f"{running.url}/metrics", basic("grafana", "second"))[2].decode()
        assert 'azurestack_stamp_in_support{stamp="east"} 0.0' in body
        assert "azurestack_exporter_config_last_reload_successful 1.0" in body
        assert http_get(f"{running.url}/metrics", auth)[0] == 401


# ---------------------------------------------------------------- /probe


def test_probe_returns_one_stamps_series(tmp_path):
    with exporter_process(DEMO, tmp_path=tmp_path) as running:
        status, headers, body = http_get(f"{running.url}/probe?target=dub-lab")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        samples = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
        assert samples, body
        policy = [line for line in samples if line.startswith("azurestack_policy_")]
        # The policy travels with each target, so alert rules can join on it per target.
        assert policy == [
            "azurestack_policy_supported_releases 3.0",
            "azurestack_policy_hotfix_grace_period_seconds 3.888e+06",
        ]
        assert all('stamp="dub-lab"' in line for line in samples if line not in policy)
        assert 'azurestack_stamp_in_support{stamp="dub-lab"} 0.0' in samples
        assert not any(line.startswith(("azurestack_release_info", "process_")) for line in samples)
        om = http_get(f"{running.url}/probe?target=fra-prod", {"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om[0] == 200 and om[2].decode().endswith("# EOF\n")
        status, _, body = http_get(f"{running.url}/probe?target=nowhere")
        assert status == 400 and b"Unknown target 'nowhere'" in body
        assert http_get(f"{running.url}/probe")[0] == 400
        assert http_get(f"{running.url}/probe?target=a&target=b")[0] == 400


def test_probe_output_passes_promtool(tmp_path):
    promtool = require_tool("promtool")
    with exporter_process(DEMO, tmp_path=tmp_path) as running:
        body = http_get(f"{running.url}/probe?target=lon-dr")[2]
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- status page


def test_status_page_in_chromium(tmp_path):
    chromium = require_tool("chromium")
    config = write(tmp_path / "c.yml", (EXAMPLES / "demo.yml").read_text())
    with exporter_process(config, tmp_path=tmp_path) as running:
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--window-size=1400,900",
        ]
        dom = subprocess.run(
            [chromium, *flags, "--dump-dom", f"{running.url}/"], capture_output=True, text=True, timeout=60, check=False
        )
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        subprocess.run(
            [chromium, *flags, f"--screenshot={shot}", f"{running.url}/"], capture_output=True, timeout=60, check=False
        )
        css = http_get(f"{running.url}/static/status.css")
    html = dom.stdout
    assert dom.returncode == 0, dom.stderr[-2000:]
    for stamp, badge in [
        ("dub-lab", "Out of support"),
        ("lon-dr", "Ending soon"),
        ("fra-prod", "In support"),
        ("ams-prod", "In support"),
    ]:
        row = html.split(f'id="stamp-{stamp}"', 1)[1].split("</tr>", 1)[0]
        assert f">{badge}</span>" in row, (stamp, row)
    # Worst first: the out-of-support stamp leads the table.
    assert html.index('id="stamp-dub-lab"') < html.index('id="stamp-lon-dr"') < html.index('id="stamp-ams-prod"')
    assert "missing <code>1.2506.3.30</code>" in html.split('id="stamp-fra-prod"', 1)[1].split("</tr>", 1)[0]
    assert "2501 (1.2501.0.21)" in html and "<details>" in html
    assert 'href="/api/v1/stamps"' in html and "bundled" in html
    assert css[0] == 200 and css[1]["Content-Type"].startswith("text/css")
    assert shot.exists() and shot.stat().st_size > 20_000


def test_status_page_shows_collection_errors_and_json_api(tmp_path):
    config = write(
        tmp_path / "c.yml", "stamps: [{name: ancient, version: 1.0.171201.1}, {name: ok, version: 1.2601.0.4}]\n"
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        page = http_get(f"{running.url}/")[2].decode()
        stamps = json.loads(http_get(f"{running.url}/api/v1/stamps")[2])
    assert "older than every release the catalog knows" in page
    assert '<span class="badge unknown">Unknown</span>' in page
    assert [s["verdict"] for s in stamps["stamps"]] == ["unknown", "in_support"]


def test_html_is_escaped(tmp_path):
    config = write(tmp_path / "c.yml", "stamps: [{name: '<script>x</script>', version: 1.2601.0.4}]\n")
    with exporter_process(config, tmp_path=tmp_path) as running:
        page = http_get(f"{running.url}/")[2].decode()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_basic_auth_concurrent_checks_agree_and_failures_are_not_cached():
    from concurrent.futures import ThreadPoolExecutor

    from exporter.webconfig import BasicAuth

    users = {"prometheus": bcrypt.hashpw(b"right", bcrypt.gensalt(4))}
    auth = BasicAuth()
    good, bad = basic("prometheus", "right")["Authorization"], basic("prometheus", "wrong")["Authorization"]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda h: auth.check(users, h), [good, bad] * 16))
    assert results == [True, False] * 16
    assert auth.check(users, bad) is False  # a failure is never cached
    users["prometheus"] = bcrypt.hashpw(b"rotated", bcrypt.gensalt(4))
    assert auth.check(users, good) is False  # a changed hash invalidates the cached success
    assert auth.check(users, basic("prometheus", "rotated")["Authorization"]) is True


def test_inline_certificate_and_key(tmp_path, certs):
    def indent(path: Path) -> str:
        return "\n".join("    " + line for line in path.read_text().splitlines())

    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert: |\n{indent(certs['server.crt'])}\n  key: |\n{indent(certs['server.key'])}\n"
    )
    with start_https(DEMO, web, tmp_path) as running:
        status, _, body = tls_get(running.url, certs["ca.pem"])
    assert status == 200 and b"azurestack_stamp_in_support" in body
    both = tmp_path / "both.yml"
    both.write_text(web.read_text() + f"  cert_file: {certs['server.crt']}\n")
    result = run_cli(f"--config.file={DEMO}", f"--web.config.file={both}", "--config.check")
    assert result.returncode == 2 and "give cert or cert_file, not both" in result.stderr


def test_status_page_counts_each_stamp_once_orders_hotfixes_first_names_unknown_releases_and_links_runbooks(tmp_path):
    config = write(
        tmp_path / "c.yml",
        """
        stamps:
          - {name: a-current, version: 1.2601.1.14}
          - {name: b-short, version: 1.2601.1.10}
          - {name: c-ahead, version: 1.2611.0.1}
          - {name: d-ancient, version: 1.0.171201.1}
          - {name: e-old, version: 1.2408.1.50}
        """,
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        html = http_get(f"{running.url}/")[2].decode()
    cards = dict((label, int(n)) for n, label in re.findall(r'<span class="n">(\d+)</span>([^<]+)</div>', html))
    # d-ancient was collected (a static stamp) but cannot be placed: "not evaluated", not "not collected" too.
    assert cards["not evaluated"] == 1 and cards["not collected"] == 0
    assert cards["out of support"] == 1 and cards["in support"] == 3  # e-old is three behind 2601
    # Within one verdict, the stamp missing its latest hotfix comes first.
    rows = re.findall(r'<tr id="stamp-([^"]+)"', html)
    assert rows.index("b-short") < rows.index("a-current")
    # A typed-in release the catalog lacks is said on that stamp's row, not believed for the others.
    row = re.search(r'<tr id="stamp-c-ahead".*?</tr>', html, re.S).group(0)
    assert "1.2611.0.1: update version 2611 is no release any catalog source knows; typed in" in row
    # Alert-worthy states link to their runbook.
    assert "runbooks.md#azurestackstampoutofsupport" in html
    assert html.count('class="runbook"') >= 2
