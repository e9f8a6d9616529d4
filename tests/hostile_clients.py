"""Hostile HTTP clients and a legitimate scraper, shared by the attack tests (small, seconds)
and bench/attacks.py (full scale). Each attacker binds to its own loopback source address
(127.0.0.2 and up), so per-client caps can be told from the scraper's 127.0.0.1.

Every attacker runs in daemon threads until ``stop`` is set, reconnects when the server
drops it, and never sends anywhere but the loopback address it is given.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect(port: int, source: str, timeout: float = 5) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


@dataclass
class ScrapeResult:
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.failed

    @property
    def rate(self) -> float:
        return self.ok / self.total if self.total else 0.0


def scrape(
    port: int,
    seconds: float,
    per_second: float = 5,
    timeout: float = 5,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
    path: str = "/metrics",
) -> ScrapeResult:
    """A legitimate scraper from 127.0.0.1: ``per_second`` GETs on a kept-alive connection
    (a new one after any failure), each a success only as a complete 200 within ``timeout``."""
    result = ScrapeResult()
    connection: http.client.HTTPConnection | None = None
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        due = started + n / per_second
        time.sleep(max(0.0, due - time.monotonic()))
        n += 1
        t0 = time.monotonic()
        try:
            for attempt in (1, 2):
                reused = connection is not None
                if connection is None:
                    connection = _connection(port, timeout, context)
                try:
                    connection.request("GET", path, headers=headers or {})
                    response = connection.getresponse()
                except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                    # As Go's HTTP client does (Prometheus's): a kept-alive connection the server
                    # closed before answering is retried once on a new one.
                    connection.close()
                    connection = None
                    if reused and attempt == 1:
                        continue
                    raise
                break
            body = response.read()
            if response.status != 200 or not body or time.monotonic() - t0 > timeout:
                raise OSError(f"status {response.status} after {time.monotonic() - t0:.2f} s")
            result.ok += 1
        except (OSError, http.client.HTTPException) as err:
            result.failed += 1
            result.errors.append(f"{type(err).__name__}: {err}")
            if connection is not None:
                connection.close()
            connection = None
    if connection is not None:
        connection.close()
    return result


def _connection(port: int, timeout: float, context: ssl.SSLContext | None) -> http.client.HTTPConnection:
    if context is not None:
        return http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, context=context, source_address=("127.0.0.1", 0)
        )
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=("127.0.0.1", 0))


class Attack:
    """Runs ``worker(stop)`` on ``threads`` daemon threads until stopped."""

    def __init__(self, worker: Callable[[threading.Event], None], threads: int) -> None:
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=worker, args=(self.stop,), daemon=True) for _ in range(threads)]

    def __enter__(self) -> Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def _held(
    port: int,
    count: int,
    sources: list[str],
    opening: Callable[[socket.socket], None],
    drip: bytes | None,
    interval: float,
) -> Callable[[threading.Event], None]:
    """A worker that keeps ``count`` connections open, sends ``opening`` on each, then one byte
    of ``drip`` per ``interval`` on each; a connection the server drops is opened again."""

    def worker(stop: threading.Event) -> None:
        sockets: list[socket.socket | None] = [None] * count
        while not stop.is_set():
            for i in range(count):
                if stop.is_set():
                    break
                sock = sockets[i]
                if sock is None:
                    try:
                        sock = connect(port, sources[i % len(sources)], timeout=2)
                        opening(sock)
                        sock.setblocking(False)
                    except OSError:
                        if sock is not None:
                            sock.close()
                        continue
                    sockets[i] = sock
                    continue
                try:
                    with contextlib.suppress(BlockingIOError):
                        if sock.recv(65536) == b"":
                            raise OSError("closed")
                    if drip is not None:
                        sock.send(drip[:1])
                except OSError:
                    sock.close()
                    sockets[i] = None
            stop.wait(interval)
        for sock in sockets:
            if sock is not None:
                sock.close()

    return worker


def header_trickle(port: int, count: int, sources: list[str], interval: float = 1.0, threads: int = 4) -> Attack:
    """Slowloris: a request line, then a header byte per ``interval``, forever; reconnects."""
    opening = b"GET /metrics HTTP/1.1\r\nX-a: "
    worker = _held(port, count // threads, sources, lambda s: s.sendall(opening), b"a", interval)
    return Attack(worker, threads)


def post_drip(
    port: int, count: int, sources: list[str], path: str = "/-/reload", interval: float = 1.0, threads: int = 4
) -> Attack:
    """POST headers announcing a body, then the body a byte per ``interval``; reconnects."""
    opening = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n".encode()
    worker = _held(port, count // threads, sources, lambda s: s.sendall(opening), b"x", interval)
    return Attack(worker, threads)


def client_hello() -> bytes:
    """The first flight of a TLS client: what a half-open handshake sends before it stalls."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def half_open_tls(port: int, count: int, sources: list[str], threads: int = 4) -> Attack:
    """Connections that send a ClientHello and never answer the server's flight; reconnects."""
    hello = client_hello()
    worker = _held(port, count // threads, sources, lambda s: s.sendall(hello), None, 0.5)
    return Attack(worker, threads)


def unknown_users(port: int, concurrency: int, sources: list[str], path: str = "/metrics") -> Attack:
    """Requests with a new unknown user and password each time, ``concurrency`` at once."""

    def worker(stop: threading.Event) -> None:
        while not stop.is_set():
            user = f"user{random.randrange(10**9)}"
            token = base64.b64encode(f"{user}:{random.randrange(10**9)}".encode()).decode()
            try:
                with connect(port, random.choice(sources), timeout=30) as sock:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n".encode())
                    sock.recv(4096)
            except OSError:
                time.sleep(0.01)

    return Attack(worker, concurrency)


def distinct_accepts(port: int, count: int, source: str = "127.0.0.2") -> int:
    """``count`` scrapes on kept-alive connections, each with an Accept header never seen before;
    returns how many were answered 200."""
    answered = 0
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    for i in range(count):
        accept = f"application/openmetrics-text; version=1.0.{i}" if i % 2 else f"text/plain; version=1.{i}.0"
        try:
            connection.request("GET", "/metrics", headers={"Accept": accept})
            response = connection.getresponse()
            response.read()
            answered += response.status == 200
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    connection.close()
    return answered
