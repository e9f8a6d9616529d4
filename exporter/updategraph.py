"""Microsoft's Azure Stack Hub update graph (XML) turned into catalog releases. Pure: no I/O.

Stamps discover updates from an XML upgrade graph Microsoft publishes
(https://aka.ms/azurestackautomaticupdate; disconnected sites mirror it). Its shape, as the
public tools that consume it read it: root ``AzureStackUpdates``; ``CurrentVersion``
elements (``Version``) each holding ``ApplicableUpdate`` elements (``Version``) with a
``MetadataFile`` (``Uri``) pointing to an ``UpdatePackageManifest`` whose ``UpdateInfo``
has ``Version`` among others. Values may be attributes or child elements.

An edge to a build of another update version is a major update: its target is that
release's base build. An edge within one update version is a hotfix. Parsed with
defusedxml: entity expansion, external entities and DTD tricks fail the document.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from .catalog import Hotfix, Release
from .versions import Version, VersionError, parse_version

BOM = b"\xef\xbb\xbf"
MAX_ELEMENTS = 100_000  # a real graph has a few hundred; 8 MiB of "<a>" would be a 300 MB tree
MAX_DEPTH = 32  # the graph is four levels deep


class GraphError(ValueError):
    """The document is not an update graph this exporter can read."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str | None  # None when only the manifest says (see manifest_uri)
    manifest_uri: str | None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _value(element: Element, name: str) -> str | None:
    """An attribute, or the text of a child element, of that name (case-insensitive)."""
    wanted = name.lower()
    for key, value in element.attrib.items():
        if _local(key) == wanted and value.strip():
            return value.strip()
    for child in element:
        if _local(child.tag) == wanted and child.text and child.text.strip():
            return child.text.strip()
    return None


def _children(element: Element, name: str) -> list[Element]:
    wanted = name.lower()
    return [child for child in element if _local(child.tag) == wanted]


def _parse_xml(data: bytes) -> Element:
    if data.startswith(BOM):
        data = data[len(BOM) :]
    if data.count(b"<") > MAX_ELEMENTS:
        raise GraphError(f"more than {MAX_ELEMENTS} XML elements")
    try:
        _check_depth(data)
        return SafeET.fromstring(data)
    except DefusedXmlException as err:
        raise GraphError(f"refused XML construct: {type(err).__name__}") from None
    except SafeET.ParseError as err:
        raise GraphError(f"malformed XML: {err}") from None


def _check_depth(data: bytes) -> None:
    """Refuse deep nesting while streaming, before a tree is built (10**6 levels would be 300 MB)."""
    depth = 0
    for event, _ in SafeET.iterparse(io.BytesIO(data), events=("start", "end")):
        depth += 1 if event == "start" else -1
        if depth > MAX_DEPTH:
            raise GraphError(f"XML nested deeper than {MAX_DEPTH} levels")


def parse_edges(data: bytes) -> list[Edge]:
    """The CurrentVersion -> ApplicableUpdate edges of an update graph document."""
    root = _parse_xml(data)
    if _local(root.tag) != "azurestackupdates":
        raise GraphError(f"root element is {_local(root.tag)!r}, not AzureStackUpdates")
    edges = []
    for current in (e for e in root.iter() if _local(e.tag) == "currentversion"):
        source = _value(current, "Version")
        if source is None:
            continue
        for update in _children(current, "ApplicableUpdate"):
            metadata = _children(update, "MetadataFile")
            uri = _value(metadata[0], "Uri") if metadata else _value(update, "MetadataFile")
            edges.append(Edge(source, _value(update, "Version"), uri))
    return edges


def parse_manifest(data: bytes) -> str:
    """The ``UpdateInfo`` ``Version`` of an ``UpdatePackageManifest``."""
    root = _parse_xml(data)
    info = (
        root
        if _local(root.tag) == "updateinfo"
        else next((e for e in root.iter() if _local(e.tag) == "updateinfo"), None)
    )
    version = _value(info, "Version") if info is not None else None
    if version is None:
        raise GraphError("manifest has no UpdateInfo Version")
    return version


def releases_from_edges(edges: list[tuple[str, str]]) -> list[Release]:
    """Releases and hotfixes proven by (source build, target build) edges."""
    bases: dict[str, Version] = {}
    hotfixes: dict[str, set[Version]] = {}
    known: set[str] = set()
    for source_text, target_text in edges:
        try:
            source, target = parse_version(source_text), parse_version(target_text)
        except VersionError:
            continue  # a build this exporter cannot read says nothing it can use
        for build in (source, target):
            if build.update_version:
                known.add(build.update_version)
        update = target.update_version
        if update is None:
            continue
        if source.update_version != update:
            bases[update] = min(bases.get(update, target), target)
        else:
            hotfixes.setdefault(update, set()).add(target)
    releases = []
    for update in sorted(known):
        base = bases.get(update)
        fixes = sorted(h for h in hotfixes.get(update, ()) if base is None or h > base)
        releases.append(
            Release(update=update, build=base, hotfixes=tuple(Hotfix(h) for h in fixes), sources=("update_graph",))
        )
    return releases
