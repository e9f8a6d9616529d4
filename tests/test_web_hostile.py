"""Hostile and careless clients against the real exporter process: headers, framing,
descriptors, slow requests, long passwords, reload storms. Each ends in a clear answer."""

from __future__ import annotations

import base64
import contextlib
import os
import random
import re
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import hostile_clients as hostile
import pytest
from conftest import EXAMPLES, console_script, eventually, exporter_process, free_port, http_get, stop_process, write
from pki import make_ca, make_server_cert

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


def test_a_half_closed_client_gets_every_answer_it_asked_for_and_the_connection_ends(demo):
    """Requests, then the client's FIN (``shutdown(SHUT_WR)``, as ``curl`` and ``nc -N`` do): each
    request is answered, then the server closes at once rather than holding the connection idle."""
    port = port_of(demo.url)
    for requests, expected in [
        (b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n" * 3, [200, 200, 200]),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", [200]),
        (b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\nGET /-/hea", [200]),  # the rest never comes
    ]:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(requests)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert statuses(answer) == expected
        assert time.monotonic() - started < 2  # not the 120 s an idle connection may wait


def test_pipelined_requests_beyond_the_read_buffer_are_all_answered_in_order(demo):
    """3,000 requests sent at once (over 100 KiB, more than the server buffers while it answers)
    by a client that reads only afterwards: every one is answered, in order."""
    port = port_of(demo.url)
    requests = b"".join(b"GET /-/healthy?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3000))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sender = threading.Thread(target=sock.sendall, args=(requests,))
        sender.start()
        time.sleep(1)  # the server fills its buffer and the socket's, then waits for this client
        answer = b""
        while answer.count(b"Healthy\n") < 3000:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {answer.count(b'Healthy')} answers"
            answer += chunk
        sender.join(10)
    assert statuses(answer) == [200] * 3000


def test_a_request_that_trickles_in_is_cut_off_at_the_request_deadline(demo):
    """Not each read: the whole request (line, headers and body) gets 10 seconds, however it
    trickles. Headers a byte every half second and a reload's body a byte every half second,
    side by side: both connections are closed after about 10 s."""
    port = port_of(demo.url)

    def trickle(opening: bytes, drip: bytes) -> float:
        started = time.monotonic()
        with hostile.connect(port, "127.0.0.2", timeout=30) as sock:
            sock.sendall(opening)
            for byte in drip * 100:
                try:
                    sock.sendall(bytes([byte]))
                    sock.settimeout(0.5)
                    if sock.recv(100) == b"":
                        break
                except TimeoutError:
                    pass
                except OSError:
                    break
                if time.monotonic() - started > 25:
                    break
        return time.monotonic() - started

    with ThreadPoolExecutor(2) as pool:
        headers = pool.submit(trickle, b"GET /metrics HTTP/1.1\r\nX-Slow: ", b"a")
        body = pool.submit(trickle, b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b"x")
        for future in (headers, body):
            assert 9 < future.result() < 14
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


# ---------------------------------------------------------------- attacks: a failure stays with the client

ATTACKERS = [f"127.0.0.{i}" for i in range(2, 10)]  # the scraper is 127.0.0.1


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def answer_within(port: int, request: bytes, seconds: float, source: str = "127.0.0.2") -> tuple[list[int], bool]:
    """Send ``request``; the statuses answered and whether the server closed within ``seconds``."""
    with hostile.connect(port, source, timeout=seconds) as sock:
        sock.sendall(request)
        answer, closed = b"", False
        deadline = time.monotonic() + seconds
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                answer += chunk
    return statuses(answer), closed


def test_post_is_answered_without_reading_its_body_and_only_reload_reads_one(demo, tmp_path):
    """A POST that announces a body it never sends is answered at once and let go, unless it
    is an authorised POST /-/reload; with users configured, POST /-/healthy needs the password."""
    port = port_of(demo.url)
    announce = b"Host: x\r\nContent-Length: 1000\r\n\r\n"
    assert answer_within(port, b"POST /-/healthy HTTP/1.1\r\n" + announce, 3) == ([405], True)
    assert answer_within(port, b"POST /metrics HTTP/1.1\r\n" + announce, 3) == ([405], True)
    assert answer_within(port, b"POST /-/reload HTTP/1.1\r\n" + announce, 1.5) == ([], False)  # waits for its body
    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(4)).decode()
    web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    with exporter_process(DEMO, f"--web.config.file={web}", tmp_path=tmp_path, ready_check=False) as running:
        port = port_of(running.url)
        for path in (b"/-/healthy", b"/-/ready", b"/-/reload"):
            assert answer_within(port, b"POST " + path + b" HTTP/1.1\r\n" + announce, 3) == ([401], True), path
        assert http_get(f"{running.url}/-/healthy")[0] == 200  # GET stays open to probes


@contextlib.contextmanager
def limited_exporter(tmp_path: Path, *args: str, nofile: tuple[int, int] | None = None):
    """The installed exporter under an open-file limit (so its connection cap is small: half
    the hard limit), ready once its port accepts; stopped by PID."""
    port = free_port()
    log_path = tmp_path / f"exporter-{port}.log"
    limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)) if nofile else None
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [console_script(), f"--config.file={DEMO}", f"--web.listen-address=127.0.0.1:{port}", *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
    try:
        deadline = time.monotonic() + 20
        while "msg=Listening" not in log_path.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield process, port
    finally:
        stop_process(process)


@pytest.mark.parametrize("attack", ["header-trickle", "post-drip", "unknown-users", "half-open-tls"])
def test_scrapes_go_on_under_a_client_attack(attack, tmp_path):
    """Hostile connections from other addresses, more than the exporter may hold (its cap is
    256 here, under a 512-descriptor limit): the scraper at 127.0.0.1, ten scrapes a second,
    keeps (nearly) every scrape, and memory grows by little."""
    args: list[str] = []
    headers: dict[str, str] = {}
    context = None
    nofile: tuple[int, int] | None = (256, 512)
    if attack == "unknown-users":
        hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(10)).decode()
        web = write(tmp_path / "web.yml", f"basic_auth_users:\n  prom: '{hashed}'\n")
        args = [f"--web.config.file={web}"]
        headers = {"Authorization": "Basic " + base64.b64encode(b"prom:secret").decode()}
        nofile = None
    if attack == "half-open-tls":
        ca = make_ca()
        cert, key = make_server_cert(ca).write(tmp_path, "server")
        (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
        web = write(tmp_path / "web.yml", f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
        args = [f"--web.config.file={web}"]
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        nofile = None  # thousands held at once: the memory they cost is the point
    with limited_exporter(tmp_path, *args, nofile=nofile) as (process, port):
        warm = hostile.scrape(port, 1.0, headers=headers, context=context)  # and the credentials cached
        assert warm.rate == 1.0, warm.errors
        before = rss_kib(process.pid)
        if attack == "header-trickle":
            attacker = hostile.header_trickle(port, 1000, ATTACKERS, threads=8)
        elif attack == "post-drip":
            attacker = hostile.post_drip(port, 1000, ATTACKERS, threads=8)
        elif attack == "unknown-users":
            attacker = hostile.unknown_users(port, 200, ATTACKERS)
        else:
            attacker = hostile.half_open_tls(port, 2000, ATTACKERS, threads=8)
        with attacker:
            time.sleep(2)  # the attack is at full strength
            result = hostile.scrape(port, 5.0, per_second=10, timeout=5, headers=headers, context=context)
            grown = rss_kib(process.pid) - before
        assert result.rate >= 0.98, (result.ok, result.failed, result.errors[:5])
        assert grown < 40 * 1024, f"RSS grew by {grown} KiB"
        assert process.poll() is None


def test_distinct_accept_headers_cost_no_memory(demo):
    """Every Accept header a client can invent maps to one of two formats: nothing is cached
    per header, so 3,000 distinct ones leave memory where it was."""
    port = port_of(demo.url)
    assert hostile.distinct_accepts(port, 200) == 200  # warm: both formats rendered
    before = rss_kib(demo.process.pid)
    assert hostile.distinct_accepts(port, 3000) == 3000
    grown = rss_kib(demo.process.pid) - before
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB"


def test_one_address_cannot_hold_more_than_its_share_and_its_oldest_go_first(demo):
    """300 idle connections from one address: the server keeps at most 256 of them, dropping
    the oldest; a scraper from another address is not affected."""
    port = port_of(demo.url)
    held = [hostile.connect(port, "127.0.0.2") for _ in range(300)]
    try:
        assert http_get(f"{demo.url}/metrics")[0] == 200

        def closed(sock: socket.socket) -> bool:
            sock.setblocking(False)
            try:
                return sock.recv(1) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True

        dropped = eventually(lambda: [i for i, s in enumerate(held) if closed(s)], list(range(44)), timeout=5)
        assert dropped == list(range(44))  # the first 44 opened, exactly
    finally:
        for sock in held:
            sock.close()


def test_signals_at_random_moments_always_end_in_a_clean_exit(tmp_path):
    """SIGHUP in a tight loop, SIGTERM at a random moment within it (and more SIGHUPs after),
    to several exporters in turn: each exits 0 within seconds. A handler that took a lock the
    interrupted main thread held would deadlock here sooner or later."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for round_ in range(5):
        with exporter_process(DEMO, tmp_path=tmp_path) as running:
            process = running.process
            until = time.monotonic() + rng.uniform(0.2, 1.2)
            while time.monotonic() < until:
                process.send_signal(signal.SIGHUP)
                time.sleep(rng.uniform(0, 0.002))
            process.send_signal(signal.SIGTERM)
            ends = time.monotonic() + 5
            while process.poll() is None and time.monotonic() < ends:
                process.send_signal(rng.choice((signal.SIGHUP, signal.SIGHUP, signal.SIGTERM)))
                time.sleep(rng.uniform(0, 0.002))
            try:
                code = process.wait(timeout=max(0.1, ends - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = None
            assert code == 0, (seed, round_, code, running.log()[-2000:])
            assert "Traceback" not in running.log(), (seed, running.log()[-2000:])
