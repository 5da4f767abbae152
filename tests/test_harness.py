"""The test harness itself (tests/support.py, tests/conftest.py), against a trivial app.

These run without the gateway package, so that a broken harness is told apart from a
broken gateway.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests import support
from tests.support import (
    BUNDLED_MAP,
    GunicornServer,
    IncompleteResponse,
    ServerStartError,
    StartServer,
    WriteMap,
    parse_response,
    raw_request,
    send_raw,
)

HARNESS_CONF = Path(__file__).with_name("harness_gunicorn_conf.py")
HARNESS_APP = "tests.harness_app:app"


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """One echoing server for the module (tests that use it must be marked http)."""
    log_path = tmp_path_factory.mktemp("echo") / "gunicorn.log"
    server = GunicornServer(app=HARNESS_APP, config=HARNESS_CONF, log_path=log_path)
    with server.start(BUNDLED_MAP):
        yield server


def _gone(pgid: int) -> bool:
    """True when no process is left in the group (master and workers all reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.http
@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",
        "/a%0d%0aSet-Cookie:%20x=1",
        "/./../a//b/?x=1&&y=%zz",
        "/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/",
        "http://khabarovskadm.ru/absolute-form",
    ],
)
def test_raw_request_sends_the_target_verbatim(echo_server: GunicornServer, target: str) -> None:
    response = raw_request(echo_server.port, target)
    assert response.status == 200
    echoed = json.loads(response.body)
    assert echoed["raw_uri"] == target
    assert echoed["host"] == "khabarovskadm.ru"


@pytest.mark.http
def test_raw_request_method_host_and_headers(echo_server: GunicornServer) -> None:
    response = echo_server.request(
        b"/x", method="DELETE", host=b"WWW.KhabarovskAdm.RU.:80", headers={"X-Test": "1"}
    )
    echoed = json.loads(response.body)
    assert (echoed["method"], echoed["host"]) == ("DELETE", "WWW.KhabarovskAdm.RU.:80")


@pytest.mark.http
def test_headers_are_case_insensitive_and_keep_repeats(echo_server: GunicornServer) -> None:
    response = raw_request(echo_server.port, "/")
    assert response.header("CONTENT-TYPE") == "application/json"
    assert "content-length" in response.headers
    assert response.headers["x-dup"] == "a, b"
    assert response.headers.getlist("X-Dup") == ["a", "b"]
    assert [v for n, v in response.headers.pairs if n.lower() == "x-dup"] == ["a", "b"]
    assert response.header("Location") is None
    assert response.raw.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.http
def test_chunked_body_is_decoded(echo_server: GunicornServer) -> None:
    response = raw_request(echo_server.port, "/chunked")
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.body == b"one two three"


@pytest.mark.http
def test_head_response_body_is_what_was_sent(echo_server: GunicornServer) -> None:
    response = raw_request(echo_server.port, "/", method="HEAD")
    assert response.status == 200
    assert int(response.headers["Content-Length"]) > 0
    assert response.body == b""


def test_server_uses_the_project_config(gunicorn_factory: StartServer) -> None:
    server = gunicorn_factory(BUNDLED_MAP, workers=2, app=HARNESS_APP, config=HARNESS_CONF)
    log = server.log_text()
    assert (
        "Using worker: gateway.workers.DeadlineThreadWorker" in log
    )  # the project's worker (issue 13)
    assert log.count("Booting worker with pid") == 2
    assert "Control socket" not in log


@pytest.mark.http
def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    server = GunicornServer(app=HARNESS_APP, config=HARNESS_CONF, log_path=tmp_path / "g.log")
    with server.start(BUNDLED_MAP, workers=2):
        worker_pid = json.loads(server.request("/").body)["pid"]
        assert worker_pid != server.pid
        assert server.running
    assert server.returncode == 0  # a graceful stop, not a kill
    assert _gone(server.pid)
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", server.port), timeout=1),
    ):
        pass
    assert "Shutting down" in server.log_text()


@pytest.mark.http
def test_start_retries_on_a_port_taken_meanwhile(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        taken_port = taken.getsockname()[1]
        ports = iter([taken_port, support.free_port()])
        monkeypatch.setattr(support, "free_port", lambda: next(ports))
        server = GunicornServer(app=HARNESS_APP, config=HARNESS_CONF, log_path=tmp_path / "g.log")
        with server.start(BUNDLED_MAP):
            assert server.port != taken_port
            assert server.request("/").status == 200
    assert "Connection in use" in server.log_text()


@pytest.mark.http
def test_failed_start_raises_with_the_log_and_cleans_up(tmp_path: Path) -> None:
    server = GunicornServer(app="tests.harness_app:no_such_app", config=HARNESS_CONF)
    with pytest.raises(ServerStartError) as info:
        server.start(BUNDLED_MAP)
    assert info.value.returncode not in (None, 0)
    assert "no_such_app" in info.value.log
    assert "no_such_app" in str(info.value)
    assert not server.running
    assert _gone(server.pid)


def test_write_map_dedents_and_numbers_from_line_one(write_map: WriteMap) -> None:
    path = write_map(
        """
        version: 1
        rules:
          - from: /a
        """
    )
    assert path.read_text(encoding="utf-8").splitlines() == ["version: 1", "rules:", "  - from: /a"]
    nested = write_map(b"from,to\r\n/\xcf\xf0,/\r\n", "redirects.d/old.csv")
    assert nested == path.parent / "redirects.d" / "old.csv"
    assert nested.read_bytes() == b"from,to\r\n/\xcf\xf0,/\r\n"


def test_parse_response_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="status line"):
        parse_response(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(ValueError, match="end of headers"):
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n")


# --- framing: a response is read whole or refused -----------------------------------------

HEAD_200 = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "head", "expected", "got"),
    [
        pytest.param(HEAD_200 + b"0123", False, 10, 4, id="body-cut-mid-way"),
        pytest.param(HEAD_200, False, 10, 0, id="headers-only"),
        pytest.param(
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\nContent-Length: 5\r\n\r\nab",
            False,
            5,
            2,
            id="redirect-body-cut",
        ),
    ],
)
def test_parse_response_refuses_a_body_shorter_than_content_length(
    data: bytes, head: bool, expected: int, got: int
) -> None:
    with pytest.raises(IncompleteResponse, match=f"expected {expected} body bytes, got {got}"):
        parse_response(data, head=head)


