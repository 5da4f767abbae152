"""The test harness itself (tests/support.py, tests/conftest.py), against a trivial app.

These run without the gateway package, so that a broken harness is told apart from a
broken gateway.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import support
from tests.support import (
    BUNDLED_MAP,
    GunicornServer,
    ServerStartError,
    StartServer,
    WriteMap,
    parse_response,
    raw_request,
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
    assert "Using worker: gthread" in log
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
