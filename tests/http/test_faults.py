"""Fault injection: a real gunicorn under a steady request loop while its map is abused.

Valid and invalid rewrites of the map (FAULT_REWRITES of each: 10 in `make test`, 100
in `make fuzz`), a file written slowly in two halves, a writer that dies half way, the
map replaced by a directory, a dangling symlink, a FIFO and nothing at all, and SIGKILL
of a worker (also while the map on disk is broken, so that the new worker must start
from the last-known-good copy). Throughout, every answer to the probe URL must be a 301
to a version that was written whole and valid: an invalid or partial map never answers.
Connection errors and 5xx are counted; 5xx and wrong answers must be zero, connection
errors may only happen around a SIGKILL.

Root reads a file whatever its mode, and these tests run as root in CI, so "permissions
removed" (chmod 000) cannot make the map unreadable here; the map that cannot be read is
made other ways (dangling symlink, FIFO, directory, missing).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import GunicornServer, StartServer, raw_request

REWRITES = int(os.environ.get("FAULT_REWRITES", "10"))
RELOAD_INTERVAL = "0.2"  # seconds between the workers' checks of the map's files
DEADLINE = 15.0  # seconds a change may take to be served (a hang detector, not a speed test)
WORKERS = 2

MAP = """\
version: 1
site: {{new_site: "https://khv27.ru"}}
hosts: {{khabarovskadm.ru: {{}}}}
archive: {{notice: {{ru: "Архив"}}}}
rules:
{rules}
"""
INVALID = [
    "version: 1\nsite: [unclosed\n",  # YAML syntax
    MAP.format(rules="  - {from: /probe, to: https://evil.example/}"),  # off the allowed hosts
    "",  # empty
    MAP.format(rules="  - {from: /probe, to: /a/}\n  - {from: /probe/, to: /b/}"),  # duplicate
    MAP.format(rules="  - {from: /probe, to: /v/{x}/}"),  # unbound capture
    "a: &a [x]\nb: *a\n",  # alias
    "\xff\xfe".encode("latin-1").decode("latin-1"),  # not UTF-8 once written as latin-1
]


def valid_map(version: str, filler: int = 0) -> str:
    """Return a map whose /probe answers https://khv27.ru/v/<version>/ (its last rule)."""
    rules = [f"  - {{from: /filler-{i}, to: /f/{i}/}}" for i in range(filler)]
    rules.append(f"  - {{from: /probe, to: /v/{version}/}}")
    return MAP.format(rules="\n".join(rules))


def location_of(version: str) -> str:
    return f"https://khv27.ru/v/{version}/"


@dataclass
class Loop:
    """A bounded steady request loop on /probe, counting every kind of answer."""

    port: int
    allowed: set[str] = field(default_factory=set)  # Locations of versions written whole
    answers: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    requests: int = 0
    server_errors: int = 0
    max_requests: int = 200_000
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, version: str) -> None:
        with self._lock:
            self.allowed.add(location_of(version))

    def run(self) -> None:
        while not self._stop.is_set() and self.requests < self.max_requests:
            self.requests += 1
            try:
                response = raw_request(self.port, "/probe", timeout=5.0)
            except (OSError, ValueError) as exc:
                self.errors.append((time.monotonic(), repr(exc)))
                time.sleep(0.01)
                continue
            location = response.header("Location") or ""
            self.answers[f"{response.status} {location}"] += 1
            if response.status >= 500:
                self.server_errors += 1
            with self._lock:
                if response.status != 301 or location not in self.allowed:
                    self.wrong.append(f"{response.status} {location}")
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def faulty(
    gunicorn_factory: StartServer, tmp_path: Path
) -> Iterator[tuple[GunicornServer, Path, Loop]]:
    """A 2-worker gunicorn on a map in tmp_path, with the request loop running."""
    map_path = tmp_path / "redirects.yaml"
    map_path.write_text(valid_map("0"), encoding="utf-8")
    server = gunicorn_factory(
        map_path,
        workers=WORKERS,
        env={
            "GATEWAY_RELOAD_INTERVAL": RELOAD_INTERVAL,
            "GATEWAY_STATE_DIR": str(tmp_path / "state"),
            "GATEWAY_ACCESS_LOG": "off",
        },
    )
    loop = Loop(server.port)
    loop.allow("0")
    thread = threading.Thread(target=loop.run, name="fault-loop", daemon=True)
    thread.start()
    try:
        yield server, map_path, loop
    finally:
        loop.stop()
        thread.join(10)


