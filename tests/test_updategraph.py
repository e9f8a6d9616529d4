"""The update graph parser.

No copy of Microsoft's real update graph could be fetched for this project, so these
fixtures are built from the documented shape of the document (root AzureStackUpdates,
CurrentVersion/ApplicableUpdate edges with Version, MetadataFile Uri -> UpdatePackageManifest
UpdateInfo) as public tools that consume it read it: attributes or child elements, with or
without a byte-order mark.
"""

from __future__ import annotations

import pytest

from exporter.catalog import Hotfix
from exporter.updategraph import BOM, Edge, GraphError, parse_edges, parse_manifest, releases_from_edges
from exporter.versions import parse_version

ATTRIBUTES = b"""<?xml version="1.0" encoding="utf-8"?>
<AzureStackUpdates>
  <CurrentVersion Version="1.2501.1.47">
    <ApplicableUpdate Version="1.2506.0.15">
      <MetadataFile Uri="https://azurestackhub.download.prss.microsoft.com/dbazure/AzS_Update_1.2506.0.15/metadata.xml"/>
    </ApplicableUpdate>
  </CurrentVersion>
  <CurrentVersion Version="1.2506.0.15">
    <ApplicableUpdate Version="1.2506.2.24">
      <MetadataFile Uri="https://example.invalid/hotfix-1.2506.2.24.xml"/>
    </ApplicableUpdate>
    <ApplicableUpdate Version="1.2601.0.4"/>
  </CurrentVersion>
</AzureStackUpdates>
"""

ELEMENTS = (
    BOM
    + b"""<?xml version="1.0" encoding="utf-8"?>
<AzureStackUpdates xmlns="http://schemas.microsoft.com/azurestack/updates">
  <CurrentVersion>
    <Version>1.2408.1.50</Version>
    <ApplicableUpdate>
      <Version>1.2501.0.21</Version>
      <MetadataFile><Uri>https://example.invalid/2501.xml</Uri></MetadataFile>
    </ApplicableUpdate>
  </CurrentVersion>
  <CurrentVersion>
    <Version>1.2501.0.21</Version>
    <ApplicableUpdate>
      <MetadataFile><Uri>https://example.invalid/hotfix-2501.xml</Uri></MetadataFile>
    </ApplicableUpdate>
  </CurrentVersion>
</AzureStackUpdates>
"""
)

MANIFEST = b"""<?xml version="1.0" encoding="utf-8"?>
<UpdatePackageManifest>
  <UpdateInfo>
    <UpdateName>Microsoft Azure Stack Hub Hotfix 1.2501.1.47</UpdateName>
    <Description>Hotfix</Description>
    <PackageSizeInMB>512</PackageSizeInMB>
    <Version>1.2501.1.47</Version>
    <MinVersionRequired>1.2501.0.21</MinVersionRequired>
    <MinOEMVersionRequired>2.4.0.0</MinOEMVersionRequired>
    <KBLink>https://learn.microsoft.com/azure-stack/operator/hotfix-1-2501-1-47</KBLink>
  </UpdateInfo>
</UpdatePackageManifest>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<AzureStackUpdates><CurrentVersion Version="&lol9;"/></AzureStackUpdates>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<AzureStackUpdates><CurrentVersion Version="&xxe;"/></AzureStackUpdates>
"""


def v(text):
    return parse_version(text)


def test_attributes():
    edges = parse_edges(ATTRIBUTES)
    assert edges[0] == Edge(
        "1.2501.1.47",
        "1.2506.0.15",
        "https://azurestackhub.download.prss.microsoft.com/dbazure/AzS_Update_1.2506.0.15/metadata.xml",
    )
    assert [(e.source, e.target) for e in edges] == [
        ("1.2501.1.47", "1.2506.0.15"),
        ("1.2506.0.15", "1.2506.2.24"),
        ("1.2506.0.15", "1.2601.0.4"),
    ]
    assert edges[2].manifest_uri is None


def test_child_elements_namespace_and_byte_order_mark():
    edges = parse_edges(ELEMENTS)
    assert edges == [
        Edge("1.2408.1.50", "1.2501.0.21", "https://example.invalid/2501.xml"),
        Edge("1.2501.0.21", None, "https://example.invalid/hotfix-2501.xml"),
    ]


def test_manifest_version():
    assert parse_manifest(MANIFEST) == "1.2501.1.47"
    assert parse_manifest(BOM + MANIFEST) == "1.2501.1.47"
    with pytest.raises(GraphError, match="no UpdateInfo Version"):
        parse_manifest(b"<UpdatePackageManifest><UpdateInfo/></UpdatePackageManifest>")


def test_major_edges_give_base_builds_and_hotfix_edges_give_hotfixes():
    edges = [(e.source, e.target) for e in parse_edges(ATTRIBUTES)]
    releases = {r.update: r for r in releases_from_edges(edges)}
    assert list(releases) == ["2501", "2506", "2601"]
    assert releases["2506"].build == v("1.2506.0.15")
    assert releases["2506"].hotfixes == (Hotfix(v("1.2506.2.24")),)
    assert releases["2601"].build == v("1.2601.0.4")
    assert releases["2501"].build is None  # only seen as a source: its base build is unknown
    assert all(r.sources == ("update_graph",) for r in releases.values())


def test_hotfix_from_a_hotfix_and_unreadable_builds_are_skipped():
    releases = releases_from_edges(
        [("1.2506.2.24", "1.2506.3.30"), ("1.2506.0.15", "1.2506.2.24"), ("9.2222.0.222", "9.8888.0.888")]
    )
    assert [r.update for r in releases] == ["2506"]
    assert [str(h.build) for h in releases[0].hotfixes] == ["1.2506.2.24", "1.2506.3.30"]


@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_hostile_documents_are_refused_before_expansion(document):
    with pytest.raises(GraphError, match="refused XML construct"):
        parse_edges(document)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"<html><body>Sign in</body></html>", "not AzureStackUpdates"),
        (b"<AzureStackUpdates><CurrentVersion", "malformed XML"),
        (b"", "malformed XML"),
    ],
)
def test_other_documents_are_refused(document, message):
    with pytest.raises(GraphError, match=message):
        parse_edges(document)