def test_a_short_body_is_a_value_error_for_loops_that_count_those() -> None:
    # Request loops (tests/http/test_faults.py) count (OSError, ValueError) as no answer.
    with pytest.raises(ValueError, match="cut short"):
        parse_response(HEAD_200 + b"x")


@pytest.mark.parametrize(
    ("data", "head"),
    [
        pytest.param(HEAD_200, True, id="head-has-no-body"),
        pytest.param(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", False, id="304"),
        pytest.param(b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", False, id="204"),
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 3\r\n\r\n", False, id="1xx"
        ),
    ],
)
def test_responses_without_a_body_are_not_held_to_content_length(data: bytes, head: bool) -> None:
    assert parse_response(data, head=head).body == b""


def test_a_whole_body_is_taken_and_a_longer_one_refused() -> None:
    assert parse_response(HEAD_200 + b"0123456789").body == b"0123456789"
    with pytest.raises(ValueError, match="expected 10 body bytes, got 11"):
        parse_response(HEAD_200 + b"0123456789!")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", id="not-a-number"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            id="two-different-lengths",
        ),
    ],
)
def test_a_bad_content_length_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="bad Content-Length"):
        parse_response(data)


def test_a_cut_chunked_body_is_refused() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert parse_response(head + b"3\r\none\r\n0\r\n\r\n").body == b"one"
    with pytest.raises(IncompleteResponse, match="chunk of 5 bytes, got 1"):
        parse_response(head + b"5\r\nt")


# A tiny loopback server: it reads the request, then sends each piece after its pause.
Script = Sequence[tuple[float, bytes]]


@pytest.fixture
def loopback() -> Iterator[Callable[..., int]]:
    """serve(script, *, end="close"|"reset"|"hold") -> port, for one connection.

    "hold" keeps the connection open after the script for up to 3 s, so a reader that
    waits for the close instead of Content-Length would take that long.
    """
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []
    release = threading.Event()

    def serve(script: Script, *, end: str = "close") -> int:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def run() -> None:
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for pause, piece in script:
                    time.sleep(pause)
                    conn.sendall(piece)
                if end == "reset":  # SO_LINGER on, 0 s: close() sends RST, not FIN
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif end == "hold":
                    release.wait(3.0)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return int(listener.getsockname()[1])

    yield serve
    release.set()
    for thread in threads:
        thread.join(5)
    for listener in listeners:
        listener.close()


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize(
    ("script", "end"),
    [
        pytest.param([(0, HEAD_200), (0.05, b"0123456789")], "close", id="headers-then-body"),
        pytest.param(
            [(0, HEAD_200[:20]), (0.05, HEAD_200[20:] + b"012"), (0.05, b"3456"), (0.05, b"789")],
            "close",
            id="headers-and-body-in-four-segments",
        ),
        pytest.param(
            [(0, HEAD_200 + b"01234"), (0.05, b"56789")], "hold", id="stops-at-content-length"
        ),
    ],
)
def test_a_body_split_across_segments_is_read_whole(
    loopback: Callable[..., int], script: Script, end: str
) -> None:
    port = loopback(script, end=end)
    started = time.monotonic()
    response = send_raw(port, REQUEST, timeout=2.5)
    assert (response.status, response.body) == (200, b"0123456789")
    assert response.raw == HEAD_200 + b"0123456789"
    assert time.monotonic() - started < 2.0  # not waiting for "hold" to end (or a timeout)


@pytest.mark.parametrize(
    ("end", "error"),
    [
        pytest.param("close", IncompleteResponse, id="closed-mid-body"),
        pytest.param("reset", (IncompleteResponse, ConnectionResetError), id="reset-mid-body"),
    ],
)
def test_a_connection_cut_mid_body_is_refused(
    loopback: Callable[..., int], end: str, error: type[Exception] | tuple[type[Exception], ...]
) -> None:
    # What a SIGKILLed worker leaves: the headers and part of the body, then the end.
    port = loopback([(0, HEAD_200), (0.05, b"0123")], end=end)
    with pytest.raises(error):
        send_raw(port, REQUEST, timeout=2.5)


def test_a_head_answer_is_read_to_the_close(loopback: Callable[..., int]) -> None:
    # HEAD: Content-Length is the GET body's; a stray body sent anyway is still seen.
    port = loopback([(0, HEAD_200), (0.05, b"stray")])
    response = send_raw(port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", timeout=2.5)
    assert (response.status, response.body) == (200, b"stray")
