"""The HTTP server: /metrics, the JSON API, health, readiness, reload and a landing page.

Every handler reads the published snapshot; none waits on the network. A threading
server lets concurrent scrapers proceed without one slow client blocking another.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from . import __version__
from .report import to_json
from .service import Exporter

log = logging.getLogger("exporter")


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:10132``, ``127.0.0.1:10132`` or ``[::1]:10132`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} must be [host]:port, such as :10132 or 127.0.0.1:10132")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], exporter: Exporter, registry: CollectorRegistry, telemetry_path: str):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.exporter = exporter
        self.registry = registry
        self.telemetry_path = telemetry_path
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"azurestack-exporter/{__version__}"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("HTTP request", extra={"client": self.client_address[0], "request": format % args})

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == self.server.telemetry_path:
            self._metrics()
        elif path == "/":
            self._landing()
        elif path == "/api/v1/stamps":
            self._stamps()
        elif path == "/-/healthy":
            self._text(HTTPStatus.OK, "Healthy\n")
        elif path == "/-/ready":
            if self.server.exporter.ready.is_set():
                self._text(HTTPStatus.OK, "Ready\n")
            else:
                self._text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready: the first evaluation has not finished\n")
        elif path == "/-/reload":
            self._send(
                HTTPStatus.METHOD_NOT_ALLOWED, b"Use POST to reload\n", "text/plain; charset=utf-8", {"Allow": "POST"}
            )
        else:
            self._text(HTTPStatus.NOT_FOUND, "Not found\n")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(min(length, 65536))
        if path == "/-/reload":
            ok, message = self.server.exporter.reload()
            self._text(HTTPStatus.OK if ok else HTTPStatus.INTERNAL_SERVER_ERROR, message + "\n")
        else:
            self._text(
                HTTPStatus.METHOD_NOT_ALLOWED if path in ("/", "/metrics") else HTTPStatus.NOT_FOUND, "Not found\n"
            )

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(self.server.registry)
        headers = {}
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        self._send(HTTPStatus.OK, body, content_type, headers)

    def _stamps(self) -> None:
        snapshot = self.server.exporter.snapshot()
        if snapshot is None:
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready\n")
            return
        body = json.dumps(to_json(snapshot.report), indent=2).encode() + b"\n"
        self._send(HTTPStatus.OK, body, "application/json")

    def _landing(self) -> None:
        snapshot = self.server.exporter.snapshot()
        summary = "Not evaluated yet."
        if snapshot is not None:
            stamps = snapshot.report.stamps
            out = sum(1 for s in stamps if s.verdict == "out_of_support")
            soon = sum(1 for s in stamps if s.verdict == "ending_soon")
            latest = snapshot.report.catalog.latest
            summary = (
                f"{len(stamps)} stamps: {out} out of support, {soon} ending soon. "
                f"Latest release known: {latest.update if latest else 'none'}."
            )
        metrics = html.escape(self.server.telemetry_path)
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Azure Stack Hub servicing exporter</title></head>
<body><h1>Azure Stack Hub servicing exporter</h1>
<p>{html.escape(summary)}</p>
<ul><li><a href="{metrics}">Metrics</a></li><li><a href="/api/v1/stamps">Stamps (JSON)</a></li>
<li><a href="/-/healthy">Health</a></li><li><a href="/-/ready">Readiness</a></li></ul>
<p>Version {html.escape(__version__)}</p></body></html>
"""
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
