"""A fleet of fake Azure Stack Hub stamps, each on its own loopback address and certificate.

Stamp i answers at ``https://127.10.a.b:PORT/stamps/<name>`` (its admin management endpoint)
and its identity provider (AD FS) at ``https://127.11.a.b:PORT/adfs``, as a real stamp has
``adminmanagement.<region>`` and ``adfs.<region>``: two origins, each with its own server
certificate (its address as IP SAN) issued by one CA, so every stamp is configured with the
same ``ca_file``. All the listening sockets are served by one asyncio event loop (epoll) on one
thread: a request is read whole, waits the injected latency without holding anything up, and
is answered by the fake's own handler (``tests/fake_azurestack.py``: the same routes, checks
and answers as its threaded server). A connection left idle ``idle_timeout`` seconds is closed,
as HTTP.sys does after 120 s by default.

Every request is logged with its time, kind and connection, per stamp: the benchmark reads
from it the requests of each read, their kinds and the TLS handshakes they cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fake_azurestack import FakeAzureStack, FakeStamp, respond
from pki import Issued, make_server_cert

# Kinds of request, as the benchmark reports them.
KINDS = ("metadata", "identity", "token", "discovery", "location", "updates", "runs", "alerts", "other")
MANAGEMENT_NET, IDENTITY_NET = 10, 11  # 127.10.x.y: management endpoints; 127.11.x.y: identity providers
MAX_HEAD = 64 * 1024


def address(net: int, index: int) -> str:
    """The loopback address of stamp ``index`` in 127.<net>.0.0/16 (250 a /24, none ending in 0 or 255)."""
    return f"127.{net}.{index // 250}.{index % 250 + 1}"


def kind_of(method: str, path: str) -> str:
    """What a request asks for, from its method and path (the query left out)."""
    segments = [s.lower() for s in path.split("?", 1)[0].split("/") if s]
    if segments[-2:] == [".well-known", "openid-configuration"]:
        return "identity"
    if method == "POST" and segments[-1:] == ["token"]:
        return "token"
    if segments[:1] != ["stamps"] or len(segments) < 3:
        return "other"
    rest = segments[2:]
    if rest == ["metadata", "endpoints"]:
        return "metadata"
    if rest == ["subscriptions"] or (len(rest) == 3 and rest[0] == "subscriptions" and rest[2] == "locations"):
        return "discovery"
    if len(rest) >= 8 and rest[0] == "subscriptions" and rest[6] == "updatelocations":
        tail = rest[8:]
        if not tail:
            return "location"
        if tail == ["updates"]:
            return "updates"
        if len(tail) == 3 and tail[0] == "updates" and tail[2] == "updateruns":
            return "runs"
    if len(rest) == 9 and rest[0] == "subscriptions" and rest[6] == "regionhealths" and rest[8] == "alerts":
        return "alerts"  # the Health provider's alerts list
    return "other"


@dataclass
class Request:
    at: float  # time.monotonic() when it arrived whole
    kind: str
    connection: int  # fleet-wide connection number: a new one is a TLS handshake


@dataclass
class Member:
    """One stamp of the fleet: the fake's view of it (its own origins) and what it was asked."""

    stamp: FakeStamp
    view: FakeAzureStack
    management: str  # address
    identity: str
    requests: list[Request] = field(default_factory=list)
    connections: int = 0  # accepted, both origins

    @property
    def endpoint(self) -> str:
        return self.view.endpoint(self.stamp.name)


class _StampView(FakeAzureStack):
    """The fake for one stamp: its management origin, and its identity provider on another address."""

    def __init__(self, cert: Issued, host: str, port: int, identity_host: str, identity_port: int) -> None:
        self._port = port
        self._identity = f"https://{identity_host}:{identity_port}"
        super().__init__(cert, host=host, serve=False)

    @property
    def port(self) -> int:
        return self._port

    @property
    def identity_url(self) -> str:
        return self._identity


