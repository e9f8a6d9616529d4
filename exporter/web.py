"""The HTTP server: /metrics, /probe, the status page, the JSON API, health, readiness, reload.

Every handler reads the published snapshot; none waits on the network. A threading server
lets concurrent scrapers proceed without one slow client blocking another. TLS is set up per
connection in the handler's thread (a stalled handshake holds one thread, never the accept
loop), with the current ``WebSecurity``, which a reload replaces as a whole.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import http.client
import json
import logging
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from . import __version__, statuspage
from .deadline import REAPER
from .metrics import policy_families, stamp_families
from .report import to_json
from .service import Exporter
from .webconfig import BasicAuth, WebSecurity, peer_sans

log = logging.getLogger("exporter")

# Pages the exporter renders allow nothing but its own stylesheet.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0  # a kept-alive connection may wait this long for its next request
REQUEST_TIMEOUT = 10.0  # from a request's first byte to the end of its headers, however it trickles
MAX_HEADER_BYTES = 64 * 1024  # request line and headers together; more is answered 431
MAX_BODY_BYTES = 64 * 1024  # POST /-/reload needs none
TLS_HANDSHAKE_RECORD = 0x16
UNAUTHENTICATED = ("/-/healthy", "/-/ready")


def connection_limit() -> int:
    """Concurrent connections: half the file descriptors, so the exporter's own reads always have some."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(32, min(4096, soft // 2))


