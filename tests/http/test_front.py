"""The standalone nginx front (`gateway export nginx --standalone`) under attack (issue 13).

The real nginx runs the exported nginx.conf as it is (`nginx -p DIR -c FILE -g 'daemon
off;'`) in front of the real gunicorn serving the bundled map. Attackers bind
127.0.0.2-127.0.0.9 (the front limits per address); the legitimate client is
127.0.0.1. The small flood here (300 slow-header, 50 idle, 20 slow-body connections)
runs in `make test`; bench/front.py runs the full one (3,000 / 500 / 200, and a
2,000-connection load). A second front, with 1 s client timeouts and no gateway
behind it, shows the timeouts firing and a gateway that is down. Each status is the
one this nginx (Debian 12's 1.22) gives, so a test fails if nginx changes. Cost:
about 5 s.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.mapfile import load_map
from gateway.ops.nginx_conf import Front, export_standalone
from tests.http.test_nginx import Nginx, nginx_binary  # noqa: F401 (a fixture)
from tests.support import (
    BUNDLED_MAP,
    GunicornServer,
    Response,
    _die_with_parent,
    free_port,
    parse_response,
)

pytestmark = [pytest.mark.http, pytest.mark.timeout(900)]  # 900 s: a first apt-get install

LEGIT = "127.0.0.1"
ATTACKERS = [f"127.0.0.{n}" for n in range(2, 10)]
HOST = "khabarovskadm.ru"
CONTACTS = ("https://khv27.ru/contacts/", "public, max-age=86400")
PROXIED = "/contacts/?utm_source=x"  # a query: nginx hands it on, the gateway answers 301


@dataclass
class StandaloneNginx(Nginx):
    """nginx running the standalone export itself: no main config of the test's own."""

    def start_standalone(self, upstream_port: int, front: Front) -> StandaloneNginx:
        redirect_map = load_map(BUNDLED_MAP)
        conf = self.root / "nginx.conf"
        for _ in range(3):
            self.port = free_port()
            text, _ = export_standalone(
                redirect_map,
                listen=f"127.0.0.1:{self.port}",
                upstream=f"127.0.0.1:{upstream_port}",
                front=front,
            )
            conf.write_text(text, encoding="utf-8")
            with (self.root / "stderr.log").open("ab") as stderr:
                self.proc = subprocess.Popen(
                    [self.binary, "-p", str(self.root), "-c", str(conf), "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            if self._wait_ready():
                return self
            self.stop()
            if "Address already in use" not in self.log() + self.stderr():
                raise RuntimeError(f"nginx did not start:\n{self.log()}{self.stderr()}")
        raise RuntimeError("nginx found no free port")

    def stderr(self) -> str:
        path = self.root / "stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def running(binary: str, root: Path, upstream_port: int, front: Front) -> Iterator[StandaloneNginx]:
    nginx = StandaloneNginx(binary, root)
    try:
        yield nginx.start_standalone(upstream_port, front)
    finally:
        nginx.stop()


@pytest.fixture(scope="module")
def front(
    nginx_binary: str,  # noqa: F811
    gunicorn_bundled: GunicornServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StandaloneNginx]:
    """The front as exported, but claiming 400 connections: the small flood fills it."""
    root = tmp_path_factory.mktemp("front")
    with running(nginx_binary, root, gunicorn_bundled.port, Front(max_connections=400)) as nginx:
        yield nginx


@pytest.fixture(scope="module")
def short_front(
    nginx_binary: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StandaloneNginx]:
    """Client timeouts of 1 s, and no gateway behind (a port nothing listens on)."""
    root = tmp_path_factory.mktemp("front-short")
    with running(nginx_binary, root, free_port(), Front(client_timeout=1)) as nginx:
        yield nginx


def connect_from(source: str, port: int, timeout: float = 2.0) -> socket.socket:
    """A TCP connection to 127.0.0.1:port from the loopback address `source`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Read until the server closes (or resets after writing)."""
    data = bytearray()
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def send_from(source: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with connect_from(source, port, timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def get(source: str, port: int, target: str, *headers: str, timeout: float = 5.0) -> Response:
    lines = [f"GET {target} HTTP/1.1", f"Host: {HOST}", "Connection: close", *headers]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return parse_response(send_from(source, port, data, timeout))


def answer(response: Response) -> tuple[int, str | None, str | None]:
    return response.status, response.header("Location"), response.header("Cache-Control")


def is_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed nor reset this connection (nothing is read)."""
    timeout = sock.gettimeout()
    sock.settimeout(0)  # with a timeout, recv would wait for data first
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)


def test_nginx_t_accepts_the_standalone_file(
    nginx_binary: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    text, _ = export_standalone(load_map(BUNDLED_MAP), listen="8081", upstream="127.0.0.1:2")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [nginx_binary, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    assert "[warn]" not in done.stderr, done.stderr  # e.g. worker_connections > rlimit


def test_front_keeps_its_files_under_the_prefix(front: StandaloneNginx) -> None:
    get(LEGIT, front.port, "/contacts/")
    names = {p.name for p in front.root.iterdir()}
    assert {"nginx.pid", "error.log", "access.log", "proxy_temp", "client_body_temp"} <= names
    assert (front.root / "nginx.pid").read_text().strip() == str(front.proc and front.proc.pid)


def _open_flood(port: int, slow_header: int, idle: int, slow_body: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    for i in range(slow_header):
        sock = connect_from(ATTACKERS[i % len(ATTACKERS)], port)
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
        socks.append(sock)
    socks += [connect_from(ATTACKERS[i % len(ATTACKERS)], port) for i in range(idle)]
    for i in range(slow_body):  # 127.0.0.9 is left to the per-address test
        sock = connect_from(ATTACKERS[i % (len(ATTACKERS) - 1)], port)
        sock.sendall(
            f"POST /contacts/ HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 900\r\n\r\nx".encode()
        )
        socks.append(sock)
    return socks


def test_front_holds_a_flood(front: StandaloneNginx) -> None:
    socks = _open_flood(front.port, slow_header=300, idle=50, slow_body=20)
    try:
        slowest = 0.0
        for i in range(20):
            # Answered by nginx itself, then (any query) by the gateway behind it.
            target = "/contacts/" if i % 2 == 0 else f"/contacts/?utm_source=flood{i}"
            started = time.monotonic()
            response = get(LEGIT, front.port, target, timeout=1.0)
            slowest = max(slowest, time.monotonic() - started)
            assert answer(response) == (301, *CONTACTS), (target, response.raw[:300])
        assert slowest < 1.0
        # The attackers were held all along (10 s header timeout), not refused.
        assert sum(is_open(s) for s in socks) == len(socks)
    finally:
        for sock in socks:
            sock.close()


def test_per_address_limit_answers_429(front: StandaloneNginx) -> None:
    attacker, other = ATTACKERS[-1], ATTACKERS[0]
    held: list[socket.socket] = []
    try:
        # Requests in progress: bodies nginx is reading (it said "100 Continue" to each).
        for _ in range(64):
            sock = connect_from(attacker, front.port)
            sock.sendall(
                f"POST /contacts/ HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 900\r\n"
                "Expect: 100-continue\r\n\r\n".encode()
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue"), len(held)
            held.append(sock)
        # A request that would go on to the gateway is refused; one nginx answers itself
        # (in its rewrite phase, before the limit) holds nothing and is not.
        refused = get(attacker, front.port, PROXIED)
        assert (refused.status, refused.header("Cache-Control")) == (429, "no-store")
        assert answer(get(attacker, front.port, "/contacts/")) == (301, *CONTACTS)
        assert answer(get(other, front.port, PROXIED)) == (301, *CONTACTS)
        held.pop().close()  # one finished: the address may have one more in progress
        deadline = time.monotonic() + 3
        while get(attacker, front.port, PROXIED).status == 429:
            assert time.monotonic() < deadline, "the slot was not freed"
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    ("source", "target", "status"),
    [
        (LEGIT, "/-/health", 200),
        (LEGIT, "/-/metrics", 200),
        (ATTACKERS[0], "/-/health", 404),
        (ATTACKERS[0], "/-/metrics", 404),
        (ATTACKERS[0], "/-/health?verbose=1", 404),
        (ATTACKERS[0], "/-/nginx/400", 404),  # the error pages are internal
    ],
    ids=["health-local", "metrics-local", "health", "metrics", "health-query", "error-page"],
)
def test_service_endpoints_only_to_the_allow_list(
    front: StandaloneNginx, source: str, target: str, status: int
) -> None:
    response = get(source, front.port, target)
    assert response.status == status, response.raw[:300]
    if status == 404:  # nginx answers, the gateway never sees it
        assert b"<center>nginx</center>" in response.body
        assert response.header("Cache-Control") == "no-store"


CL = "Content-Length"
# (id, request bytes, the status this nginx answers). None: no status line (HTTP/0.9).
ODD_REQUESTS: list[tuple[str, bytes, int | None]] = [
    ("te-unknown", b"GET /contacts/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (
        "te-gzip-chunked",
        b"GET /contacts/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        400,
    ),
    (
        "te-and-cl",
        b"GET /contacts/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("get-body", b"GET /contacts/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", 301),
    (
        "get-chunked-body",
        b"GET /contacts/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        301,
    ),
    ("body-too-large", b"GET /contacts/ HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n", 413),
    ("cl-invalid", b"GET /contacts/ HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n", 400),
    ("http-2.0", b"GET /contacts/ HTTP/2.0\r\nHost: h\r\n\r\n", 400),
    ("http-3.0", b"GET /contacts/ HTTP/3.0\r\nHost: h\r\n\r\n", 400),
    ("http-9.9", b"GET /contacts/ HTTP/9.9\r\nHost: h\r\n\r\n", 400),
    ("http-1.2", b"GET /contacts/ HTTP/1.2\r\nHost: h\r\n\r\n", 301),
    ("http-lowercase", b"GET /contacts/ http/1.1\r\nHost: h\r\n\r\n", 400),
    ("http-0.9", b"GET http://khabarovskadm.ru/contacts/\r\n", None),
    ("no-host", b"GET /contacts/ HTTP/1.1\r\n\r\n", 400),
    ("uri-too-long", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    ("header-too-long", b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 400),
    ("unknown-method", b"BREW /contacts/ HTTP/1.1\r\nHost: h\r\n\r\n", 405),
]


@pytest.mark.parametrize(
    ("data", "status"), [c[1:] for c in ODD_REQUESTS], ids=[c[0] for c in ODD_REQUESTS]
)
def test_odd_requests_are_not_5xx(front: StandaloneNginx, data: bytes, status: int | None) -> None:
    line, crlf, rest = data.replace(b"Host: h\r\n", f"Host: {HOST}\r\n".encode()).partition(b"\r\n")
    if b" HTTP/" in line.upper():  # so that the answer ends where the connection does
        data = line + crlf + b"Connection: close\r\n" + rest
    raw = send_from(LEGIT, front.port, data)
    if status is None:
        # HTTP/0.9: nginx answers with the body alone (no status line, no headers).
        assert raw.startswith(b"<html>") and b"301 Moved Permanently" in raw, raw[:200]
        return
    assert raw.startswith(b"HTTP/1.1 "), raw[:200]
    assert int(raw[9:12]) == status, raw[:300]


def test_access_log_lines_are_capped(front: StandaloneNginx) -> None:
    hostile = "\xff" * 8000
    target = "/" + "%FF" * 2600
    get(LEGIT, front.port, target, f"User-Agent: {hostile}", f"Referer: {hostile}")
    lines = (front.root / "access.log").read_bytes().splitlines()
    last = lines[-1]
    assert b'"GET /%FF%FF' in last and b"\\xFF\\xFF" in last, last[:200]
    assert len(last) <= 4096, len(last)


def test_timeouts_drop_slow_and_idle_clients(short_front: StandaloneNginx) -> None:
    port = short_front.port
    slow_header = connect_from(ATTACKERS[0], port, timeout=5)
    slow_header.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
    idle = connect_from(ATTACKERS[1], port, timeout=5)
    slow_body = connect_from(ATTACKERS[2], port, timeout=5)
    slow_body.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 900\r\n\r\nx")
    started = time.monotonic()
    for sock in (slow_header, idle, slow_body):
        with sock:
            # Nothing is answered: nginx closes the idle one and resets the other two
            # (reset_timedout_connection) once their 1 s is up, not before.
            assert read_all(sock) == b""
            assert 0.9 < time.monotonic() - started < 4


def test_gateway_down_is_503_with_retry_after(short_front: StandaloneNginx) -> None:
    down = get(LEGIT, short_front.port, "/contacts/?utm_source=x")  # goes to the gateway
    assert (down.status, down.header("Retry-After"), down.header("Cache-Control")) == (
        503,
        "30",
        "no-store",
    )
    # What nginx answers itself still works without the gateway.
    assert answer(get(LEGIT, short_front.port, "/contacts/")) == (301, *CONTACTS)
