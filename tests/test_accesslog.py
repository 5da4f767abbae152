"""What each request leaves behind in-process: its JSON access line and its metrics.

gateway.accesslog and gateway.metrics through the Flask app and its WSGI callable
(no gunicorn: tests/http/test_live_ops.py checks the same across real workers).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from gateway import accesslog
from gateway.app import create_app
from tests.support import BUNDLED_MAP

HOST = "khabarovskadm.ru"


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "access.jsonl"


@pytest.fixture
def app(log_path: Path) -> Iterator[Flask]:
    yield create_app({"TESTING": True, "MAP_PATH": str(BUNDLED_MAP), "ACCESS_LOG": str(log_path)})
    accesslog.configure("off")  # the logger is process-wide: leave it closed


def own_handlers() -> list[accesslog.LineHandler]:
    # pytest adds its capture handlers to non-propagating loggers too.
    return [h for h in accesslog.access_log.handlers if isinstance(h, accesslog.LineHandler)]


def lines(log_path: Path) -> list[dict[str, Any]]:
    accesslog.flush()  # lines are buffered: written every FLUSH_INTERVAL, or now
    return [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]


def call(app: Flask, target: str, *, method: str = "GET", **environ: str) -> tuple[str, bytes]:
    """Run one request through the WSGI stack with `target` as gunicorn's RAW_URI."""
    env = {
        "REQUEST_METHOD": method,
        "RAW_URI": target,
        "PATH_INFO": target.partition("?")[0],
        "QUERY_STRING": target.partition("?")[2],
        "HTTP_HOST": HOST,
        "SERVER_NAME": HOST,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        **environ,
    }
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    body = b"".join(app.wsgi_app(env, start_response))
    return statuses[-1], body


