"""The HTTP server: /metrics, /probe, the status page, the JSON API, health, readiness, reload.

One asyncio event loop, in its own thread, holds every connection; a connection costs a few
kilobytes, not a thread, so thousands of idle, trickling or half-open clients cost memory in
proportion and never a scrape. Every phase of a connection has a deadline (TLS handshake,
request line and headers, body, response); connections are capped per client address and in
total, and at a cap the connection that has waited longest without being answered is
dropped first. TLS runs on ``ssl.SSLObject`` over memory buffers, so a half-open handshake
holds OpenSSL's state only (asyncio's own TLS transport reserves 256 KiB per connection).

Nothing a client sends chooses what is cached: /metrics is rendered in the background once
per published snapshot (``ExpositionRenderer``) in a fixed set of variants (format x
encoding), /probe once per configured stamp and variant, and a scrape gets the newest
finished bytes at once. Work that takes time (bcrypt, reloads, pages) runs in bounded
worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import gzip
import json
import logging
import os
import re
import resource
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

from . import __version__, memory, statuspage
from .metrics import LivenessCollector, Snapshot, StampExposition, policy_families, stamp_families
from .report import to_json
from .service import Exporter
from .webconfig import BasicAuth, CredentialChecks, WebSecurity, peer_sans

log = logging.getLogger("exporter")

# Pages the exporter renders allow nothing but its own stylesheet.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HANDSHAKE_TIMEOUT = 10.0  # from accept to a finished TLS handshake
IDLE_TIMEOUT = 120.0  # a connection may wait this long for its (next) request's first byte
REQUEST_TIMEOUT = 10.0  # from a request's first byte to the end of its body, however it trickles
RESPONSE_TIMEOUT = 60.0  # to write an answer to a client that reads slowly
LINGER_TIMEOUT = 2.0  # after a refusal, unread input is drained this long so the answer arrives
MAX_HEADER_BYTES = 64 * 1024  # request line and headers together; more is answered 431
MAX_HEADER_LINES = 100
MAX_BODY_BYTES = 64 * 1024  # POST /-/reload needs none
MAX_PER_CLIENT = 256  # connections from one address
MAX_HANDSHAKES = 256  # TLS handshakes in progress, all clients together
MAX_PENDING_VIEWS = 16  # status pages, JSON and /probe renders waiting for a worker
WRITE_CHUNK = 256 * 1024  # bytes handed to the transport (TLS) at a time; flow control does the rest
SMALL_PART = 16 * 1024  # parts of an answer up to this size are handed to the transport together
TLS_HANDSHAKE_RECORD = 0x16
UNAUTHENTICATED = ("/-/healthy", "/-/ready")  # for GET and HEAD only
PROCESS_REFRESH = 2.0  # process_* metrics are at most this old
RELEASE_INTERVAL = 2.0  # free memory is handed back to the system at most this often, after a render
SNAPSHOT_POLL = 0.1  # how often the renderer looks for a new snapshot
TEXT = "text"
OPENMETRICS = "openmetrics"
CONTENT_TYPES = {
    TEXT: "text/plain; version=0.0.4; charset=utf-8",  # spelled out: older prometheus-client names it otherwise
    OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
EOF = b"# EOF\n"
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # deflate, no name, no time, Unix: as zlib writes it
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
REQUEST_LINE = re.compile(rb"([A-Z]+) ([^\x00-\x20\x7f]+) HTTP/1\.([01])")
BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


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


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:10132``, ``127.0.0.1:10132`` or ``[::1]:10132`` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address {address!r} must be [host]:port, such as :10132 or 127.0.0.1:10132")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def choose_format(accept: str) -> str:
    """OpenMetrics 1.0.0 when the client lists it (without a version or at 1.x or later), else text.

    The answer is one of two fixed formats whatever the header says, so no cache grows with
    what clients send.
    """
    for item in accept.split(","):
        kind, *params = item.split(";")
        if kind.strip().lower() != "application/openmetrics-text":
            continue
        versions = [p.split("=", 1)[1].strip() for p in params if p.strip().lower().startswith("version=")]
        major = versions[0].split(".")[0] if versions else "1"
        if major.isdigit() and int(major) >= 1:
            return OPENMETRICS
    return TEXT


# ---------------------------------------------------------------- rendering


class _StampRegistry(Collector):
    """A one-stamp view for /probe: the same families as /metrics, for that stamp only."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def encode(registry: CollectorRegistry | Collector, fmt: str) -> bytes:
    return openmetrics.generate_latest(registry) if fmt == OPENMETRICS else generate_latest(registry)  # type: ignore[arg-type]


class _Compressed:
    """A gzip answer of the fleet's exposition whose small process_* part can be appended (and
    the stream finished) without compressing the large part again, and without keeping its
    compressor (256 KiB): the large part ends with a sync flush, after which a deflate stream
    may go on with the blocks of another compressor; the trailer is computed here."""

    def __init__(self, parts: tuple[bytes, ...]) -> None:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate: the gzip frame is ours
        pieces = [GZIP_HEADER]
        self._crc = self._size = 0
        for part in parts:
            pieces.append(compressor.compress(part))
            self._crc = zlib.crc32(part, self._crc)
            self._size += len(part)
        pieces.append(compressor.flush(zlib.Z_SYNC_FLUSH))
        self.prefix = b"".join(pieces)

    def finish(self, tail: bytes) -> bytes:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        crc, size = zlib.crc32(tail, self._crc), self._size + len(tail)
        return compressor.compress(tail) + compressor.flush() + struct.pack("<II", crc, size & 0xFFFFFFFF)


