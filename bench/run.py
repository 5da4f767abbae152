"""`make bench`: throughput against a bare-WSGI baseline and nginx, the compiled table, micro.

Owns the benchmark procedure (issues 5 and 14). In one run, on loopback only:

1. the in-process micro-benchmarks of the in-memory map (bench/micro.py);
2. for each map size (``--sizes``, default 100,000 and 1,000,000 exact rules, each with
   1,000 pattern rules over 4 hosts, bench/genmap.py):

   a. the first compile into an empty state directory, in a fresh interpreter, as
      gunicorn's ``on_starting`` makes it (bench/scale.py ``compile_cold``): wall time,
      CPU, peak RSS, and the table's bytes on disk per rule;
   b. serve the map with the project's gunicorn.conf.py (wsgi:app) from that state
      directory, the same exact rules from a bare WSGI dict (bench/baseline_app.py)
      under the same settings, and from an nginx ``map``; check each answers a sample
      correctly; read each gateway worker's memory from /proc/PID/smaps (total Rss,
      Pss, and the Rss of its rules-*.lmdb mapping, the table shared by the workers);
      then drive them with wrk, alternating gateway/baseline/nginx round by round,
      each run ``--duration`` seconds with ``--connections`` keep-alive connections
      cycling through thousands of distinct URLs; memory read again after;
   c. ``--restarts`` restarts on the unchanged map, alternating with a bare gunicorn
      (the baseline app, an empty table, no map check): gunicorn's spawn to its first
      answer, and each worker's fork to its app loaded (bench/gunicorn_bench.conf.py);

3. the lookups of the compiled tables (bench/scale.py ``probe``, a fresh process): a
   1,000-rule map besides the sizes above, decide() and canonicalise + match for exact
   hits, pattern hits and misses, the table's rule cache emptied before each pass;
4. optionally (``--matrix``) compare gunicorn settings: sync vs gthread, threads,
   reuse_port, access log on/off.

Prints one table, a column per map size, and writes bench/out/bench-<time>.json (and
bench/out/latest.json). ``--quick``: 10k and 30k rules, 2 s runs, one round (a smoke run).

    python bench/run.py [--quick] [--sizes 100000,1000000] [--duration 10] [--rounds 3]
                        [--restarts 3] [--matrix] [--no-nginx]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.genmap import generate  # noqa: E402
from bench.scale import compile_cold, run_probe, smaps  # noqa: E402

PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
PROJECT_CONF = REPO / "gunicorn.conf.py"
BENCH_CONF = BENCH / "gunicorn_bench.conf.py"
LUA = BENCH / "cycle.lua"


# --- tools ------------------------------------------------------------------------------


def ensure_tools(want_nginx: bool, install: bool) -> dict[str, str | None]:
    """Find wrk (and nginx); install the Debian packages when missing and allowed."""
    missing = [pkg for cmd, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not _which(cmd)]
    if not want_nginx and "nginx-light" in missing:
        missing.remove("nginx-light")
    if missing and install:
        print(f"bench: installing {' '.join(missing)} with apt-get", file=sys.stderr)
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    return {"wrk": _which("wrk"), "nginx": _which("nginx") if want_nginx else None}


def _which(cmd: str) -> str | None:
    return shutil.which(cmd) or next(
        (p for p in (f"/usr/sbin/{cmd}", f"/usr/bin/{cmd}") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- servers ----------------------------------------------------------------------------


@dataclass
class Server:
    """One server under test: how to start it, and its process once started."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    workdir: Path
    workers: int = 0  # gunicorn workers to wait for (0: not gunicorn)
    cwd: Path = REPO
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)
    # Set by start(): seconds from the spawn of the master to its first answer and to
    # every worker ready, and each gunicorn worker's own start (its fork to app loaded).
    timing: dict[str, object] = field(default_factory=dict)

    def start(self, timeout: float = 300.0) -> Server:
        """Start the server and wait until every worker has loaded the app."""
        self.log = self.workdir / f"{self.name}.log"
        ready = self.workdir / f"ready-{self.name}"
        shutil.rmtree(ready, ignore_errors=True)
        ready.mkdir(parents=True)
        env = os.environ | self.env | {"BENCH_READY_DIR": str(ready)}
        first_answer: float | None = None
        spawned = time.monotonic()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
            )
        deadline = spawned + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            if first_answer is None and _answers(self.port):
                first_answer = time.monotonic()
            marks = [p for p in ready.iterdir() if not p.name.endswith(".tmp")]
            if first_answer is not None and len(marks) >= self.workers:
                workers = [json.loads(p.read_text()) for p in marks]
                self.timing = {
                    "first_answer_s": first_answer - spawned,
                    "all_ready_s": max([first_answer, *(w["ready"] for w in workers)]) - spawned,
                    "worker_start_s": [w["ready"] - w["forked"] for w in workers],
                }
                return self
            time.sleep(0.01)  # fine enough for a 0.5 s target
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server's whole process group."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's children (gunicorn workers, nginx workers)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in children.read_text().split()]


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/-/health", headers={"Host": "khabarovskadm.ru"})
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def gunicorn_server(
    name: str,
    app: str,
    map_dir: Path,
    workdir: Path,
    *,
    overrides: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
    state_dir: Path | None = None,
    table: Path | None = None,
) -> Server:
    """Return a gunicorn server for `app` under the project's config (plus any overrides).

    ``state_dir``: GATEWAY_STATE_DIR (default: ``workdir/state``, never the machine's
    shared default, so that every run starts from a state directory of its own).
    ``table``: the baseline's BENCH_EXACT_TABLE (default: the map's exact-table.tsv).
    """
    port = free_port()
    workers = int(os.environ.get("GATEWAY_WORKERS") or os.cpu_count() or 2)
    return Server(
        name=name,
        argv=[GUNICORN, "-c", str(BENCH_CONF), app],
        env={
            "BENCH_PROJECT_CONF": str(PROJECT_CONF),
            "BENCH_GUNICORN": json.dumps(overrides or {}),
            "BENCH_EXACT_TABLE": str(table or map_dir / "exact-table.tsv"),
            "GATEWAY_STATE_DIR": str(state_dir or workdir / "state"),
            # As deployed: the map in the working directory, named relative to it.
            "GATEWAY_MAP": "redirects.yaml",
            "GATEWAY_BIND": f"127.0.0.1:{port}",
            "PYTHONPATH": str(REPO),
        }
        | (env or {}),
        port=port,
        workdir=workdir,
        workers=workers,
        cwd=map_dir,
    )