def samples(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = app.test_client().get("/-/metrics").get_data(as_text=True)
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


REQUESTS = [
    # (id, method, target, host, outcome, status)
    ("exact-rule-redirects", "GET", "/documents/", HOST, "redirect", 301),
    ("query-rule-redirects", "GET", "/press-center/news/detail.php?ID=7", HOST, "redirect", 301),
    ("410-rule-is-gone", "GET", "/bitrix/redirect.php", HOST, "gone", 410),
    ("no-rule-is-not-found", "GET", "/no/such/page", HOST, "not_found", 404),
    ("bad-escape-is-bad-request", "GET", "/a%zz", HOST, "bad_request", 400),
    ("unknown-host", "GET", "/", "example.org", "unknown_host", 404),
    ("post-is-not-allowed", "POST", "/", HOST, "method_not_allowed", 405),
]


@pytest.mark.parametrize(
    ("method", "target", "host", "outcome", "status"),
    [pytest.param(*r[1:], id=r[0]) for r in REQUESTS],
)
def test_each_request_is_one_log_line_and_one_count(
    app: Flask, log_path: Path, method: str, target: str, host: str, outcome: str, status: int
) -> None:
    got, _ = call(app, target, method=method, HTTP_HOST=host)
    assert int(got[:3]) == status
    (line,) = lines(log_path)
    assert (line["outcome"], line["status"], line["method"]) == (outcome, status, method)
    assert line["raw_target"] == target
    assert line["pid"] == os.getpid()
    assert line["duration_ms"] >= 0
    assert set(line) == {
        "ts",
        "pid",
        "method",
        "host",
        "raw_target",
        "path",
        "outcome",
        "status",
        "rule",
        "location",
        "referrer",
        "user_agent",
        "duration_ms",
        "map",
    }
    found = samples(app)
    key = ("gateway_requests_total", (("outcome", outcome), ("status", str(status))))
    assert found[key] == 1
    assert found[("gateway_request_duration_seconds_count", (("outcome", outcome),))] == 1


def rule_line_of(text: str) -> int:
    """The 1-based line of the bundled map that is `text` (stripped), which must be unique."""
    lines = BUNDLED_MAP.read_text(encoding="utf-8").splitlines()
    (number,) = [n for n, line in enumerate(lines, 1) if line.strip() == text]
    return number


def test_a_redirect_line_names_its_rule_target_and_map(app: Flask, log_path: Path) -> None:
    status, _ = call(
        app,
        "/press-center/news/detail.php?ID=7&utm_source=x",
        HTTP_REFERER="https://yandex.ru/search/?text=%D0%B0",
        HTTP_USER_AGENT="Mozilla/5.0 (X11)",
    )
    assert status.startswith("301")
    (line,) = lines(log_path)
    served = app.extensions["gateway.maps"].current()
    assert line["host"] == HOST
    assert line["path"] == "/press-center/news/detail.php"
    # The line the rule is written on (redirects.yaml moves as hosts and rules are added).
    rule_line = rule_line_of("- from: /press-center/news/detail.php?ID=<int:id>")
    assert line["rule"] == f"{BUNDLED_MAP.name}:{rule_line}" or line["rule"].endswith(
        f"redirects.yaml:{rule_line}"
    )
    assert line["location"] == "https://khv27.ru/news/7/"
    assert line["referrer"] == "https://yandex.ru/search/?text=%D0%B0"
    assert line["user_agent"] == "Mozilla/5.0 (X11)"
    assert line["map"] == served.version


def test_raw_bytes_are_percent_encoded_and_text_headers_decoded(app: Flask, log_path: Path) -> None:
    # A windows-1251 path as raw bytes (one latin-1 code point per byte in WSGI), and a
    # User-Agent sent as UTF-8 bytes.
    call(app, "/\xed\xee\xe2\xee\xf1\xf2\xe8 x", HTTP_USER_AGENT="Бот/1".encode().decode("latin-1"))
    (line,) = lines(log_path)
    assert line["raw_target"] == "/%ED%EE%E2%EE%F1%F2%E8%20x"
    assert line["user_agent"] == "Бот/1"
    assert line["path"] == "/новости x"
    raw = log_path.read_bytes()
    assert raw.count(b"\n") == 1 and "Бот".encode() in raw  # UTF-8, not \u escapes


def test_a_newline_in_a_header_cannot_forge_a_line(app: Flask, log_path: Path) -> None:
    call(app, "/documents/", HTTP_USER_AGENT='x"\n{"outcome":"forged"}')
    (line,) = lines(log_path)
    assert line["user_agent"] == 'x"\n{"outcome":"forged"}'


def test_service_endpoints_are_neither_logged_nor_counted(app: Flask, log_path: Path) -> None:
    client = app.test_client()
    assert client.get("/-/health").status_code == 200
    assert client.get("/-/metrics").status_code == 200
    assert client.get("/-/nothing").status_code == 404
    accesslog.flush()
    assert log_path.read_text() == ""
    assert not [k for k in samples(app) if k[0] == "gateway_requests_total"]


def test_metrics_name_the_served_map(app: Flask) -> None:
    served = app.extensions["gateway.maps"].current()
    response = app.test_client().get("/-/metrics")
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    found = samples(app)
    info = ("gateway_map_info", (("serving", "map"), ("version", served.version)))
    assert found[info] == 1
    assert found[("gateway_map_rules", ())] == len(served.rules)
    assert found[("gateway_map_reloads_total", ())] == 0
    assert found[("gateway_map_reload_failures_total", ())] == 0


def test_a_broken_log_or_metric_never_fails_the_request(
    app: Flask, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (handler,) = own_handlers()
    read_end, write_end = os.pipe()
    os.close(read_end)  # writes now fail with EPIPE
    monkeypatch.setattr(handler, "_fd", write_end)
    monkeypatch.setattr(handler, "REOPEN_CHECK", float("inf"))  # keep the broken pipe
    try:
        status, _ = call(app, "/documents/")
        accesslog.flush()  # the write fails here, off the request path: it must not raise
    finally:
        os.close(write_end)
    assert status.startswith("301")

    def broken(*args: object) -> None:
        raise RuntimeError("metrics are down")

    monkeypatch.setattr(app.extensions["gateway.maps"].listener, "observe", broken)
    status, _ = call(app, "/no/such/page")
    assert status.startswith("404")


def test_off_writes_nothing(log_path: Path) -> None:
    app = create_app({"TESTING": True, "MAP_PATH": str(BUNDLED_MAP), "ACCESS_LOG": "off"})
    call(app, "/documents/")
    assert not log_path.exists()
    assert not own_handlers()


def test_an_unopenable_log_file_falls_back_to_stdout(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    app = create_app(
        {"TESTING": True, "MAP_PATH": str(BUNDLED_MAP), "ACCESS_LOG": str(tmp_path / "no" / "x")}
    )
    try:
        call(app, "/documents/")
    finally:
        accesslog.configure("off")
    out = capfd.readouterr().out
    assert json.loads(out.splitlines()[-1])["outcome"] == "redirect"


def test_a_rotated_log_file_is_reopened(
    app: Flask, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accesslog.LineHandler, "REOPEN_CHECK", 0.0)
    call(app, "/documents/")
    accesslog.flush()
    log_path.rename(log_path.with_suffix(".1"))  # what logrotate does
    call(app, "/contacts/")
    assert [line["raw_target"] for line in lines(log_path)] == ["/contacts/"]
    assert len(lines(log_path.with_suffix(".1"))) == 1


@pytest.mark.parametrize(
    ("target", "headers", "cut"),
    [
        pytest.param(
            "/documents/",
            {"HTTP_USER_AGENT": "\xff" * 8192, "HTTP_REFERER": "\xff" * 8192},
            ["referrer", "user_agent"],
            id="8KiB-of-0xFF-in-user-agent-and-referer",
        ),
        pytest.param(
            "/" + "%01" * 2700,
            {"HTTP_USER_AGENT": "\x01" * 8000, "HTTP_HOST": "a" * 300 + ".khabarovskadm.ru"},
            ["host", "raw_target", "user_agent"],
            id="control-characters-escape-six-bytes-each",
        ),
        pytest.param(
            # As WSGI carries them: the UTF-8 bytes, one latin-1 code point each.
            "/press-center/news/" + "а".encode().decode("latin-1") * 4000,  # noqa: RUF001
            {"HTTP_USER_AGENT": "😀".encode().decode("latin-1") * 3000},
            ["raw_target", "path", "user_agent"],
            id="long-cyrillic-path-and-astral-user-agent",
        ),
    ],
)
def test_no_line_exceeds_4_kib_whatever_the_request(
    app: Flask, log_path: Path, target: str, headers: dict[str, str], cut: list[str]
) -> None:
    call(app, target, **headers)
    accesslog.flush()
    raw = log_path.read_bytes()
    assert raw.count(b"\n") == 1
    assert len(raw) <= accesslog.MAX_LINE_BYTES
    (line,) = lines(log_path)
    assert sorted(line["cut"]) == sorted(cut)
    for name in cut:
        assert line[name].endswith("\u2026"), name


def test_a_short_line_names_nothing_cut(app: Flask, log_path: Path) -> None:
    call(app, "/documents/", HTTP_USER_AGENT="Mozilla/5.0")
    (line,) = lines(log_path)
    assert "cut" not in line
    assert line["user_agent"] == "Mozilla/5.0"


def test_coverage_does_not_replay_a_cut_target() -> None:
    from gateway.ops.logs import CUT_TARGET, other_line

    line = json.dumps({"method": "GET", "raw_target": "/x\u2026", "cut": ["raw_target"]})
    assert other_line(line.encode()) == CUT_TARGET
    whole = json.dumps({"method": "GET", "raw_target": "/x", "cut": ["user_agent"]})
    assert other_line(whole.encode()) == (None, "/x")


# --- buffering: lines written in whole-line batches, nothing lost at a clean exit ------------


def test_a_line_waits_in_the_buffer_at_most_a_flush_interval(app: Flask, log_path: Path) -> None:
    call(app, "/documents/")
    call(app, "/contacts/")
    deadline = time.monotonic() + 3 * accesslog.FLUSH_INTERVAL
    while log_path.read_bytes().count(b"\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Written by the flusher thread, not by lines(): no flush() before this read.
    raw = log_path.read_bytes()
    assert [json.loads(x)["raw_target"] for x in raw.splitlines()] == ["/documents/", "/contacts/"]


def written_chunks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    chunks: list[bytes] = []
    real_write = os.write

    def recording(fd: int, data: bytes) -> int:
        chunks.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(accesslog.os, "write", recording)
    return chunks


def test_a_full_buffer_goes_to_a_file_in_one_write_of_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = accesslog.LineHandler(str(tmp_path / "a.log"), buffer_bytes=10_000)
    chunks = written_chunks(monkeypatch)
    line = "x" * 999  # 1,000 bytes with its newline
    for _ in range(9):
        handler.write(line)
    assert chunks == []  # 9,000 bytes wait
    handler.write(line)
    assert [len(c) for c in chunks] == [10_000]
    handler.write("last")
    handler.close()  # writes what is left
    assert [len(c) for c in chunks] == [10_000, 5]
    assert (tmp_path / "a.log").read_bytes() == (line + "\n").encode() * 10 + b"last\n"


def test_a_pipe_gets_whole_lines_no_more_than_pipe_buf_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        handler = accesslog.LineHandler(str(fifo))
        chunks = written_chunks(monkeypatch)
        sent = [f"{n:04d}" + "y" * (n * 37 % 3000) for n in range(40)]
        for line in sent:
            handler.write(line)
        handler.close()
        assert len(chunks) > 1
        assert all(len(c) <= select.PIPE_BUF and c.endswith(b"\n") for c in chunks)
        received = b""
        while chunk := os.read(reader, 1 << 20):
            received += chunk
    finally:
        os.close(reader)
    assert received.decode().splitlines() == sent


def test_a_clean_exit_writes_every_buffered_line(tmp_path: Path) -> None:
    log = tmp_path / "exit.jsonl"
    code = (
        "from gateway import accesslog\n"
        f"accesslog.configure({str(log)!r})\n"
        "for n in range(500):\n"
        "    accesslog.access_log.handlers[0].write('{\"n\":%d}' % n)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["n"] for x in log.read_text().splitlines()] == list(range(500))
