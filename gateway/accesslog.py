"""What each legacy request leaves behind: one JSON line in the access log, and its metrics.

Owns the access log's format and destination. The logger is ``gateway.access``;
``configure`` points it at stdout (``-``, the default), a file (appended to by
every worker, whole lines per ``write``, reopened when logrotate moves it) or
nowhere (``off``) — env ``GATEWAY_ACCESS_LOG``. A line holds:

    ts, pid, method, host, raw_target, path, outcome, status, rule, location,
    referrer, user_agent, duration_ms, map

``raw_target`` is the request target as received (bytes outside printable ASCII
percent-encoded, so the line is text and ``gateway coverage`` can replay it);
``path`` is its canonical path; ``rule`` is ``FILE:LINE``; ``location`` is the
redirect's target; ``map`` is the version of the map that answered.
Service endpoints (``/-/health``, ``/-/metrics``) leave no line. Nothing here
ever raises into the request: a line that cannot be written is dropped.

Recording is buffered in each worker: lines are kept until BUFFER_BYTES of them
wait, and the metrics' tally until the next flush. A daemon thread flushes both
every FLUSH_INTERVAL seconds; ``flush()`` runs at exit too (atexit, and
gunicorn's ``worker_exit``), so a worker that stops (SIGTERM, HUP, a timeout's
SIGABRT) loses nothing, and one killed with SIGKILL loses at most its last
interval of lines and counts (docs/operations.md).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import select
import stat
import sys
import threading
import time
import weakref
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Protocol

from gateway.outcomes import Outcome, Redirect
from gateway.responses import answer_of

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

    from gateway.mapfile import RedirectMap
    from gateway.metrics import Metrics

ACCESS_LOGGER = "gateway.access"
OFF = ("off", "none", "")

access_log = logging.getLogger(ACCESS_LOGGER)

_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


# --- buffered recording: what is flushed, and when ------------------------------------------

FLUSH_INTERVAL = 1.0  # seconds: the most a SIGKILL can lose of a worker's lines and counts
BUFFER_BYTES = 64 * 1024  # access lines kept before they are written, whatever the interval


class Flushable(Protocol):
    def flush(self) -> None: ...


_flushable: weakref.WeakSet[Flushable] = weakref.WeakSet()
_flusher_pid = 0  # the process whose flusher thread runs (threads do not survive a fork)
_flusher_lock = threading.Lock()


def keep_flushed(item: Flushable) -> None:
    """Flush `item` with the others: every FLUSH_INTERVAL, on `flush()` and at exit."""
    _flushable.add(item)


def flush() -> None:
    """Write out every buffered line and count now; never raise."""
    for item in list(_flushable):
        try:
            item.flush()
        except Exception:
            _report_once(f"flushing {type(item).__name__} failed")


atexit.register(flush)  # after threading joins the request threads: their records included


def _start_flusher() -> None:
    global _flusher_pid
    with _flusher_lock:
        if _flusher_pid == _pid:
            return
        threading.Thread(target=_flush_forever, name="gateway-record-flush", daemon=True).start()
        _flusher_pid = _pid


def _flush_forever() -> None:
    while True:
        time.sleep(FLUSH_INTERVAL)
        flush()


class RequestRecorder:
    """Record one answered request: its metrics, then its access-log line."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        if metrics is not None:
            keep_flushed(metrics)

    def __call__(
        self,
        environ: WSGIEnvironment,
        target: str,
        outcome: Outcome,
        status: int,
        started: float,
        redirect_map: RedirectMap | None,
    ) -> None:
        """Record a request answered with `status`."""
        try:
            seconds = time.perf_counter() - started
            if _flusher_pid != _pid:
                _start_flusher()  # at the first request of each process
            name = answer_of(outcome).name
            if self.metrics is not None:
                self.metrics.observe(name, status, seconds)
            if access_log.isEnabledFor(logging.INFO):
                line = access_line(environ, target, outcome, name, status, seconds, redirect_map)
                handlers = access_log.handlers
                if len(handlers) == 1 and type(handlers[0]) is LineHandler:
                    # configure()'s own handler: skip the LogRecord (it costs more than the line).
                    handlers[0].write(line)
                else:
                    access_log.info(line)
        except Exception:
            # Never into the request: a broken log or metric must not become a 500.
            _report_once("recording a request failed")


