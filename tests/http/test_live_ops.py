"""Live operations under real traffic: gunicorn, 2 workers, map changes, HUP and SIGKILL.

A steady request loop (threads sending raw HTTP requests, one connection each)
runs while the test changes the map on disk. Every answer names the version of
the map that gave it (``/v2/a``, ``Архив v2`` on a banner), so the loop can check
that each one came from exactly one complete version; the JSON access log names
the map hash of every answer, so the test can also check that no map ever mixed
two versions' files. Workers report their map through ``/-/metrics``
(``gateway_map_info`` has one series per live worker pid).

Costs about 35 s: three servers; most steps wait for the 2 s reload check.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.accesslog import FLUSH_INTERVAL
from gateway.mapfile import load_map
from tests.support import (
    GunicornServer,
    StartServer,
    raw_request,
    replace_file,
    versioned_map_text,
    versioned_table_text,
)

HOST = "khabarovskadm.ru"
WORKERS = 2
CONVERGE = 5.0  # the bound: every worker serves a valid change within 5 s
BOUND = 20.0  # how long any step may wait for the server before the test gives up
TARGETS = ("/a", "/p/7", "/c", "/gone", "/nothing")

T = TypeVar("T")


# --- the map: every answer names its version ----------------------------------------------


def deploy(folder: Path, version: str) -> None:
    """Write a version's two files the way a deploy does: the table, then the main file."""
    replace_file(folder / "redirects.d" / "table.csv", versioned_table_text(version))
    time.sleep(0.1)  # two files, not one atomic step: the reload must wait for both
    replace_file(folder / "redirects.yaml", versioned_map_text(version))


def reference_versions(tmp_path: Path, names: list[str]) -> dict[str, str]:
    """Map each complete version's content hash to its name."""
    hashes = {}
    for name in names:
        folder = tmp_path / f"reference-{name}"
        replace_file(folder / "redirects.d" / "table.csv", versioned_table_text(name))
        replace_file(folder / "redirects.yaml", versioned_map_text(name))
        hashes[load_map(folder / "redirects.yaml").version] = name
    return hashes


# --- the request loop ---------------------------------------------------------------------


@dataclass
class Answer:
    at: float
    target: str
    status: int | None  # None: no HTTP answer (connection error)
    version: str | None
    problem: str | None  # why the answer is wrong, if it is


def judge(target: str, status: int, headers: Any, body: bytes) -> tuple[str | None, str | None]:
    """Return (version, problem) for one answer of the test map."""
    if target in ("/a", "/p/7", "/c"):
        location = headers.get("Location") or ""
        match = re.fullmatch(r"https://khv27\.ru/(v\d+)" + re.escape(target), location)
        if status != 301 or match is None:
            return None, f"{target}: {status} Location={location!r}"
        if headers.get("Cache-Control") != "public, max-age=86400":
            return None, f"{target}: Cache-Control={headers.get('Cache-Control')!r}"
        return match.group(1), None
    text = body.decode("utf-8", "replace")
    versions = set(re.findall(r"Архив (v\d+)", text))
    expected = 410 if target == "/gone" else 404
    if target == "/gone":
        versions |= set(re.findall(r"https://khv27\.ru/(v\d+)/see", text))
    if status != expected or len(versions) != 1:
        return None, f"{target}: {status}, versions on the page {sorted(versions)}"
    if headers.get("Cache-Control") != "public, max-age=3600":
        return None, f"{target}: Cache-Control={headers.get('Cache-Control')!r}"
    return versions.pop(), None


@dataclass
class Traffic:
    """Threads sending requests, one connection each, until stopped (or a count is reached)."""

    port: int
    threads: int = 2
    max_requests: int = 100_000
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        for n in range(self.threads):
            worker = threading.Thread(target=self._loop, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=10)
        return self.answers

    def _loop(self, offset: int) -> None:
        n = offset
        while not self._stop.is_set() and len(self.answers) < self.max_requests:
            target = TARGETS[n % len(TARGETS)]
            n += 1
            try:
                response = raw_request(self.port, target, timeout=5.0)
            except Exception as exc:  # reset, refused, timeout: the failures that count
                self.answers.append(Answer(time.monotonic(), target, None, None, repr(exc)))
                continue
            version, problem = judge(target, response.status, response.headers, response.body)
            self.answers.append(Answer(time.monotonic(), target, response.status, version, problem))

    def served_since(self, since: float) -> set[str | None]:
        return {a.version for a in list(self.answers) if a.at > since}


# --- what the workers say ---------------------------------------------------------------------


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    response = raw_request(port, "/-/metrics")
    assert response.status == 200
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def workers_serving(port: int) -> dict[str, tuple[str, str]]:
    """pid -> (version, serving) for every live worker."""
    return {
        labels["pid"]: (labels["version"], labels["serving"])
        for name, labels, value in scrape(port)
        if name == "gateway_map_info" and value == 1
    }


