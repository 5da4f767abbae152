"""Test harness: raw HTTP requests and real gunicorn servers.

Owns the two things HTTP-level tests need and must not get subtly wrong:

- `raw_request` puts the request target on the wire byte for byte. Client libraries
  normalise `//evil`, `/\\evil` or `%0d%0a` before sending, which would hide exactly
  the hostile inputs the gateway has to answer safely.
- `GunicornServer` runs the project's own gunicorn config on a free port on
  127.0.0.1 and makes sure the master and its workers are gone afterwards, even when
  a test fails or pytest exits early.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

REPO = Path(__file__).resolve().parent.parent
GUNICORN_CONF = REPO / "gunicorn.conf.py"
BUNDLED_MAP = REPO / "redirects.yaml"

HeaderArg = Mapping[str, str] | Iterable[tuple[str, str]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing is bound to at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Headers(Mapping[str, str]):
    """Response headers: a case-insensitive mapping, plus `pairs` exactly as received.

    A repeated header maps to its values joined by ", "; `getlist` gives them apart.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs: tuple[tuple[str, str], ...] = tuple(pairs)
        joined: dict[str, str] = {}
        for name, value in self.pairs:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        self._joined = joined

    def __getitem__(self, name: str) -> str:
        return self._joined[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._joined

    def __iter__(self) -> Iterator[str]:
        return iter(self._joined)

    def __len__(self) -> int:
        return len(self._joined)

    def getlist(self, name: str) -> list[str]:
        key = name.lower()
        return [value for n, value in self.pairs if n.lower() == key]

    def __repr__(self) -> str:
        return f"Headers({list(self.pairs)!r})"


@dataclass(frozen=True)
class Response:
    """One HTTP response as it came off the wire."""

    status: int
    headers: Headers
    body: bytes  # de-chunked if the server chunked it; otherwise every byte after the headers
    reason: str = ""
    raw: bytes = b""  # the whole response, for assertions about exact bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class IncompleteResponse(ValueError):
    """The connection ended before the response did: its body is shorter than Content-Length.

    A ValueError, like every other unreadable response, so that request loops which count
    `(OSError, ValueError)` as "no answer" count a cut-off response as no answer too.
    """


# Responses that never have a body, whatever their Content-Length says (RFC 9110 §6.4.1).
def _has_no_body(status: int, head: bool) -> bool:
    return head or 100 <= status < 200 or status in (204, 304)


def _split_head(data: bytes) -> tuple[str, int, str, Headers, bytes]:
    """Return (status line, status, reason, headers, bytes after the headers)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError(f"no end of headers in response: {data[:200]!r}")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, _, status_reason = status_line.partition(" ")
    status, _, reason = status_reason.partition(" ")
    if not version.startswith("HTTP/1.") or not (len(status) == 3 and status.isdigit()):
        raise ValueError(f"bad status line: {status_line!r}")
    pairs = []
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ValueError(f"bad header line: {line!r}")
        pairs.append((name, value.strip(" \t")))
    return status_line, int(status), reason, Headers(pairs), rest


def _content_length(headers: Headers) -> int | None:
    """Return the Content-Length (None if absent); refuse a malformed or contradictory one."""
    values = {v.strip() for value in headers.getlist("Content-Length") for v in value.split(",")}
    if not values:
        return None
    if len(values) != 1 or not next(iter(values)).isdigit():
        raise ValueError(f"bad Content-Length: {headers.getlist('Content-Length')!r}")
    return int(values.pop())


def _is_chunked(headers: Headers) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


def parse_response(data: bytes, *, head: bool = False) -> Response:
    """Parse a complete HTTP/1.x response; `head`: it answers a HEAD request.

    Raises IncompleteResponse when the body is shorter than its Content-Length (a
    connection cut mid-response), ValueError for any other framing that does not add up.
    HEAD responses and 1xx, 204 and 304 have no body: their Content-Length is not a promise.
    """
    _, status, reason, headers, rest = _split_head(data)
    if _is_chunked(headers):
        body = _dechunk(rest) if rest else rest
    else:
        body = rest
        length = _content_length(headers)
        if length is not None and not _has_no_body(status, head):
            if len(rest) < length:
                raise IncompleteResponse(
                    f"{status} response cut short: Content-Length {length}, "
                    f"expected {length} body bytes, got {len(rest)}"
                )
            if len(rest) > length:
                raise ValueError(
                    f"{status} response has more than its Content-Length: "
                    f"expected {length} body bytes, got {len(rest)}"
                )
    return Response(status, headers, body, reason, data)


def _dechunk(data: bytes) -> bytes:
    body = bytearray()
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            raise IncompleteResponse("truncated chunked body")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(body)  # trailers, if any, are not needed by any test
        if len(data) < size + 2:
            raise IncompleteResponse(
                f"truncated chunked body: chunk of {size} bytes, got {min(len(data), size)}"
            )
        if data[size : size + 2] != b"\r\n":
            raise ValueError("bad chunk framing")
        body += data[:size]
        data = data[size + 2 :]


def _complete(data: bytes, head: bool) -> bool:
    """True once `data` holds the headers and the whole body their Content-Length promises.

    Only then may the reader stop before the server closes. Responses without a body
    (HEAD, 1xx, 204, 304), chunked ones and ones without Content-Length are read to the
    close, so that any stray bytes after them are seen too.
    """
    try:
        _, status, _, headers, rest = _split_head(data)
        length = _content_length(headers)
    except ValueError:
        return False  # headers not all here yet, or unreadable: parse_response says which
    if length is None or _is_chunked(headers) or _has_no_body(status, head):
        return False
    return len(rest) >= length


def send_raw(port: int, data: bytes, *, timeout: float = 5.0) -> Response:
    """Send `data` to 127.0.0.1:`port` as is and read one response.

    Reading stops when the server closes, or as soon as the headers and the whole body
    their Content-Length promises have arrived, however many TCP segments they came in.
    A response cut short (the server closed or reset the connection mid-body) raises
    IncompleteResponse. A request starting with "HEAD " is answered without a body.
    """
    head = data.startswith(b"HEAD ")
    deadline = time.monotonic() + timeout
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        while not _complete(received, head):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no complete response from port {port} within {timeout} s "
                    f"({len(received)} bytes so far)"
                )
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                # A server may reset after writing its answer (e.g. with request data unread);
                # parse_response tells a whole answer from a cut one.
                if received:
                    break
                raise
            except TimeoutError:
                raise TimeoutError(
                    f"no complete response from port {port} within {timeout} s "
                    f"({len(received)} bytes so far)"
                ) from None
            if not chunk:
                break
            received += chunk
    return parse_response(bytes(received), head=head)


def raw_request(
    port: int,
    target: str | bytes,
    *,
    method: str = "GET",
    host: str | bytes | None = "khabarovskadm.ru",
    headers: HeaderArg | None = None,
    timeout: float = 5.0,
) -> Response:
    """Send `METHOD target HTTP/1.1` with exactly these bytes as the target.

    A str target or host is encoded as latin-1, so it must already be percent-encoded
    (or pass bytes). `host=None` sends no Host header. `Connection: close` is always
    sent so that the end of the response is the end of the connection.
    """
    lines = [b"%s %s HTTP/1.1" % (method.encode("ascii"), _latin1(target))]
    if host is not None:
        lines.append(b"Host: " + _latin1(host))
    lines.append(b"Connection: close")
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    lines += [_latin1(f"{name}: {value}") for name, value in pairs]
    return send_raw(port, b"\r\n".join(lines) + b"\r\n\r\n", timeout=timeout)


def _latin1(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


class ServerStartError(RuntimeError):
    """gunicorn exited, or never answered /-/health with 200, during `start`."""

    def __init__(self, message: str, *, returncode: int | None, log: str) -> None:
        tail = "\n".join(log.splitlines()[-40:])
        super().__init__(f"{message}\n--- gunicorn log (last lines) ---\n{tail}")
        self.returncode = returncode
        self.log = log


# Every server not yet stopped, so that an interpreter exit still stops them.
_LIVE: set[GunicornServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


# prctl(PR_SET_PDEATHSIG): the master gets SIGTERM if pytest dies without running atexit
# (SIGKILL, os._exit). Linux only; elsewhere atexit and teardown have to do.
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class GunicornServer:
    """A gunicorn master with its workers, serving `app` with the project's config.

    `start` returns once GET /-/health has answered 200; `stop` (or leaving the
    `with` block) ends the master and everything in its process group.

        with GunicornServer().start(map_path) as server:
            response = server.request("//evil")
    """

    START_TIMEOUT = 15.0  # seconds, per attempt
    BIND_ATTEMPTS = 3

    def __init__(
        self,
        *,
        app: str = "wsgi:app",
        config: Path = GUNICORN_CONF,
        log_path: Path | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._own_log = log_path is None
        self._log_path = log_path
        self._final_log: str | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int:
        """The master's pid, which is also its process group id."""
        if self._proc is None:
            raise RuntimeError("server not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def start(
        self,
        map_path: str | os.PathLike[str],
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> GunicornServer:
        """Serve `map_path`; `env` adds variables (GATEWAY_MAP/BIND/WORKERS are ours)."""
        if self._proc is not None:
            raise RuntimeError("a GunicornServer starts only once")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="gunicorn-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self._log_path.touch()
        base_env = {
            **os.environ,
            **(env or {}),
            "GATEWAY_MAP": os.fspath(map_path),
            "GATEWAY_WORKERS": str(workers),
            "PYTHONUNBUFFERED": "1",
        }
        try:
            for _ in range(self.BIND_ATTEMPTS):
                self.port = free_port()
                proc = self._spawn(
                    {**base_env, "GATEWAY_BIND": f"127.0.0.1:{self.port}"}, extra_args
                )
                if self._wait_ready(workers):
                    return self
                # Another process took the port between free_port() and gunicorn's bind.
                # Nothing to drain, and a worker retrying its bind ignores SIGTERM: kill.
                _killpg(proc.pid)
                proc.wait()
            raise ServerStartError(
                f"no free port after {self.BIND_ATTEMPTS} attempts",
                returncode=self.returncode,
                log=self.log_text(),
            )
        except BaseException:
            self.stop()
            raise

    def _spawn(self, env: dict[str, str], extra_args: Sequence[str]) -> subprocess.Popen[bytes]:
        assert self._log_path is not None
        self._log_offset = self._log_path.stat().st_size  # where this attempt's log begins
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(self.config), "--chdir", str(REPO)]
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [*cmd, *extra_args, self.app],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: one killpg reaches workers
                preexec_fn=_die_with_parent,
            )
        _LIVE.add(self)
        return self._proc

    def _wait_ready(self, workers: int) -> bool:
        """True once every worker booted and /-/health said 200; False if the port was taken.

        Raises ServerStartError on any other failure.
        """
        assert self._proc is not None
        deadline = time.monotonic() + self.START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            log = self._read_log(self._log_offset)
            if "Connection in use" in log:
                return False
            if self._proc.poll() is not None:
                raise ServerStartError(
                    f"gunicorn exited with status {self._proc.returncode} before serving",
                    returncode=self._proc.returncode,
                    log=self.log_text(),
                )
            booted = log.count("Booting worker with pid")
            if booted < workers:
                last = f"{booted} of {workers} workers booted"
            else:
                try:
                    response = raw_request(self.port, "/-/health", timeout=1.0)
                except (OSError, ValueError) as e:
                    last = repr(e)
                else:
                    if response.status == 200:
                        return True
                    last = f"status {response.status}"
            time.sleep(0.05)
        raise ServerStartError(
            f"GET /-/health gave no 200 within {self.START_TIMEOUT} s ({last})",
            returncode=self.returncode,
            log=self.log_text(),
        )

    def _terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM the master (a graceful stop), SIGKILL the group if it takes too long."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    _killpg(proc.pid)
                    proc.wait()
        finally:
            _killpg(proc.pid)  # any worker that outlived its master
            _LIVE.discard(self)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the server and return the master's exit status (None if never started)."""
        try:
            self._terminate(timeout)
        finally:
            if self._final_log is None and self._log_path is not None:
                self._final_log = self._read_log()
                if self._own_log:
                    self._log_path.unlink(missing_ok=True)
        return self.returncode

    def log_text(self) -> str:
        """What gunicorn and the app wrote to stdout and stderr so far."""
        return self._final_log if self._final_log is not None else self._read_log()

    def _read_log(self, offset: int = 0) -> str:
        if self._log_path is None:
            return ""
        try:
            data = self._log_path.read_bytes()
        except FileNotFoundError:
            return ""
        return data[offset:].decode("utf-8", errors="replace")

    def request(
        self,
        target: str | bytes,
        *,
        method: str = "GET",
        host: str | bytes | None = "khabarovskadm.ru",
        headers: HeaderArg | None = None,
        timeout: float = 5.0,
    ) -> Response:
        """`raw_request` to this server."""
        return raw_request(
            self.port, target, method=method, host=host, headers=headers, timeout=timeout
        )

    def __enter__(self) -> GunicornServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class WriteMap(Protocol):
    """The `write_map` fixture: write a map file (str is dedented) and return its path."""

    def __call__(self, text: str | bytes, name: str = "redirects.yaml") -> Path: ...