def raise_file_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit, as Go programs do at start."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class _HeaderBudget:
    """The request's read file while its headers are parsed: more than the budget is 431."""

    def __init__(self, raw: object, budget: int) -> None:
        self._raw = raw
        self.budget = budget

    def readline(self, limit: int = -1) -> bytes:
        if self.budget <= 0:
            raise http.client.LineTooLong(f"header block over {MAX_HEADER_BYTES} bytes")
        size = self.budget + 1 if limit is None or limit < 0 else min(limit, self.budget + 1)
        line = self._raw.readline(size)  # type: ignore[attr-defined]
        self.budget -= len(line)
        if self.budget < 0:
            raise http.client.LineTooLong(f"header block over {MAX_HEADER_BYTES} bytes")
        return line

    def __getattr__(self, name: str) -> object:
        return getattr(self._raw, name)


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:10132``, ``127.0.0.1:10132`` or ``[::1]:10132`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} must be [host]:port, such as :10132 or 127.0.0.1:10132")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class _RejectedError(Exception):
    """A connection refused before HTTP (plain HTTP on TLS, failed handshake, SAN mismatch)."""


class _StampRegistry(Collector):
    """A one-stamp view for /probe: the same families as /metrics, for that stamp only."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class RenderCache:
    """Rendered responses, built once per published snapshot and served as bytes.

    A scrape costs a dictionary lookup instead of rebuilding every metric family. Entries
    belong to one snapshot; a newer snapshot, or age past ``max_age`` (so that process_*
    metrics stay current), renders again, once: concurrent requests wait for that render.
    """

    def __init__(self, max_age: float = 5.0) -> None:
        self.max_age = max_age
        self._lock = threading.Lock()
        self._entries: dict[tuple[object, ...], tuple[object, float, bytes]] = {}
        self._rendering: dict[tuple[object, ...], threading.Lock] = {}

    def get(self, key: tuple[object, ...], snapshot: object, render: Callable[[], bytes]) -> bytes:
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] is snapshot and time.monotonic() - entry[1] < self.max_age:
                    return entry[2]
                lock = self._rendering.setdefault(key, threading.Lock())
            if lock.acquire(blocking=False):
                break
            with lock:  # someone else renders this key: wait, then look again
                pass
        try:
            body = render()
            with self._lock:
                if any(e[0] is not snapshot for e in self._entries.values()):
                    # A new snapshot: drop what belongs to older ones (e.g. /probe of removed stamps).
                    self._entries = {k: e for k, e in self._entries.items() if e[0] is snapshot}
                self._entries[key] = (snapshot, time.monotonic(), body)
            return body
        finally:
            lock.release()


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        exporter: Exporter,
        registry: CollectorRegistry,
        telemetry_path: str,
        security: WebSecurity | None = None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.exporter = exporter
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.security = security or WebSecurity()
        self.auth = BasicAuth()
        self.cache = RenderCache()
        self.reload_hook: Callable[[], tuple[bool, str]] = exporter.reload
        self._inflight = 0
        self._inflight_lock = threading.Condition()
        self.max_connections = connection_limit()
        self._connections: dict[int, tuple[socket.socket, float | None]] = {}  # id -> (socket, idle since)
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    # ------------------------------------------------------------ connection accounting

    def process_request(self, request, client_address) -> None:  # type: ignore[override]
        """Admit a connection; at the limit, shed the longest-idle one, or refuse this one with 503."""
        with self._connections_lock:
            full = len(self._connections) >= self.max_connections
            victim = self._pop_idle() if full else None
            admitted = not full or victim is not None
            if admitted:
                self._connections[id(request)] = (request, time.monotonic())
        if victim is not None:
            _shut(victim)  # its handler thread wakes, finds the socket closed and ends
        if not admitted:
            _refuse(request, b"503 Service Unavailable", b"Too many connections\n")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def _pop_idle(self) -> socket.socket | None:
        """The longest-idle connection's socket, forgotten; the caller holds the lock."""
        idle = [(since, key) for key, (_, since) in self._connections.items() if since is not None]
        return self._connections.pop(min(idle)[1])[0] if idle else None

    def close_request(self, request) -> None:  # type: ignore[override]
        with self._connections_lock:
            self._connections.pop(id(request), None)
        super().close_request(request)

    def mark(self, request: socket.socket, sock: socket.socket, idle: bool) -> None:
        """``sock`` is what to shut when shedding: the TLS socket once the raw one is wrapped."""
        with self._connections_lock:
            if id(request) in self._connections:
                self._connections[id(request)] = (sock, time.monotonic() if idle else None)

    def get_request(self):  # type: ignore[override]
        try:
            return super().get_request()
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE):
                # Out of file descriptors accept() fails at once, and would spin: shed, pause.
                with self._connections_lock:
                    victim = self._pop_idle()
                if victim is not None:
                    _shut(victim)
                time.sleep(0.05)
            raise

    def handle_error(self, request, client_address) -> None:
        """Connections clients drop or that fail TLS are routine: log at debug, no traceback."""
        log.debug("Connection closed with an error", extra={"client": client_address[0]})

    def begin(self) -> None:
        with self._inflight_lock:
            self._inflight += 1

    def end(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1
            self._inflight_lock.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait for requests being served to finish (graceful shutdown)."""
        deadline = time.monotonic() + timeout
        with self._inflight_lock:
            while self._inflight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._inflight_lock.wait(remaining)
        return True


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _refuse(sock: socket.socket, status: bytes, body: bytes) -> None:
    """A short answer to a connection that will not be served (plain text, then close)."""
    with contextlib.suppress(OSError):
        sock.settimeout(1.0)
        sock.sendall(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


class Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"azurestack-exporter/{__version__}"
    timeout = IDLE_TIMEOUT

    def handle_one_request(self) -> None:
        """Wait (idle) for a request's first byte, then give the whole request line and
        headers ``REQUEST_TIMEOUT``: a client that trickles them is cut off, not each read."""
        self.server.mark(self._raw_socket, self.connection, idle=True)
        try:
            if not self.rfile.peek(1):  # type: ignore[attr-defined]
                self.close_connection = True
                return
        except (OSError, ValueError):
            self.close_connection = True
            return
        self.server.mark(self._raw_socket, self.connection, idle=False)
        key = REAPER.watch(self.connection, time.monotonic() + REQUEST_TIMEOUT)
        self._reaper_key: int | None = key
        try:
            super().handle_one_request()
        finally:
            self._release_request_deadline()

    def _release_request_deadline(self) -> None:
        key, self._reaper_key = getattr(self, "_reaper_key", None), None
        if key is not None:
            REAPER.unwatch(key)

    def parse_request(self) -> bool:
        """The stdlib's parsing within a byte budget, then unambiguous framing only."""
        real = self.rfile
        self.rfile = _HeaderBudget(real, MAX_HEADER_BYTES - len(self.raw_requestline))  # type: ignore[assignment]
        try:
            ok = super().parse_request()
        finally:
            self.rfile = real
        self._release_request_deadline()  # the request is in: serving it has no such deadline
        if not ok:
            return False
        problem = self._framing_problem()
        if problem is not None:
            self.close_connection = True
            self.send_error(HTTPStatus.BAD_REQUEST, problem)
            return False
        return True

    def _framing_problem(self) -> str | None:
        """Requests smuggling relies on: ambiguous lengths, chunked bodies, bodies on GET."""
        if self.headers.get_all("Transfer-Encoding"):
            return "Transfer-Encoding is not accepted"
        lengths = self.headers.get_all("Content-Length") or []
        if len(lengths) > 1:
            return "more than one Content-Length"
        if lengths:
            text = lengths[0].strip()
            if not text.isdigit() or not text.isascii():
                return "Content-Length must be a non-negative number"
            if int(text) and self.command in ("GET", "HEAD"):
                return f"a {self.command} request takes no body"
            if int(text) > MAX_BODY_BYTES:
                return "request body too large"
        return None

    def setup(self) -> None:
        self._raw_socket = self.request  # the TCP socket, before any TLS wrapping
        self.security = self.server.security  # one configuration for the whole connection
        # Headers and body are separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every response on a kept-alive connection.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.security.tls
        if tls is not None:
            self.request.settimeout(HANDSHAKE_TIMEOUT)
            first = self.request.recv(1, socket.MSG_PEEK)
            if not first:
                raise _RejectedError("closed before TLS")
            if first[0] != TLS_HANDSHAKE_RECORD:
                _refuse(self.request, b"400 Bad Request", b"Client sent an HTTP request to an HTTPS server.\n")
                raise _RejectedError("plain HTTP on the TLS port")
            try:
                self.request = tls.context.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError) as err:
                raise _RejectedError(f"TLS handshake failed: {err}") from None
            if tls.client_allowed_sans and not (peer_sans(self.request.getpeercert()) & set(tls.client_allowed_sans)):
                self.request.close()
                raise _RejectedError("client certificate SAN not allowed")
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.close()  # the server only closes the raw socket, which TLS detached

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        if log.isEnabledFor(logging.DEBUG):  # called for every request: format only when it is logged
            log.debug("HTTP request", extra={"client": self.client_address[0], "request": format % args})

    # ------------------------------------------------------------ plumbing

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        extra = dict(headers or {})
        if content_type.startswith("text/html"):
            extra.setdefault("Content-Security-Policy", PAGE_CSP)
            extra.setdefault("X-Content-Type-Options", "nosniff")
        extra.update(self.security.headers)  # the operator's web configuration wins
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _text(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8", headers)

    def _authorized(self) -> bool:
        if self.server.auth.check(self.security.users, self.headers.get("Authorization")):
            return True
        self._text(HTTPStatus.UNAUTHORIZED, "Unauthorized\n", {"WWW-Authenticate": 'Basic realm="azurestack-exporter"'})
        return False

    def _serve(self, method: Callable[[], None]) -> None:
        self.server.begin()
        try:
            # Health and readiness say nothing about the fleet: probes (a kubelet, a load
            # balancer) reach them without the scrapers' password.
            if urlsplit(self.path).path in UNAUTHENTICATED or self._authorized():
                method()
        finally:
            self.server.end()

    # ------------------------------------------------------------ routing

    def do_HEAD(self) -> None:
        self._serve(self._get)

    def do_GET(self) -> None:
        self._serve(self._get)

    def do_POST(self) -> None:
        self._serve(self._post)

    def _get(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        if path == self.server.telemetry_path:
            self._exposition(("metrics",), lambda: self.server.registry)
        elif path == "/probe":
            self._probe(parse_qs(parts.query).get("target", []))
        elif path == "/":
            self._status_page()
        elif path == "/static/status.css":
            self._send(
                HTTPStatus.OK, statuspage.CSS.encode(), "text/css; charset=utf-8", {"Cache-Control": "max-age=3600"}
            )
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
            self._text(HTTPStatus.METHOD_NOT_ALLOWED, "Use POST to reload\n", {"Allow": "POST"})
        else:
            self._text(HTTPStatus.NOT_FOUND, "Not found\n")

    def _post(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)  # checked by parse_request
        if length:
            self.rfile.read(length)
        if path == "/-/reload":
            ok, message = self.server.reload_hook()
            self._text(HTTPStatus.OK if ok else HTTPStatus.INTERNAL_SERVER_ERROR, message + "\n")
        else:
            self._text(HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed\n", {"Allow": "GET, HEAD"})

    # ------------------------------------------------------------ views

    def _exposition(self, key: tuple[object, ...], source: Callable[[], CollectorRegistry | Collector]) -> None:
        """Serve an exposition from the cache: one render per snapshot, format and encoding."""
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        zipped = "gzip" in self.headers.get("Accept-Encoding", "")

        def render() -> bytes:
            body = encoder(source())  # type: ignore[arg-type]
            return gzip.compress(body, compresslevel=6) if zipped else body

        snapshot = self.server.exporter.snapshot()
        body = self.server.cache.get((*key, content_type, zipped), snapshot, render)
        self._send(HTTPStatus.OK, body, content_type, {"Content-Encoding": "gzip"} if zipped else None)

    def _probe(self, targets: list[str]) -> None:
        if len(targets) != 1 or not targets[0]:
            self._text(HTTPStatus.BAD_REQUEST, "Give one target: /probe?target=<stamp name>\n")
            return
        snapshot = self.server.exporter.snapshot()
        stamp = snapshot.report.stamp(targets[0]) if snapshot else None
        if stamp is None:
            self._text(HTTPStatus.BAD_REQUEST, f"Unknown target {targets[0]!r}: not a configured stamp\n")
            return
        report = snapshot.report
        self._exposition(
            ("probe", targets[0]),
            lambda: _StampRegistry([*stamp_families([stamp], report.generated_at), *policy_families(report)]),
        )

    def _stamps(self) -> None:
        snapshot = self.server.exporter.snapshot()
        if snapshot is None:
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready\n")
            return
        body = self.server.cache.get(
            ("json",), snapshot, lambda: json.dumps(to_json(snapshot.report), indent=2).encode() + b"\n"
        )
        self._send(HTTPStatus.OK, body, "application/json")

    def _status_page(self) -> None:
        snapshot = self.server.exporter.snapshot()
        if snapshot is None:
            self._text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready\n")
            return
        page = statuspage.render(snapshot.report, time.time(), self.server.telemetry_path)
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
