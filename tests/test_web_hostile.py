"""Hostile and careless clients against the real exporter process: headers, framing,
descriptors, slow requests, long passwords, reload storms. Each ends in a clear answer."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import resource
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest
from conftest import EXAMPLES, console_script, eventually, exporter_process, free_port, http_get, stop_process, write

from exporter.webconfig import BasicAuth, bcrypt_cost

DEMO = EXAMPLES / "demo.yml"


def raw(url: str, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, return everything the server answers until it closes or goes quiet."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before a huge request is sent
            sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with exporter_process(DEMO, tmp_path=tmp_path_factory.mktemp("hostile")) as running:
        yield running


def test_megabytes_of_headers_get_431_and_memory_stays_flat(demo):
    before = rss_kib(demo.process.pid)
    # 99 lines of 60 kB: within the standard library's own limits (100 lines of 64 KiB), so
    # without a cap on the whole block each request is read whole, 6 MB, before anything else.
    huge = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Padding-%d: %s\r\n" % (i, b"a" * 60000) for i in range(98)
    )
    with ThreadPoolExecutor(max_workers=10) as pool:  # ten at once, as an attacker would
        answers = list(pool.map(lambda _: statuses(raw(demo.url, huge + b"\r\n")), range(10)))
    assert answers == [[431]] * 10
    after = rss_kib(demo.process.pid)
    assert after - before < 30 * 1024, (before, after)  # 10 x 6 MB read whole would be 60 MB and more
    ok = b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60000 + b"\r\nConnection: close\r\n\r\n"
    assert statuses(raw(demo.url, ok)) == [200]  # under the 64 KiB budget


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        # A body on GET would be read as a second request: one 400, never a smuggled reload.
        (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\nPOST /-/reload HTTP/1.1\r\nHost: x\r\n\r\n",
            [400],
        ),
        (b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello", [400]),
        (b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", [400]),
        (b"POST /-/reload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", [400]),
        (
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            [200, 200],
        ),
    ],
    ids=["get-with-body", "two-lengths", "negative-length", "chunked", "pipelined-is-fine"],
)
def test_ambiguous_framing_is_refused(demo, request_bytes, expected):
    answer = raw(demo.url, request_bytes, timeout=3)
    assert statuses(answer) == expected, answer[:300]


def test_a_request_that_trickles_in_is_cut_off_at_the_request_deadline(demo):
    """Not each read: the whole request line and headers get 10 seconds."""
    host, port = demo.url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        closed = False
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                time.sleep(0.5)
            except OSError:
                closed = True
                break
            if time.monotonic() - started > 25:
                break
        if not closed:
            closed = sock.recv(100) == b""
    assert closed and time.monotonic() - started < 20
    assert http_get(f"{demo.url}/-/healthy")[0] == 200


def test_more_idle_connections_than_descriptors_shed_the_idle_and_scrapes_go_on(tmp_path):
    """Under a 128-descriptor soft limit the exporter raises to the 256 hard limit, allows 128
    connections, and of 400 idle connections holds no more than that: the oldest idle are shed."""
    port = free_port()
    log_path = tmp_path / "exporter.log"
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, 256))  # noqa: E731
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [console_script(), f"--config.file={DEMO}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
    idle: list[socket.socket] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if http_get(f"{url}/-/ready", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert "max_connections=128" in log_path.read_text()
        base = len(os.listdir(f"/proc/{process.pid}/fd"))  # the listening socket, logs, pipes
        for _ in range(400):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        # The server has taken the flood in when it holds as many connections as it allows.
        held = eventually(lambda: len(os.listdir(f"/proc/{process.pid}/fd")) >= 128, True, timeout=10)
        assert held, "the idle connections were never accepted"
        for _ in range(5):
            status, _, body = http_get(f"{url}/metrics", timeout=10)
            assert status == 200 and b"azurestack_stamp_in_support" in body
        # The cap, not the descriptor limit, bounds what is held (a shed socket may linger a moment).
        assert eventually(lambda: len(os.listdir(f"/proc/{process.pid}/fd")) - base <= 128 + 2, True, timeout=5)
    finally:
        for sock in idle:
            sock.close()
        stop_process(process)


def test_two_hundred_simultaneous_reloads_are_all_answered(tmp_path):
    config = write(tmp_path / "c.yml", DEMO.read_text())
    web = write(tmp_path / "web.yml", "http_server_config:\n  headers:\n    X-Frame-Options: deny\n")
    with exporter_process(config, f"--web.config.file={web}", tmp_path=tmp_path) as running:
        host, port = running.url.removeprefix("http://").split(":")
        connections = [socket.create_connection((host, int(port)), timeout=60) for _ in range(200)]
        start = threading.Barrier(200)

        def reload(sock: socket.socket) -> list[int]:
            start.wait()  # all 200 requests leave at once
            sock.sendall(b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            answer = b""
            with contextlib.suppress(OSError):
                while chunk := sock.recv(65536):
                    answer += chunk
            sock.close()
            return statuses(answer)

        with ThreadPoolExecutor(max_workers=200) as pool:
            answers = list(pool.map(reload, connections))
        assert answers == [[200]] * 200
        reloads = running.log().count('msg="Reloaded configuration"')
        assert 1 <= reloads < 200  # requests that arrive while one runs share the next
        assert "Traceback" not in running.log()


def test_basic_auth_long_passwords_lowercase_scheme_and_the_dummy_cost(tmp_path):
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(12)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    with exporter_process(DEMO, f"--web.config.file={web}", tmp_path=tmp_path, ready_check=False) as running:

        def auth(scheme: str, user: str, password: str) -> int:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            return http_get(f"{running.url}/api/v1/stamps", {"Authorization": f"{scheme} {token}"})[0]

        assert auth("basic", "prometheus", "secret") == 200  # the scheme is case-insensitive
        assert auth("BASIC", "prometheus", "secret") == 200
        assert auth("Basic", "prometheus", "x" * 100) == 401  # over 72 bytes: refused, not a dropped connection
        assert auth("Basic", "nobody", "x" * 100) == 401
        assert auth("Basic", "prometheus", "secret" + "x" * 100) == 401
    # The unknown-user check runs at the configured cost, so timing does not tell users apart.
    users = {"prometheus": hashed.encode()}
    assert bcrypt_cost(BasicAuth()._dummy(users)) == 12
    assert bcrypt_cost(BasicAuth()._dummy({"a": bcrypt.hashpw(b"x", bcrypt.gensalt(4))})) == 4


def test_a_thousand_idle_connections_do_not_block_a_scrape(demo):
    sockets = []
    host, port = demo.url.removeprefix("http://").split(":")
    try:
        for _ in range(1000):
            sockets.append(socket.create_connection((host, int(port)), timeout=5))
        results: list[int] = []
        thread = threading.Thread(target=lambda: results.append(http_get(f"{demo.url}/metrics", timeout=20)[0]))
        thread.start()
        thread.join(30)
        assert results == [200]
    finally:
        for sock in sockets:
            sock.close()
