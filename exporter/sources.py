"""Catalog sources read over the network: remote catalog files and Microsoft's update graph.

Each source is refreshed in the background every ``refresh_interval``; a failure keeps its
last good releases (and marks it down), so a catalog never shrinks because a server is
away. Remote catalogs are fetched with conditional requests (ETag / Last-Modified). Bodies
are bounded, TLS is verified against the configured CA (never the environment's bundle).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
import yaml

from .admin import BoundedSession, CollectionError, transport_error, unexpected
from .catalog import CatalogError, PartialDate, Release, future_confirmation, future_problem, parse_catalog
from .config import parse_yaml
from .config import redact_url as redact
from .report import SourceStatus
from .updategraph import GraphError, parse_edges, parse_manifest, releases_from_edges

MAX_CATALOG_BYTES = 8 * 1024 * 1024
MAX_MANIFESTS = 5  # manifests fetched per refresh, for edges that carry no Version themselves
MAX_REDIRECTS = 3  # aka.ms/azurestackautomaticupdate is a redirect; a chain longer than this is not
REDIRECTS = (301, 302, 303, 307, 308)
# Where manifests may come from, besides the graph's own host: Microsoft's documented download hosts.
MANIFEST_HOSTS = ("azurestackhub.azureedge.net", "azurestackhub.download.prss.microsoft.com")


def refuse_future(releases: Sequence[Release], now: float) -> list[Release]:
    """A source that dates a release in the future, or names an update version beyond this
    month, is refused whole: anyone who can alter it (a plain-http catalog, a hijacked
    mirror) could otherwise declare the whole fleet out of support."""
    for release in releases:
        problem = future_problem(release, now)
        if problem:
            raise CollectionError("parse", f"refused: {problem}")
    return list(releases)


@dataclass
class RemoteSource:
    """One remote catalog (``kind`` url) or update graph (``kind`` update_graph)."""

    kind: str
    url: str
    ca_file: str | None
    timeout: float
    max_bytes: int = MAX_CATALOG_BYTES
    releases: tuple[Release, ...] = ()
    last_success: float | None = None
    up: bool = False
    error: str | None = "not read yet"
    attempted: bool = False
    etag: str | None = None
    last_modified: str | None = None
    stated_confirmation: float | None = None  # a remote catalog's own ``confirmed:`` day
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def origin(self) -> str:
        return redact(self.url)

    @property
    def confirmed(self) -> float | None:
        """The update graph confirms what it lists when read; a remote catalog on its ``confirmed:``
        day, or without one when read (a catalog someone keeps current at that address)."""
        if self.kind == "url" and self.stated_confirmation is not None:
            return self.stated_confirmation if self.last_success is not None else None
        return self.last_success

    def status(self) -> SourceStatus:
        return SourceStatus(
            self.kind, self.origin, self.up, self.last_success, len(self.releases), self.error, self.confirmed
        )

    def entry(self) -> tuple[SourceStatus, Sequence[Release]]:
        return self.status(), self.releases

    def refresh(self, now: float) -> None:
        """Fetch once; on failure keep the last good releases and record why."""
        with self._lock:
            session = BoundedSession(self.ca_file or True, self.timeout, self.max_bytes)
            session.deadline = time.monotonic() + 3 * self.timeout
            try:
                if self.kind == "update_graph":
                    releases = self._graph(session)
                    unchanged = False
                    confirmed = None
                else:
                    releases, unchanged, confirmed = self._catalog(session)
                    problem = future_confirmation(confirmed, now)
                    if problem:
                        raise CollectionError("parse", f"refused: {problem}")
                releases = refuse_future(releases, now)
            except CollectionError as err:
                self.up, self.error = False, str(err)
            except requests.exceptions.RequestException as err:
                self.up, self.error = False, str(transport_error(err))
            except RecursionError:
                self.up, self.error = False, "parse: the document is nested too deeply"
            except Exception as err:  # whatever goes wrong, the source goes down with a reason
                self.up, self.error = False, str(unexpected(err))
            else:
                if not unchanged:
                    self.releases = tuple(releases)
                    self.stated_confirmation = confirmed.timestamp() if confirmed else None
                self.up, self.error, self.last_success = True, None, now
            finally:
                session.close()
                self.attempted = True

    def _get(self, session: BoundedSession, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        """GET, following a few redirects (Microsoft's update graph is published behind aka.ms), never
        from https to http: a source read over TLS stays read over TLS."""
        for _ in range(MAX_REDIRECTS + 1):
            response = session.get(url, headers=headers or {})
            if response.status_code not in REDIRECTS:
                break
            target = urljoin(url, response.headers.get("Location", ""))
            if urlsplit(target).scheme not in (("https",) if urlsplit(url).scheme == "https" else ("http", "https")):
                raise CollectionError(
                    "http", f"{redact(url)} redirects to {redact(target)}: not followed (no downgrade)"
                )
            url = target
        else:
            raise CollectionError("http", f"more than {MAX_REDIRECTS} redirects from {redact(self.url)}")
        if response.status_code not in (200, 304):
            raise CollectionError("http", f"{redact(url)} answered HTTP {response.status_code}")
        return response

    def _catalog(self, session: BoundedSession) -> tuple[list[Release], bool, PartialDate | None]:
        headers = {"Accept": "application/yaml, application/json;q=0.9, */*;q=0.5"}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        response = self._get(session, self.url, headers)
        if response.status_code == 304:
            return [], True, None
        try:
            document = parse_yaml(response.content.decode("utf-8-sig"), untrusted=True)
            parsed = parse_catalog(document, "url")
        except UnicodeDecodeError:
            raise CollectionError("parse", "the catalog is not UTF-8 text") from None
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise CollectionError("parse", f"the catalog is not valid YAML: {problem}") from None
        except (CatalogError, ValueError, TypeError) as err:
            raise CollectionError("parse", f"the catalog does not follow the schema: {err}") from None
        self.etag = response.headers.get("ETag")
        self.last_modified = response.headers.get("Last-Modified")
        return list(parsed.releases), False, parsed.confirmed

    def _graph(self, session: BoundedSession) -> list[Release]:
        response = self._get(session, self.url)
        try:
            edges = parse_edges(response.content)
        except GraphError as err:
            raise CollectionError("parse", f"update graph: {err}") from None
        if not edges:
            raise CollectionError("parse", "update graph: it lists no updates")
        pairs = []
        fetched = 0
        allowed = {urlsplit(self.url).hostname, *MANIFEST_HOSTS}
        # A graph read over https never leads to a plain-http fetch: that would undo its TLS.
        schemes = ("https",) if urlsplit(self.url).scheme == "https" else ("http", "https")
        for edge in edges:
            target = edge.target
            if target is None and edge.manifest_uri and fetched < MAX_MANIFESTS:
                parts = urlsplit(edge.manifest_uri)
                if parts.scheme not in schemes or parts.hostname not in allowed:
                    continue  # only the graph's own host or Microsoft's download hosts, never a downgrade
                fetched += 1
                try:
                    target = parse_manifest(self._get(session, edge.manifest_uri).content)
                except (CollectionError, GraphError, requests.exceptions.RequestException, RecursionError):
                    continue  # one unreadable manifest does not spoil the graph
            if target is not None:
                pairs.append((edge.source, target))
        if edges and not pairs:
            raise CollectionError("parse", "update graph: no edge with a readable target version")
        return releases_from_edges(pairs)