def access_line(
    environ: WSGIEnvironment,
    target: str,
    outcome: Outcome,
    name: str,
    status: int,
    seconds: float,
    redirect_map: RedirectMap | None,
) -> str:
    """Return the JSON access-log line for one answered request."""
    url = getattr(outcome, "url", None)
    rule = getattr(outcome, "rule", None)
    host = getattr(outcome, "host", None)
    location = outcome.location if type(outcome) is Redirect else None
    cut: list[str] = []

    def field(name: str, value: str | None) -> str:
        return _capped(name, value, cut)

    # Written out rather than json.dumps(dict): half the cost on the hot path, and the
    # same JSON (strings through json's own escaping, non-ASCII kept as UTF-8). Every
    # field from the request is capped (FIELD_BYTES), so no line exceeds MAX_LINE_BYTES.
    line = (
        f'{{"ts":"{_timestamp()}","pid":{_pid}'
        f',"method":{field("method", _text(environ.get("REQUEST_METHOD")))}'
        f',"host":{field("host", host if host is not None else _text(environ.get("HTTP_HOST")))}'
        f',"raw_target":{field("raw_target", _printable(target))}'
        f',"path":{field("path", url.path if url is not None else None)}'
        f',"outcome":{_json(name)},"status":{int(status)}'
        f',"rule":{field("rule", rule.source if rule is not None else None)}'
        f',"location":{field("location", location)}'
        f',"referrer":{field("referrer", _text(environ.get("HTTP_REFERER")))}'
        f',"user_agent":{field("user_agent", _text(environ.get("HTTP_USER_AGENT")))}'
        f',"duration_ms":{round(seconds * 1000, 3)!r}'
        f',"map":{_json(redirect_map.version if redirect_map is not None else None)}'
    )
    # "cut" names the fields shortened, so that `gateway coverage` never replays a cut URL.
    return line + (f',"cut":[{",".join(_json(c) for c in cut)}]}}' if cut else "}")


# Bytes of JSON (quotes and escapes included) each field may take: with the fixed part
# (about 240 bytes) a line stays under MAX_LINE_BYTES whatever the request carries.
MAX_LINE_BYTES = 4096
FIELD_BYTES = {
    "method": 24,
    "host": 256,
    "raw_target": 960,
    "path": 480,
    "rule": 200,
    "location": 960,
    "referrer": 480,
    "user_agent": 480,
}
_WORST_BYTES_PER_CHAR = 6  # json's \uXXXX for a control character