def _write(path: Path, text: str, *, atomic: bool) -> None:
    if atomic:  # how deploy tools write: a new file renamed over the old
        staged = path.with_name(path.name + ".new")
        staged.write_text(text, encoding="utf-8")
        staged.replace(path)
    else:  # how an editor without backups writes: truncate, then write in place
        with path.open("w", encoding="utf-8") as f:
            f.write(text)


def _wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {DEADLINE} s: {what}")


def _served(port: int, version: str, times: int = 2 * WORKERS + 2) -> bool:
    """True when fresh connections answer this version and every worker serves one map."""
    for _ in range(times):
        try:
            response = raw_request(port, "/probe", timeout=5.0)
        except (OSError, ValueError):
            return False
        if response.header("Location") != location_of(version):
            return False
    # Connections in a row need not reach every worker (they share one listening socket
    # and the first idle one accepts), so ask the metrics, which list every live worker.
    return _one_map_everywhere(port)


def _one_map_everywhere(port: int) -> bool:
    """True when all WORKERS live workers serve the same map version (gateway_map_info)."""
    try:
        text = raw_request(port, "/-/metrics", timeout=5.0).text
    except (OSError, ValueError):
        return False
    serving = [
        line.split('version="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("gateway_map_info{") and line.endswith(" 1.0")
    ]
    return len(serving) == WORKERS and len(set(serving)) == 1


def _still_serves(port: int, version: str) -> None:
    """Assert that the map being served is still this version (after a fault)."""
    for _ in range(2 * WORKERS + 2):
        response = raw_request(port, "/probe", timeout=5.0)
        assert (response.status, response.header("Location")) == (301, location_of(version))


def _a_failed_load_seen(port: int) -> bool:
    """True when a worker's /-/health shows a failed load (its last_error is set)."""
    try:
        health = json.loads(raw_request(port, "/-/health", timeout=5.0).body)
    except (OSError, ValueError):
        return False
    return bool(health.get("last_error"))


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def _report(name: str, loop: Loop, faults: int) -> dict[str, object]:
    figures: dict[str, object] = {
        "test": name,
        "requests": loop.requests,
        "faults_injected": faults,
        "wrong_answers": len(loop.wrong),
        "server_errors_5xx": loop.server_errors,
        "connection_errors": len(loop.errors),
        "answers": dict(loop.answers.most_common(5)),
    }
    report = os.environ.get("FAULT_REPORT")
    if report:  # fuzz/run.sh collects the figures for docs/reliability.md
        with open(report, "a", encoding="utf-8") as f:
            f.write(json.dumps(figures) + "\n")
    print(json.dumps(figures))
    return figures


@pytest.mark.slow
def test_valid_and_invalid_rewrites_under_load(
    faulty: tuple[GunicornServer, Path, Loop],
) -> None:
    """REWRITES valid rewrites are each served; REWRITES invalid ones never answer."""
    server, map_path, loop = faulty
    _wait_until(lambda: _served(server.port, "0"), "the first map served")
    for i in range(1, REWRITES + 1):
        bad = INVALID[i % len(INVALID)]
        _write(map_path, bad, atomic=i % 2 == 0)
        _wait_until(lambda: _a_failed_load_seen(server.port), f"invalid rewrite {i} attempted")
        _still_serves(server.port, str(i - 1))
        loop.allow(str(i))
        _write(map_path, valid_map(str(i), filler=i % 7), atomic=i % 2 == 1)
        _wait_until(lambda i=i: _served(server.port, str(i)), f"valid rewrite {i} served")
    loop.stop()
    figures = _report("rewrites", loop, 2 * REWRITES)
    assert (loop.wrong[:5], loop.server_errors, loop.errors[:5]) == ([], 0, [])
    assert figures["requests"] == loop.requests > REWRITES


@pytest.mark.slow
def test_half_written_file_is_never_served(faulty: tuple[GunicornServer, Path, Loop]) -> None:
    """A slow writer (two halves, each a valid map) and a writer that dies half way."""
    server, map_path, loop = faulty
    _wait_until(lambda: _served(server.port, "0"), "the first map served")
    full = valid_map("slow", filler=40)
    # The first half alone is a valid map in which /probe has no rule (a 404): serving it
    # would be a wrong answer. It is written in place, then the rest 0.2 s later (under
    # the settle time, so the reload waits for the file to be quiet).
    first = full[: full.index("  - {from: /probe")]
    loop.allow("slow")
    with map_path.open("w", encoding="utf-8") as f:
        f.write(first)
        f.flush()
        time.sleep(0.2)
        f.write(full[len(first) :])
    _wait_until(lambda: _served(server.port, "slow"), "the slowly written map served")
    # A writer that dies half way: cut inside a rule, never finished.
    map_path.write_text(full[: len(first) + 10], encoding="utf-8")
    _wait_until(lambda: _a_failed_load_seen(server.port), "the truncated map attempted")
    _still_serves(server.port, "slow")
    loop.allow("after")
    _write(map_path, valid_map("after"), atomic=True)
    _wait_until(lambda: _served(server.port, "after"), "the repaired map served")
    loop.stop()
    _report("half-written", loop, 2)
    assert (loop.wrong[:5], loop.server_errors, loop.errors[:5]) == ([], 0, [])


FILE_FAULTS = ["directory", "dangling-symlink", "fifo", "missing", "chmod-000"]


@pytest.mark.slow
def test_map_replaced_by_something_unreadable(faulty: tuple[GunicornServer, Path, Loop]) -> None:
    """Each fault in turn: the old map keeps answering, then a valid map put back is served.

    One server for all of them (each would cost a gunicorn start); a later fault being
    served at all proves the watcher survived the earlier ones (the FIFO hung it).
    """
    server, map_path, loop = faulty
    _wait_until(lambda: _served(server.port, "0"), "the first map served")
    served = "0"
    for fault in FILE_FAULTS:
        map_path.unlink()
        if fault == "directory":
            map_path.mkdir()
        elif fault == "dangling-symlink":
            map_path.symlink_to(map_path.with_name("nowhere.yaml"))
        elif fault == "fifo":
            # A FIFO blocked a plain read until a writer came: the watcher thread hung there
            # and no later change was ever loaded. Nobody writes to this one.
            os.mkfifo(map_path)
        elif fault == "chmod-000":
            # As root this stays readable (the same content is read again); as another
            # user it is unreadable. Either way the answer must not change.
            map_path.write_text(valid_map(served), encoding="utf-8")
            map_path.chmod(0)
        if fault == "chmod-000":
            time.sleep(1.0)
        else:
            _wait_until(lambda: _a_failed_load_seen(server.port), f"the {fault} attempted")
        _still_serves(server.port, served)
        if map_path.is_dir() and not map_path.is_symlink():
            map_path.rmdir()
        else:
            map_path.unlink(missing_ok=True)
        served = f"after-{fault}"
        loop.allow(served)
        map_path.write_text(valid_map(served), encoding="utf-8")
        _wait_until(
            lambda v=served: _served(server.port, v), f"a valid map served after the {fault}"
        )
    loop.stop()
    _report("unreadable-map", loop, len(FILE_FAULTS))
    assert (loop.wrong[:5], loop.server_errors, loop.errors[:5]) == ([], 0, [])


@pytest.mark.slow
def test_sigkill_of_a_worker(faulty: tuple[GunicornServer, Path, Loop]) -> None:
    """A killed worker is replaced; one started while the map is broken serves the last good."""
    server, map_path, loop = faulty
    _wait_until(lambda: _served(server.port, "0"), "the first map served")
    loop.allow("1")
    _write(map_path, valid_map("1"), atomic=True)
    _wait_until(lambda: _served(server.port, "1"), "version 1 served")
    kills = 0
    windows: list[tuple[float, float]] = []  # from each kill to every worker serving again
    for broken in (False, True):
        if broken:
            # The new worker cannot load the map on disk: it must serve the last-known-good
            # copy of version 1 (not 503, not nothing).
            _write(map_path, INVALID[0], atomic=True)
            _wait_until(lambda: _a_failed_load_seen(server.port), "the broken map attempted")
        before = _workers(server.pid)
        victim = before[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        kills += 1
        _wait_until(
            lambda before=before, victim=victim: (
                len(_workers(server.pid)) == WORKERS
                and victim not in _workers(server.pid)
                and set(_workers(server.pid)) != set(before)
            ),
            "the killed worker replaced",
        )
        _wait_until(lambda: _served(server.port, "1", times=4 * WORKERS), "all workers serve v1")
        windows.append((killed_at, time.monotonic()))
    loop.stop()
    _report("sigkill", loop, kills)
    assert (loop.wrong[:5], loop.server_errors) == ([], 0)
    # Connection errors are allowed only while a killed worker was being replaced.
    late = [e for e in loop.errors if not any(a <= e[0] <= b for a, b in windows)]
    assert late == []