def _server_context(issued: Issued, directory: Path, stem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert, key = issued.write(directory, stem)
    context.load_cert_chain(cert, key)
    return context


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class FakeFleet:
    """The stamps, served on their own addresses by one event loop; ``start`` binds and serves."""

    def __init__(
        self, stamps: list[FakeStamp], ca: Issued, directory: Path, latency: float, idle_timeout: float = 120.0
    ) -> None:
        if len(stamps) > 250 * 256:
            raise ValueError("at most 64,000 stamps: one /16 of loopback addresses each for both origins")
        self.latency = latency
        self.idle_timeout = idle_timeout
        self.open_connections = 0
        self._ids = itertools.count(1)
        self._directory = directory
        self._ca = ca
        self._stamps = stamps
        self.members: list[Member] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._sockets: list[socket.socket] = []

    # ------------------------------------------------------------ control

    def start(self) -> FakeFleet:
        """Issue the certificates, bind every address (one port for all where it is free) and serve."""
        certs = self._directory / "fleet-certs"
        certs.mkdir(exist_ok=True)
        bound: list[tuple[socket.socket, ssl.SSLContext, Member]] = []
        try:
            for index, stamp in enumerate(self._stamps):
                management, identity = address(MANAGEMENT_NET, index), address(IDENTITY_NET, index)
                sock = self._bind(management)
                self._sockets.append(sock)
                id_sock = self._bind(identity)
                self._sockets.append(id_sock)
                port, identity_port = sock.getsockname()[1], id_sock.getsockname()[1]
                view = _StampView(make_server_cert(self._ca, management), management, port, identity, identity_port)
                view.add_stamp(stamp)
                member = Member(stamp, view, management, identity)
                self.members.append(member)
                identity_context = _server_context(make_server_cert(self._ca, identity), certs, str(index))
                bound += [(sock, view.context, member), (id_sock, identity_context, member)]
        except BaseException:
            for sock in self._sockets:
                sock.close()
            raise
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._serve_all(bound))
            except BaseException as err:  # reported to start(), which raises it
                failure.append(err)
                started.set()
                return
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-fleet", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def _bind(self, host: str) -> socket.socket:
        """On the fleet's port when it is free there, else on a port of its own."""
        try:
            sock = _listen(host, self.port)
        except OSError:
            sock = _listen(host, 0)
        if not self.port:
            self.port = sock.getsockname()[1]
        return sock

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shut() -> None:
            for server in self._servers:
                server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(shut(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        for sock in self._sockets:
            sock.close()
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    def cpu_seconds(self) -> float:
        """CPU time the loop's thread has used: all the serving, TLS included."""
        assert self._thread is not None and self._thread.ident is not None
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))

    def call(self, change: Callable[[], None]) -> None:
        """Run ``change`` on the loop's thread, between two requests, and wait for it."""
        assert self._loop is not None

        async def apply() -> None:
            change()

        asyncio.run_coroutine_threadsafe(apply(), self._loop).result(timeout=30)

    def __enter__(self) -> FakeFleet:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------ serving

    async def _serve_all(self, bound: list[tuple[socket.socket, ssl.SSLContext, Member]]) -> None:
        for sock, context, member in bound:

            async def connected(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter, member: Member = member
            ) -> None:
                await self._connection(member, reader, writer)

            server = await asyncio.start_server(
                connected, sock=sock, ssl=context, ssl_handshake_timeout=15, limit=MAX_HEAD
            )
            self._servers.append(server)

    async def _connection(self, member: Member, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = next(self._ids)
        member.connections += 1
        self.open_connections += 1
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout)
                    length = _content_length(head)
                    body = await asyncio.wait_for(reader.readexactly(length), 15) if length else b""
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError, ValueError):
                    return  # closed, idle too long, or not HTTP
                line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                method, path = (line[0], line[1]) if len(line) >= 2 else ("?", "/")
                member.requests.append(Request(time.monotonic(), kind_of(method, path), connection))
                if self.latency:
                    await asyncio.sleep(self.latency)
                try:
                    answer, close = respond(member.view, head + body, peer[:2])
                except Exception:  # a bug in the fake: an answer the client sees as the server's failure
                    answer = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    close = True
                writer.write(answer)
                await writer.drain()
                if close:
                    return
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 5)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
            if not 0 <= length <= 1024 * 1024:
                raise ValueError("Content-Length out of range")
            return length
    return 0