NGINX_CONF = """\
# Generated by bench/run.py: the same exact rules as a `map` on the raw request URI.
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    keepalive_requests 1000000;
    map_hash_bucket_size 256;
    map_hash_max_size {hash_max};
    map $request_uri $bench_location {{
        default "";
        include {dir}/nginx-map.conf;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            if ($bench_location) {{
                add_header Cache-Control "public, max-age=86400" always;
                return 301 $bench_location;
            }}
            return 404;
        }}
    }}
}}
"""


def nginx_server(nginx: str, map_dir: Path, workdir: Path) -> Server:
    """Return an nginx that answers the same exact targets from a `map`."""
    port = free_port()
    ndir = workdir / "nginx"
    (ndir / "tmp").mkdir(parents=True, exist_ok=True)
    table = map_dir / "exact-table.tsv"
    entries = 0
    with (
        table.open(encoding="utf-8") as src,
        (ndir / "nginx-map.conf").open("w", encoding="utf-8") as out,
    ):
        for line in src:
            target, _, location = line.rstrip("\n").partition("\t")
            out.write(f'    "{target}" "{location}";\n')
            entries += 1
    workers = int(os.environ.get("GATEWAY_WORKERS") or os.cpu_count() or 2)
    conf = ndir / "nginx.conf"
    hash_max = max(1 << 20, 1 << (2 * entries - 1).bit_length())  # room for 1M entries
    conf.write_text(
        NGINX_CONF.format(workers=workers, dir=ndir, port=port, hash_max=hash_max),
        encoding="utf-8",
    )
    return Server(
        name="nginx",
        argv=[nginx, "-c", str(conf), "-p", str(ndir), "-g", "daemon off;"],
        env={},
        port=port,
        workdir=workdir,
    )


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[list[Server]]:
    """Start the servers (one at a time: each loads the map on every core) and stop them all."""
    try:
        for server in servers:
            started = time.monotonic()
            server.start()
            print(
                f"bench: {server.name} ready in {time.monotonic() - started:.1f} s", file=sys.stderr
            )
        yield servers
    finally:
        for server in servers:
            server.stop()