class ExpositionRenderer:
    """Renders /metrics in the background: every variant once per new snapshot, the process_*
    part every ``PROCESS_REFRESH`` seconds; scrapes take the newest finished parts.

    A new snapshot is told by identity (the exporter publishes a new object). The per-stamp
    part is written only for stamps whose report changed (``StampExposition``); the registry
    holds the rest. Full renders take at most half of a core: after one that took d seconds
    the next waits d seconds.
    """

    def __init__(
        self,
        exporter: Exporter,
        registry: CollectorRegistry,
        process_registry: CollectorRegistry | None = None,
    ) -> None:
        self.exporter = exporter
        self.registry = registry
        self.process_registry = process_registry
        self.stamps = StampExposition((TEXT, OPENMETRICS))
        # (format, gzip) -> the parts of the body, joined by the transport.
        self.variants: dict[tuple[str, bool], tuple[bytes, ...]] | None = None
        self.rendered: object = None  # the snapshot the variants show
        self.ready = False  # a render begun after the exporter was ready has finished
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="render", daemon=True)
        self._big: dict[str, tuple[tuple[bytes, ...], _Compressed]] = {}
        self._started = 0  # full renders begun
        self._finished = 0  # the number of the last full render finished

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:  # whoever waits for a render (a reload) stops waiting
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(10)

    def wait_rendered(self, snapshot: object, timeout: float) -> bool:
        """Wait until ``snapshot`` (or a newer one) is what scrapes get."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self.rendered is snapshot:
                return True
            wanted = self._started + 1  # a render that begins from now on shows it or a newer one
            while self._finished < wanted and self.rendered is not snapshot:  # or the one under way did
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._cond.wait(remaining)
        return True

    def _run(self) -> None:
        next_full = next_process = next_release = 0.0
        released = True  # nothing rendered since memory was last handed back
        while not self._stop.is_set():
            now = time.monotonic()
            ready = self.exporter.is_ready()  # before the snapshot: that one is at least as new
            snapshot = self.exporter.snapshot()
            try:
                if snapshot is not self.rendered and now >= next_full:
                    with self._cond:
                        self._started += 1
                        number = self._started
                    self._render_big(snapshot)
                    self._publish(snapshot, ready, number)
                    next_full = time.monotonic() + (time.monotonic() - now)
                    next_process = time.monotonic() + PROCESS_REFRESH
                    released = False
                elif snapshot is self.rendered and ready and not self.ready:
                    with self._cond:
                        self.ready = True
                elif now >= next_process and self._big:
                    self._publish(self.rendered, self.ready, self._finished)
                    next_process = now + PROCESS_REFRESH
            except Exception:  # a render that fails keeps the last good bytes and is retried
                log.exception("Rendering the exposition failed")
                next_full = time.monotonic() + 1.0
            if not released and now >= next_release:  # reads and renders leave freed memory in glibc's arenas
                memory.release()
                released, next_release = True, time.monotonic() + RELEASE_INTERVAL
            self._stop.wait(SNAPSHOT_POLL)

    def _render_big(self, snapshot: Snapshot | None) -> None:
        rest = {}
        for fmt in (TEXT, OPENMETRICS):
            data = encode(self.registry, fmt)
            if fmt == OPENMETRICS and data.endswith(EOF):
                data = data[: -len(EOF)]  # the process part ends the exposition
            rest[fmt] = data
        # The stamps' part is kept once, in the parts an answer is written from (StampExposition).
        parts = {fmt: (data,) for fmt, data in rest.items()}
        if snapshot is not None:
            parts = self.stamps.render_parts(snapshot.report, tails=rest)
        self._big = {fmt: (data, _Compressed(data)) for fmt, data in parts.items()}

    def _publish(self, snapshot: object, ready: bool, number: int) -> None:
        variants = {}
        for fmt, (parts, compressed) in self._big.items():
            if self.process_registry is not None:
                tail = encode(self.process_registry, fmt)
            else:
                tail = EOF if fmt == OPENMETRICS else b""
            variants[(fmt, False)] = (*parts, tail)
            variants[(fmt, True)] = (compressed.prefix, compressed.finish(tail))
        with self._cond:
            self.variants = variants
            self.rendered = snapshot
            self.ready = self.ready or ready
            self._finished = number
            self._cond.notify_all()


class ViewCache:
    """Bodies rendered for one snapshot: /probe per configured stamp and variant, the JSON API.

    Keys are checked against the configuration before they get here, so the cache holds at
    most (stamps x 4 + 1) entries; a new snapshot empties it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: object = None
        self._entries: dict[tuple[object, ...], bytes] = {}

    def get(self, key: tuple[object, ...], snapshot: object, render: Callable[[], bytes]) -> bytes:
        with self._lock:
            if self._snapshot is snapshot and key in self._entries:
                return self._entries[key]
        body = render()
        with self._lock:
            if self._snapshot is not snapshot:
                self._snapshot, self._entries = snapshot, {}
            self._entries[key] = body
        return body


# ---------------------------------------------------------------- requests


