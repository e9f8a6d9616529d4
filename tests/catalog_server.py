"""A small HTTP(S) server of catalog files and update graphs for the tests, with ETags."""

from __future__ import annotations

import contextlib
import hashlib
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Document:
    body: bytes
    status: int = 200
    content_type: str = "application/yaml"
    delay: float = 0.0
    drip: float = 0.0  # seconds between body bytes, after prompt headers
    location: str | None = None  # with a 3xx status: where it redirects


@dataclass
class CatalogServer:
    documents: dict[str, Document] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, If-None-Match)
    context: ssl.SSLContext | None = None
    serving: bool = True

    def start(self) -> CatalogServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("If-None-Match")))
                doc = outer.documents.get(self.path.split("?", 1)[0])
                if doc is None:
                    self._reply(404, b"not found", "text/plain")
                    return
                if doc.delay:
                    time.sleep(doc.delay)
                etag = '"' + hashlib.sha256(doc.body).hexdigest()[:16] + '"'
                if doc.status == 200 and self.headers.get("If-None-Match") == etag:
                    self._reply(304, b"", doc.content_type, etag)
                    return
                if doc.drip:
                    self.send_response(200)
                    self.send_header("Content-Type", doc.content_type)
                    self.send_header("Content-Length", str(len(doc.body)))
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        for index in range(len(doc.body)):
                            self.wfile.write(doc.body[index : index + 1])
                            self.wfile.flush()
                            time.sleep(doc.drip)
                            if not outer.serving:
                                break
                    self.close_connection = True
                    return
                self._reply(doc.status, doc.body, doc.content_type, etag, doc.location)

            def _reply(
                self, status: int, body: bytes, content_type: str, etag: str | None = None, location: str | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if location:
                    self.send_header("Location", location)
                if etag:
                    self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if self.context is not None:
            self.server.socket = self.context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self.context else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.serving = False
        self.server.shutdown()
        self.server.server_close()
