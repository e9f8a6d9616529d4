"""Whole-request deadlines for outbound HTTP, however slowly the peer sends.

A socket timeout bounds each read, so a peer that drips one byte a second never trips it.
Here every connection a request uses is registered with one reaper thread; when the
request's deadline passes (or the exporter shuts down) the reaper shuts the socket down,
which wakes the blocked read with an error at once. ``BoundedSession`` in ``admin`` uses
this for every request, msal's token requests included.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class _Reaper:
    """One daemon thread that shuts down sockets whose deadline has passed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._socks: dict[int, socket.socket] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._cond:
            if self._closed:
                deadline = 0.0  # shutting down: no request may start
            key = next(self._ids)
            self._socks[key] = sock
            earliest = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, key))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="request-deadlines", daemon=True)
                self._thread.start()
            if earliest:  # only then must the reaper wake sooner: no wake-up per request otherwise
                self._cond.notify()
            return key

    def unwatch(self, key: int) -> None:
        with self._cond:
            self._socks.pop(key, None)

    def close(self) -> int:
        """At exit: shut every watched socket now, and any later one at once."""
        with self._cond:
            self._closed = True
        return self.abort_all()

    def abort_all(self) -> int:
        """Shut down every watched socket now: in-flight requests fail at once."""
        with self._cond:
            socks = list(self._socks.values())
            self._socks.clear()
            self._heap.clear()
        for sock in socks:
            _shutdown(sock)
        return len(socks)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][1] not in self._socks:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, key = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                sock = self._socks.pop(key, None)
            if sock is not None:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown, not SSLSocket's: it wakes a blocked read without
    # touching the TLS object another thread is using.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


REAPER = _Reaper()
_current = threading.local()


@contextlib.contextmanager
def request_deadline(deadline: float) -> Iterator[None]:
    """Within this block, every connection used by this thread is shut at ``deadline``."""
    keys: list[int] = []
    _current.deadline, _current.keys = deadline, keys
    try:
        yield
    finally:
        _current.deadline = None
        for key in keys:
            REAPER.unwatch(key)


def _watch(sock: socket.socket | None) -> None:
    deadline = getattr(_current, "deadline", None)
    if sock is not None and deadline is not None:
        _current.keys.append(REAPER.watch(sock, deadline))


class _Watched:
    """Registers the raw socket as soon as it exists (so a dripping TLS handshake is bounded
    too), and a reused keep-alive connection's socket when a response is awaited."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # type: ignore[misc]
        _watch(sock)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch(self.sock)  # type: ignore[attr-defined]
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


POOL_CLASSES = {"http": WatchedHTTPConnectionPool, "https": WatchedHTTPSConnectionPool}