class _RefusalError(Exception):
    """A request answered with an error and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    __slots__ = ("body_length", "close", "headers", "method", "path", "query", "target", "version")

    def __init__(self, method: str, target: str, version: int, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        parts = urlsplit(target)
        self.path = parts.path
        self.query = parts.query
        connection = headers.get("connection", "").lower()
        self.close = "close" in connection if version == 1 else "keep-alive" not in connection
        self.body_length = 0


def parse_head(head: bytes) -> Request:
    """A request line and header block (without the blank line) → ``Request``, or ``_RefusalError``.

    Strict where ambiguity lets requests be smuggled: no folded lines, no space before a
    colon, one Content-Length, no Transfer-Encoding, no body on GET or HEAD.
    """
    lines = head.split(b"\r\n")
    match = REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        if re.fullmatch(rb"[A-Z]+ \S+ HTTP/\d+\.\d+", lines[0]):
            raise _RefusalError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.0 and HTTP/1.1 only")
        raise _RefusalError(HTTPStatus.BAD_REQUEST, "malformed request line")
    if len(lines) - 1 > MAX_HEADER_LINES:
        raise _RefusalError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header lines")
    headers: dict[str, str] = {}
    lengths: list[bytes] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or TOKEN.fullmatch(name) is None:
            raise _RefusalError(HTTPStatus.BAD_REQUEST, "malformed header line")
        value = value.strip(b" \t")
        if BAD_VALUE.search(value):
            raise _RefusalError(HTTPStatus.BAD_REQUEST, "control character in a header value")
        key = name.decode("ascii").lower()
        if key == "transfer-encoding":
            raise _RefusalError(HTTPStatus.BAD_REQUEST, "Transfer-Encoding is not accepted")
        if key == "content-length":
            lengths.append(value)
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    method = match.group(1).decode()
    request = Request(method, match.group(2).decode("latin-1"), int(match.group(3)), headers)
    if len(lengths) > 1:
        raise _RefusalError(HTTPStatus.BAD_REQUEST, "more than one Content-Length")
    if lengths:
        if not lengths[0].isdigit():
            raise _RefusalError(HTTPStatus.BAD_REQUEST, "Content-Length must be a non-negative number")
        request.body_length = int(lengths[0])
        if request.body_length and method in ("GET", "HEAD"):
            raise _RefusalError(HTTPStatus.BAD_REQUEST, f"a {method} request takes no body")
    return request


# ---------------------------------------------------------------- connections

# Connection states. Those in EVICTABLE have nobody waiting for an answer yet (a body still
# arriving included: a client that drips one must not hold its place against the others).
HANDSHAKE, IDLE, HEAD, BODY, ANSWER, LINGER, CLOSED, NEW = range(8)
EVICTABLE = (HANDSHAKE, IDLE, HEAD, BODY, LINGER)


class Connection(asyncio.Protocol):
    """One client connection: TLS (optional), then requests one at a time, each with deadlines."""

    def __init__(self, server: ExporterHTTPServer) -> None:
        self.server = server
        self.loop = server.loop
        self.client = ""
        self.security = server.security  # one configuration for the whole connection
        self.transport: asyncio.Transport | None = None
        self.state = NEW
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0  # loop time by which the current phase must end
        self.tls: ssl.SSLObject | None = None
        self._incoming: ssl.MemoryBIO | None = None
        self._outgoing: ssl.MemoryBIO | None = None
        self._pending: list[memoryview] = []  # response parts not yet handed to the transport (TLS)
        self._fd = -1  # the socket's descriptor, written directly (plain HTTP)
        self._out: list[bytes | memoryview] = []  # what is left of an answer written directly
        self._waiting = -1  # a duplicate of the socket, registered while the client's window is full
        self._paused = False
        self._after_write: Callable[[], None] | None = None
        self._first = True
        self._eof = False  # the client has sent all it will send
        self.request: Request | None = None
        self.body_needed = 0

    # ------------------------------------------------ transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._fd = sock.fileno()
            # Without this, an answer's last segment (or, over TLS, its body after its head)
            # waits for the client's delayed ACK under Nagle's algorithm: ~40 ms per answer on
            # a kept-alive connection (asyncio sets it only on sockets whose protocol number is
            # known, not accepted ones).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.admit(self):
            self.abort()
            return
        if self.security.tls is not None:
            self._set_state(HANDSHAKE, HANDSHAKE_TIMEOUT)
        else:
            self._set_state(IDLE, IDLE_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        if self.state == LINGER or self.state == CLOSED:
            return  # unread input of a refused request: dropped
        if self.state == HANDSHAKE:
            if self._first:
                self._first = False
                if data[0] != TLS_HANDSHAKE_RECORD:
                    self._refuse_plain()
                    return
                tls = self.security.tls
                assert tls is not None
                self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                self.tls = tls.context.wrap_bio(self._incoming, self._outgoing, server_side=True)
            assert self._incoming is not None
            self._incoming.write(data)
            self._handshake()
            return
        if self.tls is not None:
            assert self._incoming is not None
            self._incoming.write(data)
            data = self._decrypt()
            if not data:
                return
        self._received(data)

    def eof_received(self) -> bool | None:
        if self.state in (BODY, ANSWER) or (self.state == IDLE and self.buffer):
            self._eof = True
            return True  # a half-closed client still gets its answers
        self.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self._cancel_timer()
        self._pending.clear()
        self._stop_writing()
        self.server.forget(self)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    # ------------------------------------------------ TLS

    def _handshake(self) -> None:
        assert self.tls is not None
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return
        except (ssl.SSLError, OSError) as err:
            log.debug("TLS handshake failed", extra={"client": self.client, "err": str(err)})
            self._flush_tls()
            self.abort()
            return
        self._flush_tls()
        self.server.handshake_done(self)
        tls = self.security.tls
        assert tls is not None
        if tls.client_allowed_sans and not (peer_sans(self.tls.getpeercert()) & set(tls.client_allowed_sans)):
            log.debug("Client certificate SAN not allowed", extra={"client": self.client})
            self.abort()
            return
        self._set_state(IDLE, IDLE_TIMEOUT)
        data = self._decrypt()  # application data that came with the handshake's end
        if data:
            self._received(data)

    def _decrypt(self) -> bytes:
        assert self.tls is not None
        chunks = []
        try:
            while True:
                chunk = self.tls.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            self.eof_received()
        except (ssl.SSLError, OSError):
            self.abort()
        self._flush_tls()
        return b"".join(chunks)

    def _flush_tls(self) -> None:
        assert self._outgoing is not None
        data = self._outgoing.read()
        if data and self.transport is not None:
            self.transport.write(data)

    def _refuse_plain(self) -> None:
        """Plain HTTP on the TLS port: say so in plain HTTP, as Go's servers do."""
        self.server.handshake_done(self)
        self._write_raw(
            _response_head(HTTPStatus.BAD_REQUEST, "text/plain; charset=utf-8", 48, {"Connection": "close"})
            + b"Client sent an HTTP request to an HTTPS server.\n"
        )
        self._linger()

    # ------------------------------------------------ requests

    def _received(self, data: bytes) -> None:
        self.buffer += data
        if self.state != ANSWER:
            self._advance()
        elif len(self.buffer) > MAX_HEADER_BYTES and self.transport is not None:
            # An answer in progress: the next request waits its turn, in this buffer up to a
            # header block's worth and then in the kernel. (Pausing at every request cost two
            # epoll_ctl calls per scrape.)
            self.transport.pause_reading()

    def _advance(self) -> None:
        """Take the next request (or body bytes) out of the buffer, as far as it goes."""
        if self.state == BODY:
            take = min(self.body_needed, len(self.buffer))
            del self.buffer[:take]
            self.body_needed -= take
            if self.body_needed == 0:
                self._set_state(ANSWER, RESPONSE_TIMEOUT)
                self.server.dispatch_reload(self)
            return
        if self.state not in (IDLE, HEAD) or not self.buffer:
            return
        if self.state == IDLE:
            while self.buffer[:2] == b"\r\n":  # blank lines before a request are ignored (RFC 9112)
                del self.buffer[:2]
            if not self.buffer:
                return
            self._set_state(HEAD, REQUEST_TIMEOUT)
        end = self.buffer.find(b"\r\n\r\n", 0, MAX_HEADER_BYTES + 4)
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"header block over {MAX_HEADER_BYTES} bytes")
            elif b"\n\n" in self.buffer or b"\n\r\n" in self.buffer:
                self._error(HTTPStatus.BAD_REQUEST, "lines must end in CRLF")
            return
        head = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        try:
            request = parse_head(head)
        except _RefusalError as refusal:
            self._error(refusal.status, refusal.message)
            return
        self.request = request
        # A request with a body keeps its deadline: it covers the line, the headers and the body.
        self._set_state(ANSWER, RESPONSE_TIMEOUT, keep_deadline=request.body_length > 0)
        self.server.handle(self, request)

    def read_body(self) -> None:
        """Called for an authorised POST /-/reload: read its body within the request's deadline."""
        assert self.request is not None
        self.body_needed = self.request.body_length
        self._set_state(BODY, REQUEST_TIMEOUT, keep_deadline=True)  # the request's deadline covers its body
        if self.transport is not None:
            self.transport.resume_reading()
        self._advance()

    # ------------------------------------------------ answers

    def respond(
        self,
        status: int,
        body: bytes | tuple[bytes, ...],
        content_type: str,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        if self.state != ANSWER or self.request is None:
            return
        request = self.request
        parts = body if isinstance(body, tuple) else (body,)
        length = sum(len(p) for p in parts)
        extra = dict(headers or {})
        if content_type.startswith("text/html"):
            extra.setdefault("Content-Security-Policy", PAGE_CSP)
            extra.setdefault("X-Content-Type-Options", "nosniff")
        extra.update(self.security.headers)  # the operator's web configuration wins
        close = close or request.close or self.server.draining
        if close:
            extra["Connection"] = "close"
        head = _response_head(status, content_type, length, extra)
        self._set_deadline(RESPONSE_TIMEOUT)
        self.server.log_request(self, status)
        if request.method == "HEAD":
            parts = ()
        self._after_write = self._linger if close else self._next_request
        transport = self.transport
        if (
            self.tls is None
            and self._fd >= 0
            and transport is not None
            and not transport.is_closing()
            and not transport.get_write_buffer_size()  # what the transport holds goes first
        ):
            self._out = [part for part in (head, *parts) if part]  # a view only of a part written in part
            self._write_out(self._fd)
        elif length <= WRITE_CHUNK:  # one copy is cheaper than a system call per part
            self._queue((head + b"".join(parts),))
        else:
            self._queue((head, *parts))

    def _write_out(self, fd: int) -> None:
        """Write the answer's head and parts with one system call (writev) from the rendered bytes
        themselves: no copy in the process, no thread, no transport buffer. When the client's
        window is full, the loop waits for it on a duplicate of the socket (the transport owns
        the original's registration) and goes on from there; a slow reader costs a registration."""
        out = self._out
        try:
            while out:
                sent = os.writev(fd, out)
                if sent <= 0:
                    raise BrokenPipeError("the socket took nothing")
                while sent and out:
                    if sent >= len(out[0]):
                        sent -= len(out.pop(0))
                    else:
                        out[0] = memoryview(out[0])[sent:]
                        sent = 0
        except BlockingIOError:
            if self._waiting < 0:
                try:
                    self._waiting = os.dup(fd)
                except OSError:  # out of descriptors: this client cannot be waited for
                    self.abort()
                    return
                self.loop.add_writer(self._waiting, self._writable)
            return
        except OSError:
            self.abort()
            return
        self._stop_writing()
        if self._after_write is not None and self.state == ANSWER:
            after, self._after_write = self._after_write, None
            after()

    def _writable(self) -> None:
        if self.state == ANSWER:
            self._write_out(self._waiting)
        else:
            self._stop_writing()

    def _stop_writing(self) -> None:
        self._out = []
        if self._waiting >= 0:
            self.loop.remove_writer(self._waiting)
            os.close(self._waiting)
            self._waiting = -1

    def text(self, status: int, text: str, headers: dict[str, str] | None = None, close: bool = False) -> None:
        self.respond(status, text.encode(), "text/plain; charset=utf-8", headers, close)

    def _queue(self, parts: tuple[bytes, ...]) -> None:
        self._pending.extend(memoryview(part) for part in parts if part)
        self._pump()

    def _pump(self) -> None:
        """Hand response bytes to the transport while it accepts them, a chunk at a time, so a
        slow reader holds at most a chunk of copies, never the whole exposition."""
        while self._pending and not self._paused and self.state != CLOSED:
            chunk = self._take(WRITE_CHUNK)
            if self.tls is not None:
                try:
                    self.tls.write(chunk)
                except (ssl.SSLError, OSError):
                    self.abort()
                    return
                self._flush_tls()
            else:
                self._write_raw(chunk)
        if not self._pending and self._after_write is not None and self.state == ANSWER:
            after, self._after_write = self._after_write, None
            after()

    def _take(self, limit: int) -> bytes | memoryview:
        """Up to ``limit`` bytes of the answer: small parts (a family's # lines) copied together, a
        large one a chunk at a time as it is, so that TLS records and writes stay large."""
        pieces: list[memoryview] = []
        size = 0
        while self._pending and size < limit:
            view = self._pending[0]
            if pieces and len(view) > SMALL_PART:
                break
            if len(view) > limit - size:
                pieces.append(view[: limit - size])
                self._pending[0] = view[limit - size :]
                size = limit
            else:
                pieces.append(self._pending.pop(0))
                size += len(view)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _write_raw(self, data: bytes | memoryview) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _next_request(self) -> None:
        self.request = None
        self._set_state(IDLE, IDLE_TIMEOUT)
        if self.transport is not None:
            self.transport.resume_reading()  # when the buffer had filled
        if self.buffer:
            # Pipelined requests are taken from the loop, not from within the answer before them:
            # answered one inside the other, a hundred-odd of them overflowed the stack.
            self.loop.call_soon(self._pipelined)
        elif self._eof:
            self.close()  # a half-closed client has had every answer it asked for

    def _pipelined(self) -> None:
        if self.state != IDLE:
            return
        self._advance()
        if self._eof and self.state in (IDLE, HEAD):
            self.close()

    def _error(self, status: int, message: str) -> None:
        """Refuse what was read so far: an answer, then the connection closed."""
        if self.request is None:
            self.request = Request("GET", "/", 1, {})
        self._set_state(ANSWER, RESPONSE_TIMEOUT)
        self.text(status, f"{HTTPStatus(status).phrase}: {message}\n", close=True)

    def _linger(self) -> None:
        """Close after the answer is out: FIN, then drop what the client still sends for a
        moment (closing with unread input would reset the connection and lose the answer)."""
        self.buffer.clear()
        self._set_state(LINGER, LINGER_TIMEOUT)
        if self.transport is None or self.transport.is_closing():
            return
        if self.server.draining:
            self.transport.close()  # after what is buffered has been written
            return
        if self.tls is not None:
            with contextlib.suppress(ssl.SSLError, OSError, ValueError):
                self.tls.unwrap()
            with contextlib.suppress(ssl.SSLError, AssertionError):
                self._flush_tls()
            self.transport.close()
            return
        self.transport.resume_reading()
        if self.transport.can_write_eof() and not self._eof:
            self.transport.write_eof()
        else:
            self.transport.close()  # after what is buffered has been written

    # ------------------------------------------------ deadlines and states

    def _set_state(self, state: int, timeout: float, keep_deadline: bool = False) -> None:
        previous, self.state = self.state, state
        self.server.state_changed(self, previous, state)
        if not keep_deadline:
            self._set_deadline(timeout)

    def _set_deadline(self, timeout: float) -> None:
        """The timer is moved only when the deadline comes sooner; a later one is taken up when the
        timer fires. A scrape passes four deadlines, and re-arming the timer at each cost 13 us
        of the 70 us of CPU a gzip scrape took."""
        self.deadline = self.loop.time() + timeout
        if self.timer is None or self.timer.when() > self.deadline:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(self.deadline, self._expired)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self) -> None:
        self.timer = None
        if self.loop.time() < self.deadline:  # the deadline moved on since the timer was set
            self.timer = self.loop.call_at(self.deadline, self._expired)
            return
        if self.state == LINGER:
            self.close()
        elif self.state in (HEAD, BODY):
            log.debug("Request deadline passed", extra={"client": self.client})
            self.abort()
        else:
            self.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.state = CLOSED
        self._pending.clear()
        self._stop_writing()
        if self.transport is not None:
            self.transport.abort()


