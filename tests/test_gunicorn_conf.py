"""gunicorn.conf.py: settings from the environment, and no start on a map that fails to load."""

from __future__ import annotations

import json
import os
import re
import runpy
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    BUNDLED_MAP,
    GUNICORN_CONF,
    GunicornServer,
    ServerStartError,
    StartServer,
    WriteMap,
    raw_request,
)

BAD_MAP = """
    version: 1
    site:
      new_site: https://khv27.ru
    hosts:
      khabarovskadm.ru: {}
    archive:
      notice:
        ru: "Архив"
    rules:
      - from: /a
        to: https://evil.example/
      - from: /b
        status: 418
"""


def load_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("GATEWAY_BIND", "GATEWAY_WORKERS", "GATEWAY_THREADS", "GATEWAY_HEADER_TIMEOUT"):
        monkeypatch.setenv(name, "")  # unset, and put back as it was afterwards
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(GUNICORN_CONF))


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_conf(monkeypatch)
    assert conf["bind"] == "127.0.0.1:8080"
    assert conf["workers"] == (os.cpu_count() or 2)
    assert conf["threads"] == 4
    assert conf["worker_class"] == "gateway.workers.DeadlineThreadWorker"
    assert conf["worker_connections"] == 1000
    assert os.environ["GATEWAY_HEADER_TIMEOUT"] == "10.0"
    assert conf["limit_request_line"] == 8190
    assert conf["control_socket_disable"] is True


def test_environment_sizes_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_conf(
        monkeypatch, GATEWAY_BIND="0.0.0.0:9000", GATEWAY_WORKERS="3", GATEWAY_THREADS=" 8 "
    )
    assert (conf["bind"], conf["workers"], conf["threads"]) == ("0.0.0.0:9000", 3, 8)


@pytest.mark.parametrize("value", ["many", "0", "-2"])
def test_a_bad_count_stops_with_a_message(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(SystemExit, match=f"GATEWAY_WORKERS must be a positive integer.*{value}"):
        load_conf(monkeypatch, GATEWAY_WORKERS=value)


def test_the_worker_class_is_gthread_with_a_header_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gunicorn.util import load_class
    from gunicorn.workers.gthread import ThreadWorker

    from gateway.workers import header_timeout

    conf = load_conf(monkeypatch, GATEWAY_HEADER_TIMEOUT="2.5")
    assert issubclass(load_class(conf["worker_class"]), ThreadWorker)
    assert header_timeout() == 2.5


@pytest.mark.parametrize("value", ["soon", "0", "-1", "1e9"])
def test_a_bad_header_timeout_stops_with_a_message(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(SystemExit, match=f"GATEWAY_HEADER_TIMEOUT must be a number.*{value}"):
        load_conf(monkeypatch, GATEWAY_HEADER_TIMEOUT=value)


def _refusal(map_path: Path, tmp_path: Path) -> ServerStartError:
    server = GunicornServer(log_path=tmp_path / "gunicorn.log")
    with pytest.raises(ServerStartError) as info:
        server.start(map_path)
    assert not server.running
    return info.value


@pytest.mark.http
def test_refuses_to_start_on_a_bad_map(write_map: WriteMap, tmp_path: Path) -> None:
    bad = write_map(BAD_MAP)
    error = _refusal(bad, tmp_path)
    assert error.returncode == 1
    assert "Traceback" not in error.log
    assert "Booting worker" not in error.log  # refused before any worker started
    where = re.escape(str(bad))
    problems = re.findall(rf"^{where}:\d+: error: .+$", error.log, re.MULTILINE)
    assert len(problems) >= 2
    assert re.search(
        rf"^gateway: refusing to start: {len(problems)} problem\(s\) in {where}$",
        error.log,
        re.MULTILINE,
    )


@pytest.mark.http
def test_refuses_to_start_without_a_map(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-map.yaml"
    error = _refusal(missing, tmp_path)
    assert error.returncode == 1
    assert "Traceback" not in error.log
    assert re.search(rf"^gateway: refusing to start: .*{re.escape(str(missing))}", error.log, re.M)


@pytest.mark.http
def test_the_start_check_compiles_the_map_so_no_worker_does(
    gunicorn_factory: StartServer, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    server = gunicorn_factory(
        BUNDLED_MAP, workers=2, env={"GATEWAY_STATE_DIR": str(state), "GATEWAY_ACCESS_LOG": "off"}
    )
    response = raw_request(server.port, "/")
    assert (response.status, response.header("Location")) == (301, "https://khv27.ru/")
    assert response.header("Cache-Control") == "public, max-age=86400"
    (result,) = state.glob("*/compiled.json")
    assert json.loads(result.read_text(encoding="utf-8"))["table"].startswith("rules-")
    log = server.log_text()
    assert log.count("Booting worker") == 2
    assert "compiled in" not in log  # what a worker logs when it ran the compiler itself
