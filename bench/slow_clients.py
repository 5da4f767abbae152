"""Slow clients against gunicorn alone (issue 13): which worker class holds, by measurement.

Owns the attack (slow headers, idle connections, slow POST bodies, each connection bound
to a source address in 127.0.0.2-127.0.0.9 before it connects), the legitimate probe on
127.0.0.1, and the comparison of worker classes under it. Loopback only, bounded in time.

For each candidate (the project's gunicorn.conf.py with one override, through
bench/gunicorn_bench.conf.py), serving the bundled map with 2 workers:

1. the attack runs while a legitimate client asks GET / (Host khabarovskadm.ru) every
   0.2 s with a 2 s deadline; every answer must be the same 301 (status, Location and
   Cache-Control) as on a quiet server;
2. how many attack connections the server closed, and after how long;
3. throughput: wrk -t2 -c50 on GET /, candidates interleaved round by round, each
   against plain gthread in the same round (a ratio pair by pair).

    python bench/slow_clients.py [--candidates deadline,gthread,gevent] [--attack-seconds 30]
        [--interval 10] [--slow-headers 256] [--idle 64] [--slow-bodies 64] [--rounds 3]

tests/http/test_slow_clients.py is the small version, in `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

ATTACK_SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 10))
HOST = "khabarovskadm.ru"
SLOW_HEADER_START = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode()
SLOW_BODY_HEAD = f"POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 1000000\r\n\r\n".encode()

# The candidates: overrides of the project's settings (bench/gunicorn_bench.conf.py).
CANDIDATES: dict[str, dict[str, object]] = {
    "project": {},
    "gthread": {"worker_class": "gthread"},
    "deadline": {"worker_class": "gateway.workers.DeadlineThreadWorker"},
    "gevent": {"worker_class": "gevent", "worker_connections": 1000},
}


# --- the attack ---------------------------------------------------------------------------


@dataclass
class _Conn:
    kind: str  # "slow-header", "idle" or "slow-body"
    sock: socket.socket
    opened: float
    next_send: float
    closed_after: float | None = None  # seconds from open to the server's close
    answered: bool = False  # the server sent something (the 405 to a slow body)


@dataclass
class AttackStats:
    opened: dict[str, int] = field(default_factory=dict)
    closed: dict[str, int] = field(default_factory=dict)  # closed by the server
    answered: dict[str, int] = field(default_factory=dict)
    closed_after: dict[str, list[float]] = field(default_factory=dict)

    def line(self) -> str:
        parts = []
        for kind, opened in self.opened.items():
            times = self.closed_after.get(kind) or [0.0]
            parts.append(
                f"{kind}: {self.closed.get(kind, 0)}/{opened} closed by the server "
                f"(median {statistics.median(times):.1f} s, max {max(times):.1f} s), "
                f"{self.answered.get(kind, 0)} answered"
            )
        return "; ".join(parts)


class Attack:
    """Slow-header, idle and slow-body connections, driven by one thread with a selector.

    A slow-header connection sends a request line and Host, then one header byte every
    `interval` seconds, never ending its headers. A slow-body connection sends a POST's
    headers (Content-Length 1,000,000) at once, then one body byte every `interval`.
    An idle one sends nothing. Each binds a source address from `sources` in turn.
    """

    def __init__(
        self,
        port: int,
        *,
        slow_headers: int = 256,
        idle: int = 64,
        slow_bodies: int = 64,
        interval: float = 10.0,
        sources: tuple[str, ...] = ATTACK_SOURCES,
    ) -> None:
        self.port = port
        self.plan = {"slow-header": slow_headers, "idle": idle, "slow-body": slow_bodies}
        self.interval = interval
        self.sources = sources
        self.conns: list[_Conn] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attack", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> Attack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        n = 0
        now = time.monotonic()
        total = sum(self.plan.values())
        for kind, count in self.plan.items():
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((self.sources[n % len(self.sources)], 0))
                sock.connect(("127.0.0.1", self.port))  # loopback: the handshake is instant
                sock.setblocking(False)
                if kind == "slow-body":
                    sock.send(SLOW_BODY_HEAD)
                elif kind == "slow-header":
                    sock.send(SLOW_HEADER_START)
                # Sends spread over the interval, not all at one instant.
                self.conns.append(_Conn(kind, sock, now, now + self.interval * n / total))
                n += 1
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for conn in self.conns:
            sel.register(conn.sock, selectors.EVENT_READ, conn)
        live = set(range(len(self.conns)))
        while not self._stop.is_set() and live:
            now = time.monotonic()
            for i in list(live):
                conn = self.conns[i]
                if conn.kind == "idle" or now < conn.next_send:
                    continue
                conn.next_send = now + self.interval
                try:
                    conn.sock.send(b"a")
                except BlockingIOError:
                    pass
                except OSError:
                    self._closed(sel, conn, now)
                    live.discard(i)
            for key, _ in sel.select(timeout=0.05):
                conn = key.data
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    conn.answered = True
                    continue
                self._closed(sel, conn, time.monotonic())
                live.discard(self.conns.index(conn))
        sel.close()

    def _closed(self, sel: selectors.BaseSelector, conn: _Conn, now: float) -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(conn.sock)
        with self._lock:
            conn.closed_after = now - conn.opened

    def stats(self) -> AttackStats:
        stats = AttackStats()
        with self._lock:
            for conn in self.conns:
                stats.opened[conn.kind] = stats.opened.get(conn.kind, 0) + 1
                if conn.answered:
                    stats.answered[conn.kind] = stats.answered.get(conn.kind, 0) + 1
                if conn.closed_after is not None:
                    stats.closed[conn.kind] = stats.closed.get(conn.kind, 0) + 1
                    stats.closed_after.setdefault(conn.kind, []).append(conn.closed_after)
        return stats

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for conn in self.conns:
            conn.sock.close()


# --- the legitimate client ----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    latency: float
    status: int = 0
    location: str | None = None
    cache_control: str | None = None
    error: str = ""

    def key(self) -> tuple[int, str | None, str | None]:
        return (self.status, self.location, self.cache_control)


def get_home(port: int, deadline: float = 2.0, source: str = "127.0.0.1") -> Answer:
    """GET / with Host khabarovskadm.ru from `source`; the whole exchange within `deadline`."""
    start = time.monotonic()
    end = start + deadline
    data = bytearray()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((source, 0))
            sock.settimeout(deadline)
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (TimeoutError, OSError) as e:
        return Answer(time.monotonic() - start, error=f"{type(e).__name__} after {len(data)} B")
    head = bytes(data).partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    fields = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    status = re.match(r"HTTP/1\.[01] (\d{3})", head[0])
    return Answer(
        time.monotonic() - start,
        int(status.group(1)) if status else 0,
        fields.get("location"),
        fields.get("cache-control"),
        "" if status else f"bad status line {head[0]!r}",
    )


@dataclass
class ProbeResult:
    answers: list[Answer]
    expected: tuple[int, str | None, str | None]

    @property
    def bad(self) -> list[Answer]:
        return [a for a in self.answers if a.error or a.key() != self.expected]

    def line(self) -> str:
        lat = sorted(a.latency for a in self.answers)
        p50 = lat[len(lat) // 2] * 1000
        return (
            f"{len(self.answers)} legitimate requests, {len(self.bad)} failed or wrong; "
            f"latency median {p50:.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )


def probe(port: int, seconds: float, expected: tuple[int, str | None, str | None]) -> ProbeResult:
    """GET / every 0.2 s for `seconds` (each within 2 s)."""
    answers = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        answers.append(get_home(port))
        time.sleep(0.2)
    return ProbeResult(answers, expected)


# --- the comparison -----------------------------------------------------------------------


@contextlib.contextmanager
def serving(name: str, workdir: Path) -> Iterator[object]:
    from bench.run import gunicorn_server

    server = gunicorn_server(name, "wsgi:app", REPO, workdir, overrides=CANDIDATES[name])
    server.env["GATEWAY_WORKERS"] = "2"
    server.workers = 2
    server.start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


def attack_run(name: str, workdir: Path, args: argparse.Namespace) -> dict[str, object]:
    with serving(name, workdir) as server:
        port: int = server.port  # type: ignore[attr-defined]
        expected = get_home(port).key()
        with Attack(
            port,
            slow_headers=args.slow_headers,
            idle=args.idle,
            slow_bodies=args.slow_bodies,
            interval=args.interval,
        ) as attack:
            result = probe(port, args.attack_seconds, expected)
            stats = attack.stats()
    print(f"{name}: {result.line()}")
    print(f"{name}: {stats.line()}")
    return {"probe": result, "stats": stats}


def reload_run(name: str, map_dir: Path, workdir: Path, seconds: float = 12.0) -> None:
    """Latency of GET / every 20 ms while the map in `map_dir` is reloaded, 3 s in.

    Each worker's map watcher loads the new map in a thread; under gevent that thread is
    a greenlet, so the CPU-bound load blocks the worker's event loop while it runs.
    """
    from bench.run import gunicorn_server

    server = gunicorn_server(name, "wsgi:app", map_dir, workdir, overrides=CANDIDATES[name])
    server.env["GATEWAY_WORKERS"] = "2"
    server.workers = 2
    server.start(timeout=300)
    try:
        expected = get_home(server.port).key()
        answers = []
        changed = False
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if not changed and time.monotonic() - start > 3:
                with (map_dir / "redirects.yaml").open("a") as f:
                    f.write(f"# reload {time.time()}\n")
                changed = True
            answers.append(get_home(server.port, deadline=5.0))
            time.sleep(0.02)
    finally:
        server.stop()
    result = ProbeResult(answers, expected)
    slow = sum(1 for a in answers if a.latency > 0.25)
    print(f"reload {name}: {result.line()}; {slow} took over 250 ms")


def wrk_rps(port: int, seconds: int) -> float:
    done = subprocess.run(
        ["wrk", "-t2", "-c50", f"-d{seconds}s", "-H", f"Host: {HOST}", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    if re.search(r"Non-2xx or 3xx responses|Socket errors", done.stdout):
        print(done.stdout, file=sys.stderr)
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if not found:
        raise RuntimeError(done.stdout + done.stderr)
    return float(found.group(1))


def throughput(names: list[str], workdir: Path, rounds: int, seconds: int) -> None:
    """wrk on each candidate, interleaved; each ratio is against gthread in the same round."""
    if not shutil.which("wrk"):
        print("throughput: wrk not found (apt-get install wrk); skipped")
        return
    order = ["gthread", *[n for n in names if n != "gthread"]]
    with contextlib.ExitStack() as stack:
        servers = {n: stack.enter_context(serving(n, workdir)) for n in order}
        rps: dict[str, list[float]] = {n: [] for n in order}
        for _ in range(rounds):
            for n in order:
                rps[n].append(wrk_rps(servers[n].port, seconds))  # type: ignore[attr-defined]
    for n in order:
        ratios = [a / b for a, b in zip(rps[n], rps["gthread"], strict=True)]
        print(
            f"throughput {n}: {' '.join(f'{r:.0f}' for r in rps[n])} req/s; "
            f"vs gthread pair by pair {' '.join(f'{r:.2f}' for r in ratios)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", default="project,gthread,gevent")
    parser.add_argument("--attack-seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--slow-headers", type=int, default=256)
    parser.add_argument("--idle", type=int, default=64)
    parser.add_argument("--slow-bodies", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument(
        "--reload-map",
        type=Path,
        help="a folder with a large redirects.yaml (bench/genmap.py): time a reload of it",
    )
    args = parser.parse_args()
    names = [n for n in args.candidates.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="slow-clients-") as tmp:
        workdir = Path(tmp)
        if args.reload_map:
            for name in names:
                reload_run(name, args.reload_map.resolve(), workdir)
            return
        for name in names:
            attack_run(name, workdir, args)
        if not args.no_throughput:
            throughput(names, workdir, args.rounds, args.wrk_seconds)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