_DATE: list[object] = [0, b""]


def _date() -> bytes:
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, email.utils.formatdate(now, usegmt=True).encode()
    return _DATE[1]  # type: ignore[return-value]


SERVER = f"azurestack-exporter/{__version__}".encode()


def _response_head(status: int, content_type: str, length: int, headers: dict[str, str]) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode()),
        b"Server: " + SERVER,
        b"Date: " + _date(),
        b"Content-Type: " + content_type.encode("latin-1"),
        b"Content-Length: %d" % length,
    ]
    lines.extend(f"{k}: {v}".encode("latin-1") for k, v in headers.items())
    return b"\r\n".join(lines) + b"\r\n\r\n"


# ---------------------------------------------------------------- the server


class ExporterHTTPServer:
    """Listens, admits and evicts connections, routes requests; runs its loop in a thread."""

    def __init__(
        self,
        address: tuple[str, int],
        exporter: Exporter,
        registry: CollectorRegistry,
        telemetry_path: str,
        security: WebSecurity | None = None,
        process_metrics: bool = True,
    ) -> None:
        self.exporter = exporter
        self.registry = registry
        self.telemetry_path = telemetry_path
        self.security = security or WebSecurity()
        self.auth = BasicAuth()
        self.checks = CredentialChecks(self.auth)
        # The part of /metrics refreshed every PROCESS_REFRESH seconds: the publisher's liveness
        # (it must tell when no new evaluation comes) and the process_* metrics.
        process_registry = CollectorRegistry(auto_describe=False)
        process_registry.register(LivenessCollector(exporter.snapshot))
        if process_metrics:
            ProcessCollector(registry=process_registry)
            PlatformCollector(registry=process_registry)
        self.renderer = ExpositionRenderer(exporter, registry, process_registry)
        self.views = ViewCache()
        self._view_workers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="views")
        self._pending_views = 0
        self._reload_workers = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="reload")
        self.reload_hook: Callable[[], tuple[bool, str]] = exporter.reload
        self.max_connections = connection_limit()
        self.max_per_client = MAX_PER_CLIENT
        self.max_handshakes = MAX_HANDSHAKES
        self.draining = False
        self.loop = asyncio.new_event_loop()
        self._connections: set[Connection] = set()
        self._evictable: OrderedDict[Connection, None] = OrderedDict()
        self._handshaking: OrderedDict[Connection, None] = OrderedDict()
        self._per_client: dict[str, OrderedDict[Connection, None]] = {}
        self._counts: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._drained = threading.Event()
        self.socket = listening_socket(address)
        self.server_address = self.socket.getsockname()
        self._listener: asyncio.Server | None = None

    # ------------------------------------------------ lifecycle (called from other threads)

    def start(self) -> None:
        self.renderer.start()
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._listener = self.loop.run_until_complete(
            self.loop.create_server(lambda: Connection(self), sock=self.socket, backlog=1024)
        )
        self.loop.run_forever()

    def shutdown(self, grace: float) -> bool:
        """Stop accepting, close connections nobody waits on, let answers in progress finish
        (up to ``grace`` seconds), then close everything. True when nothing was cut off."""
        if not self._thread.is_alive():
            return True
        self.loop.call_soon_threadsafe(self._begin_drain)
        drained = self._drained.wait(grace)
        done = threading.Event()

        def finish() -> None:
            for conn in list(self._connections):
                conn.abort()
            self.loop.call_soon(self.loop.stop)
            done.set()

        self.loop.call_soon_threadsafe(finish)
        self._thread.join(5)
        self.renderer.stop()
        self._view_workers.shutdown(wait=False, cancel_futures=True)
        self._reload_workers.shutdown(wait=False, cancel_futures=True)
        self.checks.close()
        return drained

    def server_close(self) -> None:
        with contextlib.suppress(OSError):
            self.socket.close()
        if not self._thread.is_alive() and not self.loop.is_closed():
            self.loop.close()

    def _begin_drain(self) -> None:
        self.draining = True
        if self._listener is not None:
            self._listener.close()  # stop accepting
        for conn in list(self._evictable):
            conn.abort()
        self._check_drained()

    def _check_drained(self) -> None:
        if self.draining and not self._connections:
            self._drained.set()

    # ------------------------------------------------ admission and eviction (loop thread)

    def admit(self, conn: Connection) -> bool:
        """Within the caps, or after dropping the connection that has waited longest without
        being answered (this client's own first); False when every one is being answered."""
        if self.draining:
            return False
        client = conn.client
        clients = self._per_client.get(client)
        if self._counts.get(client, 0) >= self.max_per_client and not (clients and self._evict_oldest(clients)):
            return False
        if len(self._connections) >= self.max_connections and not self._evict_oldest(self._evictable):
            return False
        if conn.security.tls is not None and len(self._handshaking) >= self.max_handshakes:
            self._evict_oldest(self._handshaking)
        self._connections.add(conn)
        self._counts[client] = self._counts.get(client, 0) + 1
        self._per_client.setdefault(client, OrderedDict())
        return True

    def _evict_oldest(self, candidates: OrderedDict[Connection, None]) -> bool:
        for conn in candidates:
            conn.abort()
            self.forget(conn)
            return True
        return False

    def state_changed(self, conn: Connection, previous: int, state: int) -> None:
        if conn not in self._connections:
            return
        clients = self._per_client[conn.client]
        if state == HANDSHAKE:
            self._handshaking[conn] = None
        if state in EVICTABLE:
            if previous not in EVICTABLE or state == IDLE:
                # Order by how long it has waited: an idle keep-alive goes to the back.
                self._evictable.pop(conn, None)
                clients.pop(conn, None)
                self._evictable[conn] = None
                clients[conn] = None
        else:
            self._evictable.pop(conn, None)
            clients.pop(conn, None)

    def handshake_done(self, conn: Connection) -> None:
        self._handshaking.pop(conn, None)

    def forget(self, conn: Connection) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        self._evictable.pop(conn, None)
        self._handshaking.pop(conn, None)
        clients = self._per_client.get(conn.client)
        if clients is not None:
            clients.pop(conn, None)
        count = self._counts.get(conn.client, 1) - 1
        if count <= 0:
            self._counts.pop(conn.client, None)
            self._per_client.pop(conn.client, None)
        else:
            self._counts[conn.client] = count
        if self.draining:
            self._check_drained()

    def log_request(self, conn: Connection, status: int) -> None:
        if log.isEnabledFor(logging.DEBUG) and conn.request is not None:
            log.debug(
                "HTTP request",
                extra={
                    "client": conn.client,
                    "request": f"{conn.request.method} {conn.request.target}",
                    "status": status,
                },
            )

    # ------------------------------------------------ routing (loop thread)

    def handle(self, conn: Connection, request: Request) -> None:
        method, path = request.method, request.path
        if method in ("GET", "HEAD") and path in UNAUTHENTICATED:
            # Health and readiness say nothing about the fleet: probes (a kubelet, a load
            # balancer) reach them without the scrapers' password.
            self._get(conn, request)
            return
        if method not in ("GET", "HEAD", "POST"):
            conn.text(HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed\n", {"Allow": "GET, HEAD, POST"}, close=True)
            return
        users = conn.security.users
        verdict = self.auth.cached(users, request.headers.get("authorization"))
        if verdict is None:
            future = self.checks.submit(users, request.headers.get("authorization"))
            if future is None:
                conn.text(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "Too many password checks at once; try again\n",
                    {"Retry-After": "1"},
                    close=method == "POST",
                )
                return
            future.add_done_callback(
                lambda f: self.loop.call_soon_threadsafe(self._authorised, conn, request, _result(f))
            )
            return
        self._authorised(conn, request, verdict)

    def _authorised(self, conn: Connection, request: Request, ok: bool) -> None:
        if conn.state != ANSWER:
            return
        if not ok:
            conn.text(
                HTTPStatus.UNAUTHORIZED,
                "Unauthorized\n",
                {"WWW-Authenticate": 'Basic realm="azurestack-exporter"'},
                close=request.method == "POST",  # its body is never read
            )
            return
        if request.method == "POST":
            if request.path != "/-/reload":
                conn.text(HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed\n", {"Allow": "GET, HEAD"}, close=True)
            elif request.body_length > MAX_BODY_BYTES:
                conn.text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request body too large\n", close=True)
            else:
                conn.read_body()
            return
        self._get(conn, request)

    def dispatch_reload(self, conn: Connection) -> None:
        """The body is in: reload in a worker thread, answer once scrapes see the result."""

        def reload() -> tuple[bool, str]:
            result = self.reload_hook()
            self.renderer.wait_rendered(self.exporter.snapshot(), timeout=REQUEST_TIMEOUT)
            return result

        future = self._reload_workers.submit(reload)

        def answer(f: concurrent.futures.Future[tuple[bool, str]]) -> None:
            ok, message = _result(f, (False, "reload failed"))
            conn.text(HTTPStatus.OK if ok else HTTPStatus.INTERNAL_SERVER_ERROR, message + "\n")

        future.add_done_callback(lambda f: self.loop.call_soon_threadsafe(answer, f))

    def _get(self, conn: Connection, request: Request) -> None:
        path = request.path
        if path == self.telemetry_path:
            self._metrics(conn, request)
        elif path == "/-/healthy":
            conn.text(HTTPStatus.OK, "Healthy\n")
        elif path == "/-/ready":
            if self.exporter.is_ready() and self.renderer.ready:
                conn.text(HTTPStatus.OK, "Ready\n")
            else:
                conn.text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready: the first evaluation has not finished\n")
        elif path == "/probe":
            self._view(conn, lambda: self._probe(request))
        elif path == "/":
            self._view(conn, self._status_page)
        elif path == "/static/status.css":
            conn.respond(
                HTTPStatus.OK, statuspage.CSS.encode(), "text/css; charset=utf-8", {"Cache-Control": "max-age=3600"}
            )
        elif path == "/api/v1/stamps":
            self._view(conn, self._stamps)
        elif path == "/-/reload":
            conn.text(HTTPStatus.METHOD_NOT_ALLOWED, "Use POST to reload\n", {"Allow": "POST"})
        else:
            conn.text(HTTPStatus.NOT_FOUND, "Not found\n")

    def _metrics(self, conn: Connection, request: Request) -> None:
        variants = self.renderer.variants
        if variants is None:  # only before the first render: ask again shortly
            self.loop.call_later(0.05, self._metrics_when_rendered, conn, request, time.monotonic() + REQUEST_TIMEOUT)
            return
        fmt = choose_format(request.headers.get("accept", ""))
        zipped = "gzip" in request.headers.get("accept-encoding", "")
        conn.respond(
            HTTPStatus.OK, variants[(fmt, zipped)], CONTENT_TYPES[fmt], {"Content-Encoding": "gzip"} if zipped else None
        )

    def _metrics_when_rendered(self, conn: Connection, request: Request, deadline: float) -> None:
        if conn.state != ANSWER:
            return
        if self.renderer.variants is None and time.monotonic() < deadline:
            self.loop.call_later(0.05, self._metrics_when_rendered, conn, request, deadline)
        elif self.renderer.variants is None:
            conn.text(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready\n")
        else:
            self._metrics(conn, request)

    # ------------------------------------------------ views rendered in worker threads

    def _view(self, conn: Connection, render: Callable[[], tuple[int, bytes, str, dict[str, str] | None]]) -> None:
        if self._pending_views >= MAX_PENDING_VIEWS:
            conn.text(HTTPStatus.SERVICE_UNAVAILABLE, "Busy; try again\n", {"Retry-After": "1"})
            return
        self._pending_views += 1

        def done(f: concurrent.futures.Future) -> None:
            self._pending_views -= 1
            try:
                status, body, content_type, headers = f.result()
            except Exception:
                log.exception("Rendering a page failed")
                conn.text(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal error\n")
                return
            conn.respond(status, body, content_type, headers)

        try:
            future = self._view_workers.submit(render)
        except RuntimeError:  # shutting down
            self._pending_views -= 1
            conn.text(HTTPStatus.SERVICE_UNAVAILABLE, "Shutting down\n", close=True)
            return
        future.add_done_callback(lambda f: self.loop.call_soon_threadsafe(done, f))

    def shown(self) -> Snapshot | None:
        """The evaluation every view shows: the one /metrics serves, so that the JSON API, the
        status page and /probe never tell a newer story than the scrape that follows them."""
        rendered = self.renderer.rendered
        return rendered if isinstance(rendered, Snapshot) else self.exporter.snapshot()

    def _probe(self, request: Request) -> tuple[int, bytes, str, dict[str, str] | None]:
        targets = parse_qs(request.query).get("target", [])
        if len(targets) != 1 or not targets[0]:
            return _plain(HTTPStatus.BAD_REQUEST, "Give one target: /probe?target=<stamp name>\n")
        snapshot = self.shown()
        stamp = snapshot.report.stamp(targets[0]) if snapshot else None
        if snapshot is None or stamp is None:
            return _plain(HTTPStatus.BAD_REQUEST, f"Unknown target {targets[0]!r}: not a configured stamp\n")
        report = snapshot.report
        fmt = choose_format(request.headers.get("accept", ""))
        zipped = "gzip" in request.headers.get("accept-encoding", "")

        def render() -> bytes:
            families = [*stamp_families([stamp], report.generated_at), *policy_families(report)]
            body = encode(_StampRegistry(families), fmt)
            return gzip.compress(body, compresslevel=6) if zipped else body

        body = self.views.get(("probe", stamp.name, fmt, zipped), snapshot, render)
        return HTTPStatus.OK, body, CONTENT_TYPES[fmt], {"Content-Encoding": "gzip"} if zipped else None

    def _stamps(self) -> tuple[int, bytes, str, dict[str, str] | None]:
        snapshot = self.shown()
        if snapshot is None:
            return _plain(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready\n")
        body = self.views.get(
            ("json",), snapshot, lambda: json.dumps(to_json(snapshot.report), indent=2).encode() + b"\n"
        )
        return HTTPStatus.OK, body, "application/json", None

    def _status_page(self) -> tuple[int, bytes, str, dict[str, str] | None]:
        snapshot = self.shown()
        if snapshot is None:
            return _plain(HTTPStatus.SERVICE_UNAVAILABLE, "Not ready\n")
        page = statuspage.render(snapshot.report, time.time(), self.telemetry_path)
        return HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", None


def _plain(status: int, text: str) -> tuple[int, bytes, str, dict[str, str] | None]:
    return status, text.encode(), "text/plain; charset=utf-8", None


def _result(future: concurrent.futures.Future, default: object = False):  # type: ignore[no-untyped-def]
    try:
        return future.result()
    except Exception:
        log.exception("A worker failed")
        return default


def listening_socket(address: tuple[str, int]) -> socket.socket:
    """A bound, listening socket: IPv6 for an IPv6 host (``::`` takes IPv4 too), else IPv4."""
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host or "0.0.0.0", port))  # noqa: S104 - ":10132" means every address, as in Go
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