def _capped(name: str, value: str | None, cut: list[str]) -> str:
    """Return a field as JSON within its byte budget, noting in `cut` when it was shortened."""
    if value is None:
        return "null"
    limit = FIELD_BYTES[name]
    if len(value) * _WORST_BYTES_PER_CHAR + 2 <= limit:
        return encode_basestring(value)  # cannot exceed: the usual case, measured once
    text = encode_basestring(value)
    if len(text.encode("utf-8")) <= limit:
        return text
    cut.append(name)
    # At most 6 bytes a character, plus the quotes and the 3-byte ellipsis.
    return encode_basestring(value[: (limit - 5) // _WORST_BYTES_PER_CHAR] + "\u2026")


def _json(value: str | None) -> str:
    """Return a JSON string (or null): json's escaping, without ASCII-only output."""
    return "null" if value is None else encode_basestring(value)


_second = -1
_second_text = ""


def _timestamp() -> str:
    """Return the time now as ISO 8601 UTC with milliseconds (the date part cached per second)."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    return f"{_second_text}.{int((now - second) * 1000):03d}Z"


def _text(value: object) -> str | None:
    """Return a WSGI header value (latin-1 code points) as the text the client sent."""
    if not isinstance(value, str):
        return None
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return value


def _printable(target: str) -> str:
    """Return the raw target with every byte outside printable ASCII percent-encoded."""
    if target.isascii() and target.isprintable() and " " not in target:
        return target
    return "".join(c if "!" <= c <= "~" else _escape(c) for c in target)


def _escape(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("latin-1" if char <= "\xff" else "utf-8"))


_reported: set[str] = set()


def _report_once(what: str) -> None:
    if what in _reported:
        return
    _reported.add(what)
    with contextlib.suppress(Exception):
        logging.getLogger(__name__).exception("%s (reported once per process)", what)


# --- where the lines go ---------------------------------------------------------------------


class LineHandler(logging.Handler):
    """Write records' messages as lines, whole lines per write(2) (O_APPEND for files).

    Lines are buffered (up to `buffer_bytes`) and written by `flush`: every
    FLUSH_INTERVAL by the flusher thread, when the buffer is full, and at exit. A
    regular file gets all of them in one write: on Linux a write(2) to a local file
    opened O_APPEND is not interleaved with another process's (PIPE_BUF is a pipe's
    rule, not a file's), so workers appending to one file keep their lines whole. A
    pipe or socket (stdout under a supervisor) gets writes of whole lines up to
    PIPE_BUF each, the size a pipe keeps whole; no line is longer (MAX_LINE_BYTES).
    A file moved away (logrotate) is noticed within a second and reopened; lines
    still buffered then go to the new file. `buffer_bytes=0` writes each line at once.
    """

    REOPEN_CHECK = 1.0  # seconds

    def __init__(self, destination: str, buffer_bytes: int = BUFFER_BYTES) -> None:
        super().__init__(logging.INFO)
        self.destination = destination
        self.buffer_bytes = buffer_bytes
        self._fd = -1
        self._regular = False
        self._checked = 0.0
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._buffer_lock = threading.Lock()  # held by request threads: only to append
        self._write_lock = threading.Lock()  # one flush at a time, so lines stay in order
        self._open()
        keep_flushed(self)

    def _open(self) -> None:
        if self.destination == "-":
            self._fd = sys.stdout.fileno()
        else:
            self._fd = os.open(
                self.destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
            )
        try:
            self._regular = stat.S_ISREG(os.fstat(self._fd).st_mode)
        except OSError:
            self._regular = False  # written in PIPE_BUF pieces, the safe choice

    def _reopen_if_moved(self) -> None:
        now = time.monotonic()
        if self.destination == "-" or now - self._checked < self.REOPEN_CHECK:
            return
        self._checked = now
        try:
            moved = os.stat(self.destination).st_ino != os.fstat(self._fd).st_ino
        except FileNotFoundError:
            moved = True
        if moved:
            old, self._fd = self._fd, -1
            os.close(old)
            self._open()

    def emit(self, record: logging.LogRecord) -> None:
        """Buffer the record's message and a newline."""
        self.write(record.getMessage())

    def write(self, line: str) -> None:
        """Buffer one line (a newline is added), written by `flush`; never raise."""
        try:
            data = (line + "\n").encode("utf-8", "replace")
            if not self.buffer_bytes:
                self._write_now(data)
                return
            with self._buffer_lock:
                self._buffer.append(data)
                self._buffered += len(data)
                full = self._buffered >= self.buffer_bytes
            if full:
                self.flush()
        except Exception:
            _report_once(f"writing the access log to {self.destination!r} failed")

    def _write_now(self, data: bytes) -> None:
        """Write one line at once (unbuffered: as before issue 14)."""
        with self.lock:  # type: ignore[union-attr]
            self._reopen_if_moved()
            while data:
                written = os.write(self._fd, data)
                data = data[written:]

    def flush(self) -> None:
        """Write every buffered line; never raise (lines that cannot be written are dropped)."""
        try:
            with self._write_lock:
                with self._buffer_lock:
                    lines, self._buffer, self._buffered = self._buffer, [], 0
                if not lines or self._fd < 0:
                    return
                self._reopen_if_moved()
                for chunk in self._chunks(lines):
                    while chunk:
                        written = os.write(self._fd, chunk)
                        chunk = chunk[written:]
        except Exception:
            _report_once(f"writing the access log to {self.destination!r} failed")

    def _chunks(self, lines: list[bytes]) -> list[bytes]:
        """Group whole lines into the writes `flush` makes (see the class)."""
        if self._regular:
            return [b"".join(lines)]
        chunks: list[bytes] = []
        group: list[bytes] = []
        size = 0
        for data in lines:
            if group and size + len(data) > select.PIPE_BUF:
                chunks.append(b"".join(group))
                group, size = [], 0
            group.append(data)
            size += len(data)
        chunks.append(b"".join(group))
        return chunks

    def close(self) -> None:
        """Write what is buffered and close the file (never stdout)."""
        self.flush()
        with self._write_lock:
            if self.destination != "-" and self._fd >= 0:
                os.close(self._fd)
            self._fd = -1
        _flushable.discard(self)
        super().close()


def configure(destination: str) -> None:
    """Send access lines to stdout ("-"), a file (a path) or nowhere ("off")."""
    _errors_to_stderr()
    for handler in [h for h in access_log.handlers if isinstance(h, LineHandler)]:
        access_log.removeHandler(handler)
        handler.close()
    access_log.propagate = False  # the lines are data, not messages for the error log
    if destination.strip().lower() in OFF:
        access_log.setLevel(logging.WARNING)  # we log at INFO: nothing gets through
        return
    access_log.setLevel(logging.INFO)
    try:
        handler = LineHandler(destination)
    except OSError as exc:
        # A worker that cannot open its log still serves (gunicorn would halt on a boot
        # failure); the lines go to stdout rather than nowhere.
        logging.getLogger(__name__).error(
            "cannot open the access log %s (%s): writing it to stdout",
            destination,
            exc.strerror or exc,
        )
        handler = LineHandler("-")
    access_log.addHandler(handler)


def _errors_to_stderr() -> None:
    """Give the gateway's own messages (map reloads, faults) a stderr handler if none is set."""
    gateway_log = logging.getLogger("gateway")
    if gateway_log.handlers or logging.getLogger().handlers:
        return  # configured by someone (gunicorn's logconfig, pytest): leave it alone
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "[%Y-%m-%d %H:%M:%S %z]",
        )
    )
    gateway_log.addHandler(handler)
    gateway_log.setLevel(logging.INFO)
