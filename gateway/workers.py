"""The gateway's gunicorn worker: gthread whose threads are only given whole requests.

Owns what a slow or idle client can hold. gunicorn's gthread worker hands each accepted
connection to a pool thread, which then blocks reading its headers for as long as the
client takes: 2 workers x 4 threads meant 8 slow clients stalled every request,
/-/health included (issue 13). Here, instead:

- the worker's main loop (its selector, which holds thousands of sockets for free) reads
  a new or kept-alive connection's request head itself, without blocking, and gives the
  connection to a thread only once the head is complete (a blank line) or past 64 KiB;
- a connection whose head is not complete within GATEWAY_HEADER_TIMEOUT seconds of its
  accept (or of its first byte after a keep-alive wait) is closed, with nothing sent;
- in a thread, every read of the request (the rest of a long head, a body the app
  reads) honours the same deadline, and the drain of a body the app did not read (a POST
  answered 405) takes only the bytes already there: a slow body closes the connection
  instead of holding the thread;
- the closing handshake after such a response (half-close, then read and discard until
  the client closes, at most 2 s) is done by the main loop, not by blocking it.

TLS and HTTP/2 prior knowledge keep gunicorn's own path (the gateway uses neither).
Only gunicorn and the standard library: the master loads this class (a change to this
file needs a restart, not a HUP). Written against gunicorn 27's ThreadWorker internals
(accept, handle, finish_request, murder_pending, _keepalive_after); tests/http/
test_slow_clients.py fails if they change under it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import socket
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

DEFAULT_HEADER_TIMEOUT = 10.0
# A head this long goes to a thread anyway: gunicorn's parser answers it with its
# limits (414, 431) and reads any rest under the deadline. Bounds the buffer per socket.
MAX_BUFFERED_HEAD = 65536
# The closing handshake after a response with request bytes left unread (RFC 9112 §9.6).
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 65536


def header_timeout() -> float:
    """GATEWAY_HEADER_TIMEOUT (validated by gunicorn.conf.py), else the default."""
    try:
        value = float(os.environ.get("GATEWAY_HEADER_TIMEOUT", "") or DEFAULT_HEADER_TIMEOUT)
    except ValueError:
        return DEFAULT_HEADER_TIMEOUT
    return value if value > 0 else DEFAULT_HEADER_TIMEOUT


class RequestDeadline(ConnectionResetError):
    """The request was not all here in time; gunicorn then closes the connection quietly.

    A ConnectionResetError (errno ECONNRESET) because that is what every gunicorn
    read path already treats as "the client is gone": a debug line, no answer, no
    traceback. A plain timeout would be logged as a socket error with a traceback.
    """

    def __init__(self) -> None:
        super().__init__(errno.ECONNRESET, "request not received within its deadline")


class DeadlineReader:
    """The socket as gunicorn's parser sees it: each recv ends by the request's deadline.

    Past the deadline a recv returns only bytes already received, or raises
    RequestDeadline. Everything else is the socket's own.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = float("inf")

    def recv(self, size: int) -> bytes:
        sock = self._sock
        prior = sock.gettimeout()
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                sock.settimeout(0.0)
            elif prior is None or prior > remaining:
                sock.settimeout(remaining)
            return sock.recv(size)
        except BlockingIOError:
            raise RequestDeadline() from None
        except TimeoutError:
            if time.monotonic() >= self.deadline:
                raise RequestDeadline() from None
            raise  # a timeout of the caller's own (gunicorn's drain) keeps its meaning
        finally:
            sock.settimeout(prior)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Conn(TConn):  # type: ignore[misc]
    """A connection, with the head read so far by the main loop and its deadline."""

    def __init__(self, worker: DeadlineThreadWorker, *args: Any) -> None:
        super().__init__(*args)
        self.worker = worker
        self.head: bytearray | None = None  # bytes read by the main loop, not yet parsed
        self.deadline = 0.0  # of the request being read; 0: none set yet
        self.generation = 0  # tells a stale entry in the worker's deadline queue
        self.reader: DeadlineReader | None = None

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            super().close()


class DeadlineThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, with request heads read by the main loop and a deadline on every read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout()
        # (deadline, generation, conn), in deadline order: every entry has the same timeout.
        self.reading: deque[tuple[float, int, _Conn]] = deque()
        self.lingering: deque[tuple[float, socket.socket]] = deque()

    # --- the main loop's side --------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        if self.cfg.is_ssl:
            super().accept(listener)
            return
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        if negotiation.prior_knowledge_allowed(self.cfg, client_addr):
            # HTTP/2 prior knowledge (not configured here): gunicorn's own path.
            client_sock.setblocking(True)
            self.enqueue_req(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))
            return
        conn = _Conn(self, self.cfg, client_sock, client_addr, listener.getsockname())
        self._read_head(conn)

    def on_client_socket_readable(self, conn: Any, client: socket.socket) -> None:
        """A kept-alive connection sends again: its next head is read here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        if isinstance(conn, _Conn):
            self._read_head(conn)
        else:
            self.enqueue_req(conn)

    def _read_head(self, conn: _Conn) -> None:
        conn.head = bytearray()
        conn.deadline = time.monotonic() + self.header_timeout
        conn.generation += 1
        # Bytes may be here already (a kept-alive client that sent at once): then the
        # connection goes to a thread without ever being registered.
        state = self._read_some(conn)
        if state == "wait":
            self.reading.append((conn.deadline, conn.generation, conn))
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self._on_head_readable, conn)
            )
        else:
            self._dispatch(conn, state)

    def _on_head_readable(self, conn: _Conn, client: socket.socket) -> None:
        state = self._read_some(conn)
        if state != "wait":
            self._stop_reading(conn)
            self._dispatch(conn, state)

    def _read_some(self, conn: _Conn) -> str:
        """Read what is there: "ready" (a whole head, or 64 KiB), "gone" (closed) or "wait"."""
        assert conn.head is not None
        try:
            data = conn.sock.recv(MAX_BUFFERED_HEAD)
        except BlockingIOError:
            return "wait"
        except OSError:
            return "gone"
        if not data:
            return "gone"
        head = conn.head
        head += data
        if b"\n\r\n" in head or b"\n\n" in head or len(head) >= MAX_BUFFERED_HEAD:
            return "ready"
        return "wait"

    def _dispatch(self, conn: _Conn, state: str) -> None:
        if state == "ready":
            self.enqueue_req(conn)
        else:
            self.nr_conns -= 1
            conn.close()

    def _stop_reading(self, conn: _Conn) -> None:
        conn.generation += 1  # its entry in self.reading is stale now
        self.poller.unregister(conn.sock)

    def murder_pending(self) -> None:
        """Also close the heads past their deadline and end the lingering closes."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0][0] <= now:
            _, generation, conn = self.reading.popleft()
            if generation != conn.generation:
                continue  # read in time: the connection moved on
            self._stop_reading(conn)
            self.nr_conns -= 1
            self.log.debug("Closing %s: no complete request head in time", conn.client)
            conn.close()
        while self.lingering and self.lingering[0][0] <= now:
            _, sock = self.lingering.popleft()
            self._end_linger(sock)

    def _cap_keepalive(self, deadline: float) -> None:
        """A stopping worker waits for heads still coming as briefly as for kept-alive ones."""
        super()._cap_keepalive(deadline)
        capped = [(min(d, deadline), g, c) for d, g, c in self.reading]
        self.reading = deque(capped)
        for d, g, c in capped:
            if g == c.generation:
                c.deadline = d

    def linger(self, conn: _Conn) -> None:
        """Half-close; read and discard what the client still sends, then close."""
        sock = conn.sock
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self.lingering.append((time.monotonic() + LINGER_SECONDS, sock))
        drained = [0]
        self.poller.register(sock, selectors.EVENT_READ, partial(self._on_linger_readable, drained))

    def _on_linger_readable(self, drained: list[int], sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        drained[0] += len(data)
        if not data or drained[0] >= LINGER_MAX_BYTES:
            self._end_linger(sock)  # its entry in self.lingering finds it closed

    def _end_linger(self, sock: socket.socket) -> None:
        if sock.fileno() < 0:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(sock)
        sock.close()

    # --- the thread's side -----------------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        if isinstance(conn, _Conn):
            if conn.head is not None:
                head, conn.head = bytes(conn.head), None
                conn.sock.setblocking(True)
                conn.init()
                conn.parser.unreader.unread(head)
            if conn.reader is None and conn.parser is not None:
                conn.reader = DeadlineReader(conn.parser.unreader.sock)
                conn.parser.unreader.sock = conn.reader
            if conn.reader is not None:
                # A pipelined request that went straight to a thread gets a deadline here.
                conn.reader.deadline = conn.deadline or time.monotonic() + self.header_timeout
            conn.deadline = 0.0
        return super().handle(conn)

    def _keepalive_after(self, conn: Any, keepalive: bool) -> bool:
        # Drain only what is already here: a body still on its way closes the connection.
        if isinstance(conn, _Conn) and conn.reader is not None:
            conn.reader.deadline = 0.0
        return bool(super()._keepalive_after(conn, keepalive))
