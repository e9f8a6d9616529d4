"""Catalog sources over the network, freshness, and the 2023+ policy additions, end to end."""

from __future__ import annotations

import datetime as dt
import json
import re
import ssl
import textwrap
import time

import pytest
from catalog_server import CatalogServer, Document
from conftest import confirmed_catalog, exporter_process, http_get, http_post, run_cli, write
from pki import make_ca, make_server_cert
from test_updategraph import ATTRIBUTES, BILLION_LAUGHS, ELEMENTS, MANIFEST

from exporter.sources import RemoteSource

CATALOG = b"""releases:
  - update: "2608"
    build: 1.2608.0.3
    released: 2026-10-06
  - update: "2506"
    hotfixes:
      - build: 1.2506.2.24
        released: 2025-09-02
"""


@pytest.fixture
def server():
    catalog = CatalogServer().start()
    yield catalog
    catalog.stop()


def metrics(url: str) -> str:
    return http_get(f"{url}/metrics")[2].decode()


def value(body: str, name: str, **labels: str) -> float | None:
    for line in body.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("} ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def wait_for(check, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def url_source(url: str) -> dict:
    """The url catalog source as the JSON API reports it."""
    report = json.loads(http_get(f"{url}/api/v1/stamps")[2])
    return next(s for s in report["catalog"]["sources"] if s["source"] == "url")


def test_remote_catalog_200_304_404_timeout_and_recovery(tmp_path, server):
    server.documents["/azs/catalog.yml"] = Document(CATALOG)
    url = f"{server.url}/azs/catalog.yml"
    config = write(
        tmp_path / "c.yml",
        f"""
        refresh_interval: 1s
        catalog:
          urls: ["{url}?token=not-for-labels"]
          timeout: 1s
        stamps:
          - name: east
            version: 1.2506.0.15
    """,
    )
    origin = url
    with exporter_process(config, tmp_path=tmp_path) as running:
        body = metrics(running.url)
        assert value(body, "azurestack_catalog_source_up", source="url", origin=origin) == 1
        assert value(body, "azurestack_catalog_source_last_success_timestamp_seconds", source="url") > 0
        assert value(body, "azurestack_release_info", update_version="2608", build="1.2608.0.3", source="url") == 1
        assert value(body, "azurestack_release_info", update_version="2601", source="bundled") == 1
        assert (
            value(body, "azurestack_catalog_latest_release_timestamp_seconds")
            == dt.datetime(2026, 10, 6, tzinfo=dt.UTC).timestamp()
        )
        assert value(body, "azurestack_stamp_versions_behind", stamp="east") == 2
        # The remote catalog dates 1.2506.2.24 otherwise than the bundled catalog documents it:
        # the documented day is kept, the disagreement said.
        assert value(body, "azurestack_stamp_pending_hotfix_released_timestamp_seconds", stamp="east") == (
            dt.datetime(2025, 9, 22, tzinfo=dt.UTC).timestamp()
        )
        document = json.loads(http_get(f"{running.url}/api/v1/stamps")[2])
        stamp = document["stamps"][0]
        assert stamp["hotfix_overdue"] is True and stamp["pending_hotfix_released"] == "2025-09-22"
        assert document["catalog"]["disagreements"] == [
            {"update_version": "2506", "what": "date of hotfix 1.2506.2.24", "kept": "2025-09-22",
             "ignored": "2025-09-02", "source": "url"}
        ]  # fmt: skip
        assert "token=" not in body

        # Conditional requests: the ETag comes back, the server answers 304, nothing changes.
        wait_for(lambda: any(etag for _, etag in server.requests), what="a conditional request")
        assert value(metrics(running.url), "azurestack_release_info", update_version="2608", source="url") == 1

        # 404: the source is down, its last good copy stays in use.
        server.documents["/azs/catalog.yml"] = Document(b"gone", status=404, content_type="text/plain")
        wait_for(lambda: value(metrics(running.url), "azurestack_catalog_source_up", source="url") == 0)
        body = metrics(running.url)
        assert value(body, "azurestack_release_info", update_version="2608", source="url") == 1
        assert value(body, "azurestack_stamp_versions_behind", stamp="east") == 2
        source = url_source(running.url)
        assert source["up"] is False and "HTTP 404" in source["error"]
        page = http_get(f"{running.url}/")[2].decode()
        assert "catalog source url" in page and "is failing" in page

        # Recovery, then a timeout from the up state: down again, and this time for the timeout.
        server.documents["/azs/catalog.yml"] = Document(CATALOG)
        wait_for(lambda: value(metrics(running.url), "azurestack_catalog_source_up", source="url") == 1)
        server.documents["/azs/catalog.yml"] = Document(CATALOG, delay=3)
        wait_for(lambda: (url_source(running.url)["error"] or "").startswith("timeout:"), what="a timeout")
        body = metrics(running.url)
        assert value(body, "azurestack_catalog_source_up", source="url") == 0
        assert value(body, "azurestack_release_info", update_version="2608", source="url") == 1
        server.documents["/azs/catalog.yml"] = Document(CATALOG)
        wait_for(lambda: value(metrics(running.url), "azurestack_catalog_source_up", source="url") == 1)
    assert 'msg="Catalog source failed; its last good copy stays in use"' in running.log()


def test_update_graph_hostile_and_oversized_documents_fail_only_that_source(tmp_path, server):
    server.documents["/catalog.yml"] = Document(CATALOG)
    server.documents["/graph.xml"] = Document(BILLION_LAUGHS, content_type="application/xml")
    config = write(
        tmp_path / "c.yml",
        f"""
        refresh_interval: 1s
        catalog:
          urls: ["{server.url}/catalog.yml"]
          update_graph_url: "{server.url}/graph.xml"
        stamps:
          - name: east
            version: 1.2506.0.15
    """,
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        body = metrics(running.url)
        assert value(body, "azurestack_catalog_source_up", source="update_graph") == 0
        assert value(body, "azurestack_catalog_source_up", source="url") == 1
        assert value(body, "azurestack_release_info", update_version="2608", source="url") == 1
        errors = {
            s["source"]: s["error"]
            for s in json.loads(http_get(f"{running.url}/api/v1/stamps")[2])["catalog"]["sources"]
        }
        assert errors["update_graph"] == "parse: update graph: refused XML construct: EntitiesForbidden"

        server.documents["/graph.xml"] = Document(b"<" * (9 * 1024 * 1024), content_type="application/xml")
        wait_for(
            lambda: "larger than 8 MiB" in http_get(f"{running.url}/api/v1/stamps")[2].decode(),
            what="the oversized graph to be refused",
        )
        assert value(metrics(running.url), "azurestack_catalog_source_up", source="url") == 1

        server.documents["/graph.xml"] = Document(ATTRIBUTES, content_type="application/xml")
        wait_for(lambda: value(metrics(running.url), "azurestack_catalog_source_up", source="update_graph") == 1)
        body = metrics(running.url)
        # The graph gives 2601's base build, which the bundled catalog lacks; the graph ranks above it.
        assert (
            value(body, "azurestack_release_info", update_version="2601", build="1.2601.0.4", source="update_graph")
            == 1
        )


def test_update_graph_reads_manifests_for_edges_without_versions(server):
    server.documents["/graph.xml"] = Document(ELEMENTS, content_type="application/xml")
    server.documents["/hotfix-2501.xml"] = Document(MANIFEST, content_type="application/xml")
    graph = ELEMENTS.replace(b"https://example.invalid", server.url.encode())
    server.documents["/graph.xml"] = Document(graph, content_type="application/xml")
    source = RemoteSource("update_graph", f"{server.url}/graph.xml", None, 5)
    source.refresh(1.0)
    assert source.up, source.error
    releases = {r.update: r for r in source.releases}
    assert releases["2501"].build is not None and str(releases["2501"].build) == "1.2501.0.21"
    assert [str(h.build) for h in releases["2501"].hotfixes] == ["1.2501.1.47"]
    assert ("/hotfix-2501.xml", None) in server.requests


def test_a_typed_in_stamp_ahead_of_the_catalog_is_said_on_that_stamp_and_moves_no_other(tmp_path):
    config = write(tmp_path / "c.yml", "stamps: [{name: new, version: 1.2609.0.1}, {name: old, version: 1.2601.0.4}]\n")
    result = run_cli("check", f"--config.file={config}")
    assert "new: 1.2609.0.1: update version 2609 is no release any catalog source knows; typed in" in result.stdout
    report = json.loads(run_cli("check", f"--config.file={config}", "--output=json").stdout)
    assert report["catalog"]["observed_only"] == [] and "2609" not in report["catalog"]["releases"]
    stamps = {s["stamp"]: s for s in report["stamps"]}
    assert stamps["new"]["ahead_of_catalog"] is True and stamps["old"]["ahead_of_catalog"] is False
    assert stamps["old"]["versions_behind"] == 0
    with exporter_process(config, tmp_path=tmp_path) as running:
        page = http_get(f"{running.url}/")[2].decode()
        assert "1.2609.0.1: update version 2609 is no release any catalog source knows" in page
        body = metrics(running.url)
        assert value(body, "azurestack_release_info", update_version="2609", source="observed") is None
        assert value(body, "azurestack_stamp_unknown_build_info", stamp="new", build="1.2609.0.1") == 1
        for _ in range(3):
            assert http_post(f"{running.url}/-/reload")[0] == 200
    assert running.log().count("no catalog source knows") == 1  # logged once


def test_policy_exception_in_force_today_widens_support(tmp_path):
    today = dt.datetime.now(dt.UTC).date()
    body = f"""
    policy:
      exceptions:
        - from: {today - dt.timedelta(days=10)}
          until: {today + dt.timedelta(days=10)}
          supported_releases: 4
          reason: temporary N-3
    stamps: [{{name: old, version: 1.2408.1.50}}]
    """
    config = write(tmp_path / "c.yml", confirmed_catalog(tmp_path) + textwrap.dedent(body))
    result = run_cli("check", f"--config.file={config}", "--output=json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["policy"]["supported_releases"] == 4
    assert report["policy"]["exception"]["reason"] == "temporary N-3"
    assert report["stamps"][0]["verdict"] == "ending_soon"
    past = config.read_text().replace(str(today + dt.timedelta(days=10)), str(today - dt.timedelta(days=1)))
    write(config, past)
    assert run_cli("check", f"--config.file={config}").returncode == 1


def test_oem_catalog_gives_oem_versions_behind(tmp_path):
    config = write(
        tmp_path / "c.yml",
        """
        catalog:
          oem:
            Dell: ["2.4.2411.6", "2.4.2502.3", "2.4.2504.2", "2.4.2508.4"]
        stamps:
          - {name: old-oem, version: 1.2601.0.4, oem_version: 2.4.2411.6, oem_family: Dell}
          - {name: new-oem, version: 1.2601.0.4, oem_version: 2.4.2504.2, oem_family: dell}
          - {name: no-family, version: 1.2601.0.4, oem_version: 2.4.2411.6}
    """,
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        body = metrics(running.url)
    assert value(body, "azurestack_stamp_oem_versions_behind", stamp="old-oem", oem_family="Dell") == 3
    assert value(body, "azurestack_stamp_oem_in_support", stamp="old-oem") == 0
    assert value(body, "azurestack_stamp_oem_versions_behind", stamp="new-oem") == 1
    assert value(body, "azurestack_stamp_oem_in_support", stamp="new-oem") == 1
    assert value(body, "azurestack_stamp_oem_versions_behind", stamp="no-family") is None
    # OEM versions never become Microsoft releases.
    assert value(body, "azurestack_release_info", update_version="2411") is None
    table = run_cli("check", f"--config.file={config}").stdout
    assert "old-oem: OEM package (Dell) 3 behind 2.4.2508.4: OUT OF SUPPORT" in table


# ---------------------------------------------------------------- hostile sources


def source_errors(url: str) -> dict[str, str | None]:
    return {s["source"]: s["error"] for s in json.loads(http_get(f"{url}/api/v1/stamps")[2])["catalog"]["sources"]}


def test_a_dripping_catalog_ends_at_its_deadline_and_readiness_does_not_wait_for_it(tmp_path, server):
    """Prompt headers, then a byte a second: no per-read timeout fires, the whole-request deadline does."""
    server.documents["/drip.yml"] = Document(CATALOG * 50, drip=1.0)
    config = write(
        tmp_path / "c.yml",
        f"""
        refresh_interval: 1m
        catalog:
          urls: ["{server.url}/drip.yml"]
          timeout: 2s
        stamps: [{{name: east, version: 1.2506.0.15}}]
        """,
    )
    # exporter_process waits for /-/ready (20 s at most): the drip alone would hold it for minutes.
    with exporter_process(config, tmp_path=tmp_path) as running:
        error = source_errors(running.url)["url"]
        assert error == "timeout: no complete answer within 2 s (the whole request's deadline)", error
        assert value(metrics(running.url), "azurestack_catalog_source_up", source="url") == 0


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (
            b'releases:\n  - update: "9912"\n    build: 1.9912.0.1\n    released: 2099-12-31\n',
            "parse: refused: update version 9912 is beyond the current month",
        ),
        (
            b'releases:\n  - update: "2506"\n    hotfixes:\n      - {build: 1.2506.9.99, released: 2099-12-31}\n',
            "parse: refused: 1.2506.9.99 is dated 2099-12-31, in the future",
        ),
        (
            b"a: &a [1, 2]\nreleases: *a\n",
            "parse: the catalog is not valid YAML: YAML anchors and aliases are not accepted in a downloaded document",
        ),
        (b"releases: " + b"[" * 20000 + b"]" * 20000 + b"\n", "parse: the document is nested too deeply"),
    ],
    ids=["future-update-version", "future-date", "aliases", "deep"],
)
def test_a_hostile_catalog_is_refused_and_changes_no_verdict(tmp_path, server, document, error):
    server.documents["/c.yml"] = Document(document)
    config = write(
        tmp_path / "c.yml",
        f"""
        catalog:
          urls: ["{server.url}/c.yml"]
        stamps: [{{name: east, version: 1.2601.1.14}}]
        """,
    )
    report = json.loads(run_cli("check", f"--config.file={config}", "--output=json").stdout)
    source = next(s for s in report["catalog"]["sources"] if s["source"] == "url")
    assert (source["up"], source["error"]) == (False, error)
    assert report["catalog"]["latest"] == "2601"
    assert (report["stamps"][0]["versions_behind"], report["stamps"][0]["in_support"]) == (0, True)


def test_a_plain_http_catalog_is_warned_about(tmp_path, server):
    config = write(
        tmp_path / "c.yml", f'catalog: {{urls: ["{server.url}/c.yml"]}}\nstamps: [{{name: a, version: 1.2601.0.4}}]\n'
    )
    result = run_cli("--config.check", f"--config.file={config}")
    assert result.returncode == 0
    assert result.stdout.strip().endswith("configuration is valid: 1 stamp (1 static, 0 admin)")
    assert f"warning: catalog source {server.url}/c.yml is plain http://" in result.stderr


@pytest.mark.parametrize(
    ("graph", "error"),
    [
        (b"<AzureStackUpdates/>", "parse: update graph: it lists no updates"),
        (
            b"<AzureStackUpdates>" + b"<a>" * 100 + b"</a>" * 100 + b"</AzureStackUpdates>",
            "parse: update graph: XML nested deeper than 32 levels",
        ),
        (b"<a>" * 1_000_000 + b"</a>" * 1_000_000, "parse: update graph: more than 100000 XML elements"),
    ],
    ids=["empty", "deep", "million-deep"],
)
def test_an_empty_or_deep_update_graph_is_a_failure_not_an_empty_success(server, graph, error):
    server.documents["/graph.xml"] = Document(graph, content_type="application/xml")
    source = RemoteSource("update_graph", f"{server.url}/graph.xml", None, 5)
    source.refresh(1.0)
    assert (source.up, source.error, source.releases) == (False, error, ())


def test_manifests_are_few_and_only_from_the_graph_host_or_microsoft(server):
    edges = "".join(
        f'<ApplicableUpdate><MetadataFile Uri="{server.url}/m{i}.xml"/></ApplicableUpdate>' for i in range(10)
    )
    foreign = server.url.replace("127.0.0.1", "localhost")
    graph = (
        f'<AzureStackUpdates><CurrentVersion Version="1.2501.1.47">'
        f'<ApplicableUpdate><MetadataFile Uri="{foreign}/foreign.xml"/></ApplicableUpdate>{edges}'
        f"</CurrentVersion></AzureStackUpdates>"
    ).encode()
    server.documents["/graph.xml"] = Document(graph, content_type="application/xml")
    for i in range(10):
        server.documents[f"/m{i}.xml"] = Document(MANIFEST, content_type="application/xml")
    server.documents["/foreign.xml"] = Document(MANIFEST, content_type="application/xml")
    source = RemoteSource("update_graph", f"{server.url}/graph.xml", None, 5)
    source.refresh(1.0)
    fetched = [path for path, _ in server.requests if path != "/graph.xml"]
    assert "/foreign.xml" not in fetched
    assert fetched == ["/m0.xml", "/m1.xml", "/m2.xml", "/m3.xml", "/m4.xml"]
    assert source.up, source.error


def test_an_https_catalog_is_verified_against_its_ca_file_and_never_the_environment(tmp_path):
    """Trusted by its own ca_file: read. A wrong ca_file, or none while the environment's bundle
    trusts the server: refused for TLS, and the verdict is the bundled catalog's."""
    ca, other = make_ca(), make_ca("another CA")
    cert, key = make_server_cert(ca).write(tmp_path, "catalog")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "other.pem").write_bytes(other.cert_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = CatalogServer(context=context).start()
    try:
        for path in ("/trusted.yml", "/wrong-ca.yml", "/environment.yml"):
            server.documents[path] = Document(CATALOG)
        config = write(
            tmp_path / "c.yml",
            f"""
            catalog:
              urls:
                - {{url: "{server.url}/trusted.yml", ca_file: {tmp_path / "ca.pem"}}}
                - {{url: "{server.url}/wrong-ca.yml", ca_file: {tmp_path / "other.pem"}}}
                - "{server.url}/environment.yml"
            stamps: [{{name: east, version: 1.2506.0.15}}]
            """,
        )
        bundle = str(tmp_path / "ca.pem")
        env = {"REQUESTS_CA_BUNDLE": bundle, "CURL_CA_BUNDLE": bundle, "SSL_CERT_FILE": bundle}
        report = json.loads(run_cli("check", f"--config.file={config}", "--output=json", env=env).stdout)
    finally:
        server.stop()
    sources = {s["origin"].rsplit("/", 1)[1]: s for s in report["catalog"]["sources"] if s["source"] == "url"}
    assert (sources["trusted.yml"]["up"], sources["trusted.yml"]["releases"]) == (True, 2)
    for name in ("wrong-ca.yml", "environment.yml"):
        assert sources[name]["up"] is False
        assert sources[name]["error"].startswith("tls: TLS verification failed"), sources[name]["error"]
    # Only the trusted source counts: 2608 is known, so east (2506) is two behind.
    assert (report["catalog"]["latest"], report["stamps"][0]["versions_behind"]) == ("2608", 2)


def test_an_update_graph_and_its_manifests_share_one_deadline(server):
    """Each manifest answers within the request timeout, but five do not fit in the source's
    deadline (3 x timeout): the read ends at it, with what it has, and asks for no more."""
    edges = "".join(
        f'<ApplicableUpdate><MetadataFile Uri="{server.url}/slow{i}.xml"/></ApplicableUpdate>' for i in range(5)
    )
    graph = f'<AzureStackUpdates><CurrentVersion Version="1.2408.1.50">{edges}</CurrentVersion></AzureStackUpdates>'
    server.documents["/graph.xml"] = Document(graph.encode(), content_type="application/xml")
    for i in range(5):
        server.documents[f"/slow{i}.xml"] = Document(MANIFEST, content_type="application/xml", delay=1.2)
    source = RemoteSource("update_graph", f"{server.url}/graph.xml", None, 1.5)
    started = time.monotonic()
    source.refresh(1.0)
    elapsed = time.monotonic() - started
    assert source.up, source.error
    assert "2501" in {r.update for r in source.releases}
    fetched = [path for path, _ in server.requests if path != "/graph.xml"]
    assert fetched[:3] == ["/slow0.xml", "/slow1.xml", "/slow2.xml"] and "/slow4.xml" not in fetched
    assert 4.5 - 0.1 <= elapsed < 5.5


# ---------------------------------------------------------------- no downgrade


def test_an_https_update_graph_never_fetches_a_manifest_over_plain_http(tmp_path, server):
    """The manifest named with http:// on the graph's own host is not fetched: TLS is never undone."""
    ca = make_ca()
    cert, key = make_server_cert(ca).write(tmp_path, "graph")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure = CatalogServer(context=context).start()
    try:
        plain_port = server.url.rsplit(":", 1)[1]
        graph = (
            '<AzureStackUpdates><CurrentVersion Version="1.2501.1.47">'
            '<ApplicableUpdate Version="1.2506.0.15"/>'
            f'<ApplicableUpdate><MetadataFile Uri="http://127.0.0.1:{plain_port}/m.xml"/></ApplicableUpdate>'
            f'<ApplicableUpdate><MetadataFile Uri="{secure.url}/m.xml"/></ApplicableUpdate>'
            "</CurrentVersion></AzureStackUpdates>"
        ).encode()
        secure.documents["/graph.xml"] = Document(graph, content_type="application/xml")
        secure.documents["/m.xml"] = Document(MANIFEST, content_type="application/xml")
        server.documents["/m.xml"] = Document(MANIFEST, content_type="application/xml")
        source = RemoteSource("update_graph", f"{secure.url}/graph.xml", str(tmp_path / "ca.pem"), 5)
        source.refresh(time.time())
        assert source.up, source.error
        assert server.requests == []  # nothing over plain http
        assert ("/m.xml", None) in secure.requests  # the https manifest is read
    finally:
        secure.stop()


CONTRADICTING = b"""releases:
  - update: "2506"
    build: 1.2506.3.99
  - update: "2601"
    released: 2016-01
"""
REDATING = b"""releases:
  - update: "2601"
    hotfixes:
      - build: 1.2601.1.14
        released: 2025-01-01
"""


def test_a_plain_http_catalog_cannot_unsay_what_the_bundled_catalog_documents(tmp_path, server):
    """A base build above the documented hotfixes would erase them, an old date would move the
    forecast by a decade: the documented values are kept, and the disagreements said."""
    server.documents["/c.yml"] = Document(CONTRADICTING)
    server.documents["/d.yml"] = Document(REDATING)
    config = write(
        tmp_path / "c.yml",
        f"""
        catalog:
          urls: ["{server.url}/c.yml", "{server.url}/d.yml"]
        stamps: [{{name: east, version: 1.2506.2.24}}]
        """,
    )
    report = json.loads(run_cli("check", f"--config.file={config}", "--output=json").stdout)
    east = report["stamps"][0]
    assert east["missing_hotfixes"] == ["1.2506.3.30"] and east["hotfix_overdue"] is True
    assert east["pending_hotfix_released"] == "2025-10-03"
    assert report["catalog"]["newest_release_date"] == "2026-04-08"
    assert sorted((d["update_version"], d["what"], d["kept"], d["ignored"], d["source"])
                  for d in report["catalog"]["disagreements"]) == [
        ("2506", "base build", "1.2506.0.15", "1.2506.3.99", "url"),
        ("2601", "date of hotfix 1.2601.1.14", "2026-05-13", "2025-01-01", "url"),
        ("2601", "release date", "2026-04-08", "2016-01", "url"),
    ]  # fmt: skip
    table = run_cli("check", f"--config.file={config}").stdout
    assert (
        "WARNING: url source gives 2506's base build as 1.2506.3.99; the bundled catalog documents 1.2506.0.15" in table
    )
    with exporter_process(config, tmp_path=tmp_path) as running:
        assert value(metrics(running.url), "azurestack_catalog_disagreements", source="url") == 3


def test_a_source_behind_a_redirect_is_read_and_a_redirect_to_plain_http_is_not_followed(tmp_path, server):
    """Microsoft publishes its update graph behind aka.ms: a few redirects are followed, never one
    that would leave TLS (https to http), and never more than three."""
    ca = make_ca()
    cert, key = make_server_cert(ca).write(tmp_path, "graph")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    secure = CatalogServer(context=context).start()
    try:
        secure.documents["/aka"] = Document(b"", status=302, location="/graph.xml")
        secure.documents["/graph.xml"] = Document(ATTRIBUTES, content_type="application/xml")
        source = RemoteSource("update_graph", f"{secure.url}/aka", str(tmp_path / "ca.pem"), 5)
        source.refresh(time.time())
        assert source.up, source.error
        assert "2601" in {r.update for r in source.releases}
        server.documents["/graph.xml"] = Document(ATTRIBUTES, content_type="application/xml")
        secure.documents["/downgrade"] = Document(b"", status=301, location=f"{server.url}/graph.xml")
        down = RemoteSource("update_graph", f"{secure.url}/downgrade", str(tmp_path / "ca.pem"), 5)
        down.refresh(time.time())
        assert (down.up, server.requests) == (False, [])
        assert "redirects to http://127.0.0.1" in down.error and "not followed" in down.error
        for hop in range(5):
            secure.documents[f"/loop{hop}"] = Document(b"", status=307, location=f"/loop{hop + 1}")
        chain = RemoteSource("update_graph", f"{secure.url}/loop0", str(tmp_path / "ca.pem"), 5)
        chain.refresh(time.time())
        assert chain.error == f"http: more than 3 redirects from {secure.url}/loop0"
    finally:
        secure.stop()