def total(port: int, name: str, **match: str) -> float:
    return sum(
        value
        for sample_name, labels, value in scrape(port)
        if sample_name == name and all(labels.get(k) == v for k, v in match.items())
    )


def failing_pids(port: int) -> set[str]:
    return {
        labels["pid"]
        for name, labels, value in scrape(port)
        if name == "gateway_map_reload_failing" and value == 1
    }


def wait_for(what: str, probe: Callable[[], T], done: Callable[[T], bool]) -> tuple[T, float]:
    """Poll `probe` until `done`; return its last value and the seconds it took."""
    started = time.monotonic()
    value = probe()
    while not done(value):
        if time.monotonic() - started > BOUND:
            raise AssertionError(f"after {BOUND} s, still waiting for {what}: {value!r}")
        time.sleep(0.1)
        value = probe()
    return value, time.monotonic() - started


def converged(port: int, version: str, serving: str = "map") -> Callable[[], bool]:
    def check() -> bool:
        workers = workers_serving(port)
        return len(workers) == WORKERS and set(workers.values()) == {(version, serving)}

    return check


def access_lines(server: GunicornServer) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in server.log_text().splitlines()
        if line.startswith("{") and '"outcome"' in line
    ]


def assert_counted(
    port: int, answers: list[Answer], server: GunicornServer, *, may_lose: int = 0
) -> None:
    """Metrics and access log account for every answered request (and none other).

    Each worker flushes its counts and access lines every FLUSH_INTERVAL, and a scrape
    flushes the worker that answers it: the other's figures are complete within one
    interval, so this polls for up to three before asserting. `may_lose` is how many
    answered requests a worker killed with SIGKILL may have recorded and not flushed.
    """
    answered = Counter(a.status for a in answers if a.status is not None)
    lost = sum(1 for a in answers if a.status is None)

    def problems() -> list[object]:
        found: list[object] = []
        for status, count in answered.items():
            counted = total(port, "gateway_requests_total", status=str(status))
            # A request in flight in a killed worker may be counted and never answered.
            if not count - may_lose <= counted <= count + lost:
                found.append((status, count, counted))
        all_counted = total(port, "gateway_requests_total")
        if not sum(answered.values()) - may_lose <= all_counted <= sum(answered.values()) + lost:
            found.append(("all", sum(answered.values()), all_counted))
        durations = total(port, "gateway_request_duration_seconds_count")
        if durations != all_counted:
            found.append(("durations", durations, all_counted))
        logged = len(access_lines(server))
        if not sum(answered.values()) - may_lose <= logged <= sum(answered.values()) + lost:
            found.append(("logged", sum(answered.values()), logged))
        return found

    deadline = time.monotonic() + 3 * FLUSH_INTERVAL
    while (found := problems()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found == [], f"(what, answered, counted) after {3 * FLUSH_INTERVAL} s: {found}"


def assert_one_version_per_map(server: GunicornServer, complete: dict[str, str]) -> None:
    """Every map that answered is one complete version, and its answers all name it."""
    names_by_map: dict[str, set[str]] = {}
    for line in access_lines(server):
        assert line["map"] in complete, f"a map that is no complete version answered: {line}"
        if line["location"]:
            names_by_map.setdefault(line["map"], set()).add(line["location"].split("/")[3])
    for version, names in names_by_map.items():
        assert names == {complete[version]}, (version, names)


@pytest.fixture
def live(tmp_path: Path) -> Path:
    folder = tmp_path / "live"
    deploy(folder, "v1")
    return folder


@pytest.fixture
def server(gunicorn_factory: StartServer, live: Path, tmp_path: Path) -> GunicornServer:
    return gunicorn_factory(
        live / "redirects.yaml",
        workers=WORKERS,
        env={"GATEWAY_STATE_DIR": str(tmp_path / "state"), "GATEWAY_ACCESS_LOG": "-"},
    )


@pytest.fixture
def traffic(server: GunicornServer) -> Iterator[Traffic]:
    loop = Traffic(server.port).start()
    yield loop
    loop.stop()


# --- the tests ------------------------------------------------------------------------------


def test_map_changes_under_traffic_never_break_the_service(
    server: GunicornServer, traffic: Traffic, live: Path, tmp_path: Path
) -> None:
    complete = reference_versions(tmp_path, ["v1", "v2", "v3", "v4"])
    version = {name: digest for digest, name in complete.items()}
    port = server.port
    main = live / "redirects.yaml"
    took: dict[str, float] = {}

    def failed_everywhere(step: str, change: Callable[[], None]) -> None:
        """Make a broken change; wait until every worker tried it and kept its map."""
        failures = total(port, "gateway_map_reload_failures_total")
        change()
        wait_for(
            f"both workers to reject the map ({step})",
            lambda: (total(port, "gateway_map_reload_failures_total"), failing_pids(port)),
            lambda v: v[0] >= failures + WORKERS and len(v[1]) == WORKERS,
        )

    wait_for("v1 everywhere", converged(port, version["v1"]), bool)

    # A valid change: both workers serve it within 5 s, and only it from then on.
    deploy(live, "v2")
    _, took["v2"] = wait_for("v2 everywhere", converged(port, version["v2"]), bool)
    switched = time.monotonic()

    # Broken changes: nothing changes for the clients.
    failed_everywhere(
        "broken YAML",
        lambda: replace_file(main, versioned_map_text("v3").replace("- from: /a", "- from: [/a")),
    )
    failed_everywhere("truncated", lambda: open(main, "w").close())
    failed_everywhere("deleted", main.unlink)
    text = versioned_map_text("v3")
    failed_everywhere("half-written", lambda: main.write_text(text[: text.index("include:")]))
    assert converged(port, version["v2"])()
    assert traffic.served_since(switched + 0.5) == {"v2"}

    # The rest of the half-written file arrives: v3 everywhere.
    replace_file(live / "redirects.d" / "table.csv", versioned_table_text("v3"))
    main.write_text(text, encoding="utf-8")
    _, took["v3"] = wait_for("v3 everywhere", converged(port, version["v3"]), bool)

    health = json.loads(raw_request(port, "/-/health").body)
    assert (health["status"], health["version"], health["last_error"]) == (
        "ok",
        version["v3"],
        None,
    )

    # HUP with a broken map on disk: the new workers start on the last good copy.
    failed_everywhere("broken before HUP", lambda: replace_file(main, "version: 1\nsite: [\n"))
    old_pids = set(workers_serving(port))
    os.kill(server.pid, signal.SIGHUP)
    _, took["hup"] = wait_for(
        "new workers on the last-known-good copy of v3",
        lambda: workers_serving(port),
        lambda w: (
            len(w) == WORKERS
            and not set(w) & old_pids
            and set(w.values()) == {(version["v3"], "last-known-good")}
        ),
    )
    health = json.loads(raw_request(port, "/-/health").body)
    assert health["serving"] == "last-known-good" and health["status"] == "degraded"
    assert re.match(re.escape(str(main)) + r":\d+: error: ", health["last_error"])

    # Fixing the map brings the map on disk back.
    deploy(live, "v4")
    _, took["v4"] = wait_for("v4 everywhere", converged(port, version["v4"]), bool)
    time.sleep(0.5)

    answers = traffic.stop()
    print(f"converged after (s): {took}; {len(answers)} requests")
    assert [a for a in answers if a.status is None] == []  # no connection errors
    assert [a for a in answers if a.status is not None and a.status >= 500] == []
    assert [a.problem for a in answers if a.problem] == []
    assert {a.version for a in answers} <= {"v1", "v2", "v3", "v4"}
    assert took["v2"] <= CONVERGE and took["v3"] <= CONVERGE and took["v4"] <= CONVERGE, took
    assert_counted(port, answers, server)
    assert_one_version_per_map(server, complete)
    assert total(port, "gateway_map_reloads_total") >= 3 * WORKERS
    # Served from compiled tables (issue 14), not from maps each worker loaded.
    tables = {p.name for p in (tmp_path / "state").glob("*/tables/rules-*.lmdb")}
    assert {f"rules-{version[v]}.lmdb" for v in ("v3", "v4")} <= tables, tables


def test_a_killed_worker_loses_only_its_own_requests(
    server: GunicornServer, traffic: Traffic, tmp_path: Path
) -> None:
    complete = reference_versions(tmp_path, ["v1"])
    (v1,) = complete
    port = server.port
    workers, _ = wait_for(
        "both workers up", lambda: workers_serving(port), lambda w: len(w) == WORKERS
    )
    time.sleep(0.5)
    victim = int(min(workers))
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    wait_for(
        "a new worker in place of the killed one",
        lambda: workers_serving(port),
        lambda w: len(w) == WORKERS and str(victim) not in w and set(w.values()) == {(v1, "map")},
    )
    time.sleep(0.5)
    answers = traffic.stop()
    lost = [a for a in answers if a.status is None]
    # One connection per loop thread at a time: at most that many were in flight in it.
    assert len(lost) <= traffic.threads, lost
    assert all(a.at >= killed_at for a in lost), lost
    answered = [a for a in answers if a.status is not None]
    assert [a for a in answered if a.status is not None and a.status >= 500] == []
    assert [a.problem for a in answered if a.problem] == []
    # Service went on: answers after the kill, from the surviving and the new worker.
    assert len([a for a in answers if a.at > killed_at and a.status is not None]) > 10
    # The victim recorded its answers and flushed them every FLUSH_INTERVAL: what it had
    # not flushed is lost with it, at most the answers of its last interval (given two,
    # and either worker's answers, as the client cannot tell which worker answered).
    unflushed = [
        a
        for a in answered
        if killed_at - 2 * FLUSH_INTERVAL <= a.at <= killed_at + 0.5 * FLUSH_INTERVAL
    ]
    assert_counted(port, answers, server, may_lose=len(unflushed))
    assert_one_version_per_map(server, complete)


def test_hup_with_a_broken_map_and_no_copy_refuses_readiness_until_fixed(
    server: GunicornServer, live: Path, tmp_path: Path
) -> None:
    port = server.port
    replace_file(live / "redirects.yaml", "version: 1\nsite: [\n")
    wait_for(
        "both workers to reject the map", lambda: failing_pids(port), lambda p: len(p) == WORKERS
    )
    for copy in (tmp_path / "state").iterdir():
        shutil.rmtree(copy)  # no last-known-good copy anywhere
    os.kill(server.pid, signal.SIGHUP)
    health, _ = wait_for(
        "new workers without a map",
        lambda: raw_request(port, "/-/health"),
        lambda r: r.status == 503 and json.loads(r.body)["serving"] == "none",
    )
    assert health.header("Cache-Control") == "no-store"
    assert re.match(r".*redirects\.yaml:\d+: error: ", json.loads(health.body)["last_error"])
    response = raw_request(port, "/a")
    assert (response.status, response.header("Retry-After")) == (503, "5")
    assert (response.header("Location"), response.header("Cache-Control")) == (None, "no-store")

    def outcomes_counted() -> set[str]:
        return {
            labels["outcome"]
            for name, labels, _ in scrape(port)
            if name == "gateway_requests_total"
        }

    # Counted by the worker that answered, in the files within a flush interval.
    deadline = time.monotonic() + 3 * FLUSH_INTERVAL
    while "unavailable" not in outcomes_counted() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "unavailable" in outcomes_counted()
    # Fixed on disk: the same workers serve it, no restart.
    (v5,) = reference_versions(tmp_path, ["v5"])
    deploy(live, "v5")
    wait_for("v5 everywhere", converged(port, v5), bool)
    response = raw_request(port, "/a")
    assert (response.status, response.header("Location")) == (301, "https://khv27.ru/v5/a")
    assert response.header("Cache-Control") == "public, max-age=86400"
    assert raw_request(port, "/-/health").status == 200


def compilers_of(parents: set[int]) -> list[int]:
    """The pids of the map compilers (``python -m gateway.maps.compiled``) these started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if (
            b"gateway.maps.compiled" in cmdline
            and int(stat.rsplit(")", 1)[1].split()[1]) in parents
        ):
            found.append(int(entry))
    return found


def test_a_killed_compile_is_never_served(
    server: GunicornServer, traffic: Traffic, live: Path, tmp_path: Path
) -> None:
    """Issue 14: every compile of v2 is killed under traffic; v1 keeps serving, then v3 loads."""
    complete = reference_versions(tmp_path, ["v1", "v2", "v3"])
    version = {name: digest for digest, name in complete.items()}
    port = server.port
    wait_for("v1 everywhere", converged(port, version["v1"]), bool)
    workers = {int(pid) for pid in workers_serving(port)}
    killed: list[int] = []
    stop = threading.Event()

    def kill_compilers() -> None:
        while not stop.is_set():
            for pid in compilers_of(workers):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_compilers, daemon=True)
    killer.start()
    try:
        deploy(live, "v2")
        wait_for(
            "both workers to report the killed compile",
            lambda: failing_pids(port),
            lambda p: len(p) == WORKERS,
        )
    finally:
        stop.set()
        killer.join(timeout=5)
    assert killed, "no compiler was seen, so none was killed"
    assert converged(port, version["v1"])()
    health = json.loads(raw_request(port, "/-/health").body)
    assert (health["status"], health["version"]) == ("ok", version["v1"])
    assert "the map was not compiled: the compiler exited with status -9" in health["last_error"]
    tables = {p.name for p in (tmp_path / "state").glob("*/tables/*")}
    assert f"rules-{version['v2']}.lmdb" not in tables, tables  # nothing under a served name

    deploy(live, "v3")
    wait_for("v3 everywhere", converged(port, version["v3"]), bool)
    answers = traffic.stop()
    assert [a for a in answers if a.status is None] == []
    assert [a for a in answers if a.status is not None and a.status >= 500] == []
    assert [a.problem for a in answers if a.problem] == []
    assert {a.version for a in answers} == {"v1", "v3"}  # v2 was never served
    assert_one_version_per_map(server, complete)