class StartServer(Protocol):
    """The `gunicorn_factory` fixture: start a server, stopped at the test's teardown."""

    def __call__(
        self,
        map_path: str | os.PathLike[str],
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        app: str = "wsgi:app",
        config: Path = GUNICORN_CONF,
    ) -> GunicornServer: ...


def replace_file(path: Path, text: str) -> None:
    """Replace a file atomically, as a careful deploy does (write aside, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.tmp")
    aside.write_text(text, encoding="utf-8")
    os.replace(aside, path)


# A map whose every answer names its version: tests of live reload tell versions apart by it.
VERSIONED_HOST = "khabarovskadm.ru"


def versioned_map_text(version: str, *, extra_include: str = "") -> str:
    """The main file of version `version`; `archive` comes last, so a cut-off file fails."""
    return f"""\
version: 1
site:
  new_site: https://khv27.ru
hosts:
  {VERSIONED_HOST}: {{}}
rules:
  - from: /a
    to: /{version}/a
  - from: /p/<int:id>
    to: /{version}/p/{{id}}
  - from: /gone
    status: 410
    see: /{version}/see
include: [redirects.d/*.csv{extra_include}]
archive:
  notice:
    ru: "Архив {version}"
"""


def versioned_table_text(version: str) -> str:
    """The included table of version `version`."""
    return f"from,to,status,note\n/c,/{version}/c,301,\n"


APT_TIMEOUT = 400  # seconds, per apt-get step


def apt_install(*packages: str) -> str:
    """Install Debian packages with apt-get; return why they could not be, or '' on success.

    For tests that need a real program (nginx, Chromium) on a clean CI machine.
    """
    if os.geteuid() != 0:
        return f"not root, so apt-get cannot install {' '.join(packages)}"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine (not Debian or Ubuntu)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        try:
            done = subprocess.run(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(cmd)}` failed: {exc}"
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-5:])
            return f"`{' '.join(cmd)}` exited with {done.returncode}:\n{tail}"
    return ""