# --- correctness and load ----------------------------------------------------------------


def read_urls(path: Path) -> list[tuple[str, str, int, str]]:
    """Read a URL list: (host, target, status, location)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        host, target, status, location = line.split("\t")
        rows.append((host, target, int(status), location))
    return rows


def check_answers(server: Server, rows: list[tuple[str, str, int, str]], sample: int) -> None:
    """Fail unless a sample of the URLs gets the status and Location the generator expects."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    step = max(1, len(rows) // sample)
    for host, target, status, location in rows[::step]:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        got = (response.status, response.getheader("Location") or "")
        if got != (status, location):
            raise SystemExit(
                f"bench: {server.name} answered {host}{target} with {got}, "
                f"expected {(status, location)}"
            )
    conn.close()


@dataclass(frozen=True)
class WrkSettings:
    """How wrk drives a server."""

    duration: int
    connections: int
    threads: int


def run_wrk(wrk: str, port: int, urls: Path, settings: WrkSettings) -> dict[str, object]:
    """Run wrk once against 127.0.0.1:port cycling through `urls`; return its summary."""
    argv = [
        wrk,
        f"-t{settings.threads}",
        f"-c{settings.connections}",
        f"-d{settings.duration}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}/",
        "--",
        str(urls),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    found = re.search(r"^BENCH-JSON (.*)$", done.stdout, re.MULTILINE)
    if not found:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    summary: dict[str, object] = json.loads(found.group(1))
    duration_us = summary["duration_us"]
    requests = summary["requests"]
    assert isinstance(duration_us, int) and isinstance(requests, int)
    summary["rps"] = requests / (duration_us / 1e6)
    return summary


# --- the procedure ----------------------------------------------------------------------


def throughput(
    wrk: str,
    servers: list[Server],
    map_dir: Path,
    settings: WrkSettings,
    rounds: int,
    gateway_classes: tuple[str, ...] = ("exact", "pattern", "miss"),
) -> dict[str, dict[str, list[dict[str, object]]]]:
    """Alternate wrk runs: per round, exact hits on every server, then gateway patterns/misses."""
    runs: dict[str, dict[str, list[dict[str, object]]]] = {}
    for r in range(rounds):
        for server in servers:
            classes = gateway_classes if server.name.startswith("gateway") else ("exact",)
            for cls in classes:
                result = run_wrk(wrk, server.port, map_dir / f"urls-{cls}.tsv", settings)
                runs.setdefault(server.name, {}).setdefault(cls, []).append(result)
                print(
                    f"bench: round {r + 1}/{rounds} {server.name:<9} {cls:<8}"
                    f" {result['rps']:>9.0f} req/s  p99 {_p99(result) / 1000:.1f} ms",
                    file=sys.stderr,
                )
    return runs


def _p99(result: dict[str, object]) -> int:
    latency = result["latency_us"]
    assert isinstance(latency, dict)
    return int(latency["p99"])


def summarise(runs: dict[str, dict[str, list[dict[str, object]]]]) -> dict[str, object]:
    """Return medians per server and class, and the ratios gateway/baseline, gateway/nginx."""
    medians: dict[str, dict[str, dict[str, float]]] = {}
    for name, by_class in runs.items():
        for cls, results in by_class.items():
            rps = [float(r["rps"]) for r in results]  # type: ignore[arg-type]
            medians.setdefault(name, {})[cls] = {
                "rps_median": statistics.median(rps),
                "rps_runs": rps,  # type: ignore[dict-item]
                "p99_ms_median": statistics.median(_p99(r) for r in results) / 1000,
                "p50_ms_median": statistics.median(
                    int(r["latency_us"]["p50"])  # type: ignore[index]
                    for r in results
                )
                / 1000,
                # Socket errors; answers >= 400 (expected for misses: the 404 banner) apart.
                "errors": sum(
                    sum(v for k, v in r["errors"].items() if k != "status")  # type: ignore[attr-defined]
                    for r in results
                ),
                "status_4xx_5xx": sum(r["errors"]["status"] for r in results),  # type: ignore[index]
            }
    ratios: dict[str, float] = {}
    gateway = medians.get("gateway", {}).get("exact")
    for other in ("baseline", "nginx"):
        theirs = medians.get(other, {}).get("exact")
        if gateway and theirs:
            ratios[f"gateway/{other}"] = gateway["rps_median"] / theirs["rps_median"]
            # Paired: each round's runs ran back to back, so they saw the same machine.
            pairs = zip(gateway["rps_runs"], theirs["rps_runs"], strict=False)  # type: ignore[call-overload]
            per_round = [g / b for g, b in pairs]
            ratios[f"gateway/{other} paired median"] = statistics.median(per_round)
            ratios[f"gateway/{other} paired min"] = min(per_round)
            ratios[f"gateway/{other} paired max"] = max(per_round)
    return {"medians": medians, "ratios": ratios}


MATRIX: list[tuple[str, dict[str, object], dict[str, str]]] = [
    ("project settings (gthread t4)", {}, {}),
    ("gthread t4, access log off", {}, {"GATEWAY_ACCESS_LOG": "off"}),
    ("sync", {"worker_class": "sync", "threads": 1}, {}),
    ("gthread t1", {"threads": 1}, {}),
    ("gthread t2", {"threads": 2}, {}),
    ("gthread t8", {"threads": 8}, {}),
    ("gthread t4, reuse_port on", {"reuse_port": True}, {}),
    ("gthread t4, keepalive 2", {"keepalive": 2}, {}),
]


def settings_matrix(
    wrk: str, map_dir: Path, workdir: Path, settings: WrkSettings, rounds: int
) -> list[dict[str, object]]:
    """Measure gateway and baseline exact-hit throughput under each gunicorn variant."""
    results = []
    for label, overrides, env in MATRIX:
        gw = gunicorn_server("gateway", "wsgi:app", map_dir, workdir, overrides=overrides, env=env)
        base = gunicorn_server(
            "baseline", "bench.baseline_app:app", map_dir, workdir, overrides=overrides
        )
        with running([gw, base]):
            runs = throughput(wrk, [gw, base], map_dir, settings, rounds, ("exact",))
            pids = gw.worker_pids()
            worker_spread = _requests_per_worker(gw)
        summary = summarise({k: {"exact": v["exact"]} for k, v in runs.items()})
        medians = summary["medians"]
        assert isinstance(medians, dict)
        results.append(
            {
                "variant": label,
                "overrides": overrides,
                "env": env,
                "gateway_rps": medians["gateway"]["exact"]["rps_median"],
                "gateway_p99_ms": medians["gateway"]["exact"]["p99_ms_median"],
                "baseline_rps": medians["baseline"]["exact"]["rps_median"],
                "ratio": summary["ratios"].get("gateway/baseline"),  # type: ignore[attr-defined]
                "workers": len(pids),
                "worker_spread": worker_spread,
            }
        )
    return results


def _requests_per_worker(server: Server) -> dict[str, int]:
    """Return CPU ticks used per gateway worker: shows whether one worker got all the load."""
    spread = {}
    for pid in server.worker_pids():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        spread[str(pid)] = int(fields[11]) + int(fields[12])  # utime + stime
    return spread


def machine() -> dict[str, object]:
    """Describe the machine the figures come from."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_at_start": os.getloadavg(),
    }


# --- one map size ------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def measure_size(
    n_exact: int,
    args: argparse.Namespace,
    tools: dict[str, str | None],
    work: Path,
    settings: WrkSettings,
) -> dict[str, object]:
    """Every server figure at one map size: compile, start, answers, memory, throughput."""
    wrk = tools["wrk"]
    assert wrk is not None
    size_dir = work / f"size-{n_exact}"
    map_dir, state = size_dir / "map", size_dir / "state"
    started = time.perf_counter()
    entry: dict[str, object] = {
        "map": generate(map_dir, n_exact=n_exact, n_patterns=args.patterns, n_urls=args.urls)
    }
    entry["generate_s"] = time.perf_counter() - started
    rules = n_exact + args.patterns + 1  # the home page rule besides
    compiled = compile_cold(map_dir, state, rules)
    entry["compile"] = compiled
    print(
        f"bench: {n_exact:,} exact rules compiled in {compiled['wall_s']:.1f} s"
        f" ({compiled['bytes_per_rule']:.0f} B/rule)",
        file=sys.stderr,
    )
    # The baseline runs the project's start check too (the same gunicorn.conf.py): with
    # the same state dir it finds the compiled result and does not compile again.
    servers = [
        gunicorn_server("gateway", "wsgi:app", map_dir, size_dir, state_dir=state),
        gunicorn_server("baseline", "bench.baseline_app:app", map_dir, size_dir, state_dir=state),
    ]
    if tools["nginx"]:
        servers.append(nginx_server(tools["nginx"], map_dir, size_dir))
    with running(servers):
        entry["first_start"] = {s.name: s.timing for s in servers if s.timing}
        for server in servers:
            for cls in ("exact", "pattern", "miss") if server.name == "gateway" else ("exact",):
                check_answers(server, read_urls(map_dir / f"urls-{cls}.tsv"), 200)
        gateway = servers[0]
        assert gateway.process is not None
        memory: dict[str, object] = {
            "rules": rules,
            "master": smaps(gateway.process.pid),
            "workers_before": [smaps(pid) for pid in gateway.worker_pids()],
        }
        runs = throughput(wrk, servers, map_dir, settings, args.rounds)
        memory["workers_after"] = [smaps(pid) for pid in gateway.worker_pids()]
        entry["memory"] = memory
    entry["servers"] = summarise(runs) | {"runs": runs}
    entry["restarts"] = time_restarts(map_dir, state, size_dir, args.restarts)
    entry["state_dir"] = str(state)
    entry["map_dir"] = str(map_dir)
    return entry


def time_restarts(map_dir: Path, state: Path, workdir: Path, count: int) -> dict[str, object]:
    """Start the gateway on its unchanged, compiled map, and a bare gunicorn, alternately.

    Each start is timed from the spawn of gunicorn's master to its first answer (polled
    every 10 ms), and each worker from its fork to its app loaded (gunicorn hooks). The
    bare gunicorn is the same settings serving bench/baseline_app.py with an empty table
    and no map check before its workers: what gunicorn itself takes to start.
    """
    empty = workdir / "empty-table.tsv"
    empty.write_text("", encoding="utf-8")
    starts: dict[str, list[dict[str, object]]] = {"gateway": [], "bare": []}
    for _ in range(count):
        for name in starts:
            if name == "gateway":
                server = gunicorn_server("restart", "wsgi:app", map_dir, workdir, state_dir=state)
            else:
                server = gunicorn_server(
                    "bare",
                    "bench.baseline_app:app",
                    map_dir,
                    workdir,
                    env={"BENCH_BARE": "1"},
                    table=empty,
                )
            try:
                server.start(timeout=120)
                starts[name].append(server.timing)
            finally:
                server.stop()
    summary: dict[str, object] = {"starts": starts, "count": count}
    for name, timings in starts.items():
        summary[f"{name}_first_answer_s"] = _median([float(t["first_answer_s"]) for t in timings])  # type: ignore[arg-type]
        summary[f"{name}_worker_start_s"] = _median(
            [max(t["worker_start_s"]) for t in timings]  # type: ignore[type-var,call-overload]
        )
    summary["gateway_minus_bare_s"] = float(summary["gateway_first_answer_s"]) - float(  # type: ignore[arg-type]
        summary["bare_first_answer_s"]  # type: ignore[arg-type]
    )
    return summary


# --- the table ---------------------------------------------------------------------------


def _size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def table(result: dict[str, object]) -> str:
    """Format the results as one plain-text table: a column per map size (exact rules)."""
    sizes = result.get("sizes")
    probe = result.get("compiled_micro")
    micro = result.get("micro")
    columns: list[int] = []
    if isinstance(probe, dict):
        columns += [int(e["n_exact"]) for e in probe["sizes"]]
    if isinstance(sizes, dict):
        columns += [int(n) for n in sizes]
    columns = sorted(set(columns))
    rows: list[tuple[str, dict[int, str]]] = []

    def section(title: str) -> None:
        rows.append((title, {}))

    def row(label: str, get: Callable[[dict[str, Any]], str], where: object = sizes) -> None:
        cells = {}
        if isinstance(where, dict):
            for n, entry in where.items():
                with contextlib.suppress(KeyError, IndexError, TypeError, ValueError):
                    cells[int(n)] = get(entry)
        rows.append((label, cells))

    if isinstance(sizes, dict):
        first = next(iter(sizes.values()))
        rounds = len(first["servers"]["runs"]["gateway"]["exact"])
        section(f"throughput, req/s (wrk, loopback; median of {rounds} alternating rounds)")
        for name, cls in (
            ("gateway", "exact"),
            ("baseline", "exact"),
            ("nginx", "exact"),
            ("gateway", "pattern"),
            ("gateway", "miss"),
        ):
            row(
                f"  {name} {cls}",
                lambda e, n=name, c=cls: _fmt(e["servers"]["medians"][n][c]["rps_median"], ",.0f"),
            )
        row(
            "  gateway/baseline, exact hits (target >= 0.9)",
            lambda e: _fmt(e["servers"]["ratios"]["gateway/baseline"], ".2f"),
        )
        row(
            "    paired per round (back to back), median",
            lambda e: _fmt(e["servers"]["ratios"]["gateway/baseline paired median"], ".2f"),
        )
        row(
            "    paired per round, min-max",
            lambda e: (
                f"{e['servers']['ratios']['gateway/baseline paired min']:.2f}-"
                f"{e['servers']['ratios']['gateway/baseline paired max']:.2f}"
            ),
        )
        row(
            "  gateway/nginx, exact hits",
            lambda e: _fmt(e["servers"]["ratios"]["gateway/nginx"], ".3f"),
        )
        section("latency p99 ms (p50 in brackets)")
        for name, cls in (
            ("gateway", "exact"),
            ("gateway", "pattern"),
            ("gateway", "miss"),
            ("baseline", "exact"),
            ("nginx", "exact"),
        ):
            row(
                f"  {name} {cls}",
                lambda e, n=name, c=cls: (
                    f"{e['servers']['medians'][n][c]['p99_ms_median']:.1f}"
                    f" ({e['servers']['medians'][n][c]['p50_ms_median']:.1f})"
                ),
            )
        row(
            "  socket errors, all runs / >=400 on hits",
            lambda e: f"{_errors(e, 'errors')} / {_errors(e, 'status_4xx_5xx', hits=True)}",
        )
        section("compiled table")
        row(
            "  first compile, cold state dir, s (target <= 15 at 1M)",
            lambda e: _fmt(e["compile"]["wall_s"], ".1f"),
        )
        row(
            "    compiler CPU s / peak RSS MiB",
            lambda e: f"{e['compile']['cpu_s']:.1f} / {e['compile']['peak_rss_kib'] / 1024:.0f}",
        )
        row(
            "  table on disk, bytes per rule (target <= 200)",
            lambda e: _fmt(e["compile"]["bytes_per_rule"], ".0f"),
        )
        row("    table MiB", lambda e: _fmt(e["compile"]["table_bytes"] / 2**20, ".1f"))
        row(
            "  gateway first start after the compile, s to answer",
            lambda e: _fmt(e["first_start"]["gateway"]["first_answer_s"], ".2f"),
        )
        row(
            "  restart, unchanged map: spawn -> first answer, s",
            lambda e: _fmt(e["restarts"]["gateway_first_answer_s"], ".2f"),
        )
        row(
            "    bare gunicorn, same way, s",
            lambda e: _fmt(e["restarts"]["bare_first_answer_s"], ".2f"),
        )
        row(
            "    gateway minus bare, s (target <= 0.5)",
            lambda e: _fmt(e["restarts"]["gateway_minus_bare_s"], ".2f"),
        )
        row(
            "  worker start, fork -> app loaded, s (target <= 0.5)",
            lambda e: _fmt(e["restarts"]["gateway_worker_start_s"], ".2f"),
        )
        row(
            "    bare worker, same way, s",
            lambda e: _fmt(e["restarts"]["bare_worker_start_s"], ".2f"),
        )
        section("memory per gateway worker, MiB (after the wrk runs; the largest worker)")
        row(
            "  RSS beyond the table (target <= 80 MB = 76.3 MiB at 1M)",
            lambda e: _mem(e, "beyond_table_kib"),
        )
        row("  RSS total", lambda e: _mem(e, "rss_kib"))
        row("  Pss total", lambda e: _mem(e, "pss_kib"))
        row(
            "  table (rules-*.lmdb) Rss / Pss",
            lambda e: f"{_mem(e, 'table_rss_kib')} / {_mem(e, 'table_pss_kib')}",
        )
        row("  RssAnon", lambda e: _mem(e, "rss_anon_kib"))
        row(
            "  RSS beyond the table, before the runs",
            lambda e: _mem(e, "beyond_table_kib", "workers_before"),
        )
        row("  master RSS", lambda e: _fmt(e["memory"]["master"]["rss_kib"] / 1024, ".0f"))
    if isinstance(probe, dict):
        by_size = {int(e["n_exact"]): e for e in probe["sizes"]}
        section("match cost, compiled table, CPU µs per request (rule cache emptied each pass)")
        for cls in ("exact", "miss", "pattern"):
            row(
                f"  canonicalise + match, {cls}",
                lambda e, c=cls: _fmt(e[c]["canonicalise_match_us"], ".1f"),
                by_size,
            )
        for cls in ("exact", "miss", "pattern"):
            row(f"  decide, {cls}", lambda e, c=cls: _fmt(e[c]["decide_us"], ".1f"), by_size)
        flat = probe.get("flatness", {})
        rows.append(
            (
                "  largest / smallest map (target <= 1.5x): "
                + ", ".join(f"{k} {v:.2f}x" for k, v in flat.items()),
                {},
            )
        )
        row(
            "  MapHolder open, fresh process, ms",
            lambda e: _fmt(e["mapholder_open_s"] * 1000, ".1f"),
            by_size,
        )
    if isinstance(micro, dict):
        by_size = {int(e["n_exact"]): e for e in micro["sizes"] if int(e["n_exact"]) in columns}
        if by_size:
            section("match cost, in-memory map (bench/micro.py), CPU µs per request")
            for cls in ("exact", "miss", "pattern"):
                row(f"  decide, {cls}", lambda e, c=cls: _fmt(e[c]["decide_us"], ".1f"), by_size)
    width = max(len(label) for label, cells in rows if cells) + 2
    lines = [
        f"{'map size (exact rules; +patterns)':<{width}}"
        + "".join(f"{_size_label(n):>12}" for n in columns)
    ]
    for label, cells in rows:
        if not cells:
            lines.append(label)
        else:
            lines.append(f"{label:<{width}}" + "".join(f"{cells.get(n, ''):>12}" for n in columns))
    matrix = result.get("matrix")
    if isinstance(matrix, list):
        lines.append("gunicorn settings (exact hits, medians)")
        lines.append(f"{'variant':<34}{'gateway':>9}{'baseline':>10}{'ratio':>7}{'p99 ms':>8}")
        for m in matrix:
            lines.append(
                f"{m['variant']:<34}{m['gateway_rps']:>9.0f}{m['baseline_rps']:>10.0f}"
                f"{(m['ratio'] or 0):>7.2f}{m['gateway_p99_ms']:>8.2f}"
            )
    return "\n".join(lines)


def _errors(entry: dict[str, Any], key: str, *, hits: bool = False) -> int:
    total = 0
    for by_class in entry["servers"]["medians"].values():
        for cls, d in by_class.items():
            if not hits or cls != "miss":
                total += int(d[key])
    return total


def _mem(entry: dict[str, Any], key: str, when: str = "workers_after") -> str:
    return f"{max(w[key] for w in entry['memory'][when]) / 1024:.0f}"


def _flatness(probe: dict[str, Any]) -> dict[str, float]:
    small, large = probe["sizes"][0], probe["sizes"][-1]
    flat = {}
    for cls in ("exact", "miss", "pattern"):
        if cls in small and cls in large:
            flat[cls] = large[cls]["canonicalise_match_us"] / small[cls]["canonicalise_match_us"]
            flat[f"{cls}_decide"] = large[cls]["decide_us"] / small[cls]["decide_us"]
    return flat


def parse_sizes(text: str) -> list[int]:
    """Parse "100000,1000000" into [100000, 1000000]."""
    return [int(item) for item in text.split(",") if item.strip()]


def main() -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small maps, 2 s runs")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("100000,1000000"),
        help="exact rules of each served map (each with --patterns patterns)",
    )
    parser.add_argument("--exact", type=int, default=None, help="one size only (as --sizes N)")
    parser.add_argument("--patterns", type=int, default=1_000)
    parser.add_argument(
        "--small", type=int, default=1_000, help="exact rules of the smallest compiled map"
    )
    parser.add_argument("--urls", type=int, default=5_000, help="distinct URLs per class")
    parser.add_argument("--restarts", type=int, default=3, help="restarts timed per size")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--no-micro", action="store_true")
    parser.add_argument("--no-servers", action="store_true", help="micro-benchmarks only")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install")
    parser.add_argument("--matrix", action="store_true", help="also compare gunicorn settings")
    parser.add_argument("--matrix-exact", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.urls, args.restarts = 2, 1, 500, 1
        args.sizes, args.patterns, args.matrix_exact = [10_000, 30_000], 100, 2_000
    if args.exact is not None:
        args.sizes = [args.exact]
    settings = WrkSettings(args.duration, args.connections, args.threads)
    result: dict[str, object] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": vars(args) | {"out": str(args.out)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        if not args.no_micro:
            micro_json = args.out / f"micro-{stamp}.json"
            micro_argv = [PYTHON, str(BENCH / "micro.py"), "--json", str(micro_json)]
            if args.quick:
                micro_argv += [
                    "--sizes",
                    "1000:10,10000:100",
                    "--load-size",
                    "10000",
                    "--urls",
                    "500",
                ]
            subprocess.run(micro_argv, check=True, cwd=REPO)
            result["micro"] = json.loads(micro_json.read_text())
        if not args.no_servers:
            tools = ensure_tools(not args.no_nginx, not args.no_install)
            if tools["wrk"] is None:
                raise SystemExit("bench: wrk is not installed (apt-get install wrk)")
            # The smallest map, for the lookups of the compiled tables only; made first, so
            # that its files are settled (older than SETTLE) when the probe opens it.
            small_dir = work / f"size-{args.small}"
            small_patterns = max(1, args.patterns // 100)
            generate(
                small_dir / "map", n_exact=args.small, n_patterns=small_patterns, n_urls=args.urls
            )
            small_compile = compile_cold(
                small_dir / "map", small_dir / "state", args.small + small_patterns + 1
            )
            sizes: dict[str, object] = {}
            result["sizes"] = sizes
            for n_exact in args.sizes:
                sizes[str(n_exact)] = measure_size(n_exact, args, tools, work, settings)
            # The lookups of the compiled tables: one fresh process, sizes interleaved.
            maps = [(small_dir / "map", small_dir / "state")]
            maps += [(Path(e["map_dir"]), Path(e["state_dir"])) for e in sizes.values()]  # type: ignore[index]
            probe = run_probe(
                maps,
                min(args.urls, 2000),
                5 if not args.quick else 2,
                work / "probe.json",
            )
            for entry, n in zip(probe["sizes"], [args.small, *args.sizes], strict=True):  # type: ignore[call-overload]
                entry["n_exact"] = n
            probe["sizes"][0]["compile"] = small_compile  # type: ignore[index]
            probe["flatness"] = _flatness(probe)
            result["compiled_micro"] = probe
            if args.matrix:
                matrix_dir = work / "matrix-map"
                generate(matrix_dir, n_exact=args.matrix_exact, n_patterns=100, n_urls=args.urls)
                result["matrix"] = settings_matrix(
                    wrk=tools["wrk"],
                    map_dir=matrix_dir,
                    workdir=work,
                    settings=WrkSettings(
                        max(2, args.duration // 2), args.connections, args.threads
                    ),
                    rounds=max(1, args.rounds - 1),
                )
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["wall_s"] = time.perf_counter() - wall
    result["machine"]["loadavg_at_end"] = os.getloadavg()  # type: ignore[index]
    out = args.out / f"bench-{stamp}.json"
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    (args.out / "latest.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(table(result))
    print(f"bench: {result['wall_s']:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
