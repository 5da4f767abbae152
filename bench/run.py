"""`make bench`: throughput against a bare-WSGI baseline and nginx, plus micro-benchmarks.

Owns the benchmark procedure (issue 5). In one run, on loopback only:

1. generate a map (100,000 exact + 1,000 pattern rules over 4 hosts) and URL lists;
2. the in-process micro-benchmarks (bench/micro.py);
3. serve the map with the project's gunicorn.conf.py (wsgi:app), serve the same exact
   rules from a bare WSGI dict (bench/baseline_app.py) under the same settings, and from
   an nginx ``map``; check each answers correctly; then drive them with wrk, alternating
   gateway/baseline/nginx round by round, each run ``--duration`` seconds with
   ``--connections`` keep-alive connections cycling through thousands of distinct URLs;
4. read the RSS of each gateway worker with the 100k map loaded;
5. optionally (``--matrix``) compare gunicorn settings: sync vs gthread, threads,
   reuse_port, access log on/off.

Prints a table and writes bench/out/bench-<time>.json (and bench/out/latest.json).

    python bench/run.py [--quick] [--duration 10] [--rounds 3] [--matrix] [--no-nginx]
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from bench.genmap import generate  # noqa: E402

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

    def start(self, timeout: float = 300.0) -> Server:
        """Start the server and wait until every worker has loaded the app."""
        self.log = self.workdir / f"{self.name}.log"
        ready = self.workdir / f"ready-{self.name}"
        shutil.rmtree(ready, ignore_errors=True)
        ready.mkdir(parents=True)
        env = os.environ | self.env | {"BENCH_READY_DIR": str(ready)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            workers_ready = len(list(ready.iterdir())) >= self.workers
            if workers_ready and _answers(self.port):
                return self
            time.sleep(0.2)
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
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/-/health", headers={"Host": "khabarovskadm.ru"})
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def rss_kib(pid: int) -> int:
    """Return a process's resident set size (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def gunicorn_server(
    name: str,
    app: str,
    map_dir: Path,
    workdir: Path,
    *,
    overrides: dict[str, object] | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """Return a gunicorn server for `app` under the project's config (plus any overrides)."""
    port = free_port()
    workers = int(os.environ.get("GATEWAY_WORKERS") or os.cpu_count() or 2)
    return Server(
        name=name,
        argv=[GUNICORN, "-c", str(BENCH_CONF), app],
        env={
            "BENCH_PROJECT_CONF": str(PROJECT_CONF),
            "BENCH_GUNICORN": json.dumps(overrides or {}),
            "BENCH_EXACT_TABLE": str(map_dir / "exact-table.tsv"),
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
    map_hash_max_size 1048576;
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
    with (
        table.open(encoding="utf-8") as src,
        (ndir / "nginx-map.conf").open("w", encoding="utf-8") as out,
    ):
        for line in src:
            target, _, location = line.rstrip("\n").partition("\t")
            out.write(f'    "{target}" "{location}";\n')
    workers = int(os.environ.get("GATEWAY_WORKERS") or os.cpu_count() or 2)
    conf = ndir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, dir=ndir, port=port), encoding="utf-8")
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


def table(result: dict[str, object]) -> str:
    """Format the server results as a plain-text table."""
    lines = []
    srv = result.get("servers")
    if isinstance(srv, dict):
        medians = srv["medians"]
        lines.append("throughput, median of alternating runs (wrk, loopback)")
        lines.append(
            f"{'server':<10}{'class':<9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'sock err':>9}{'>=400':>8}"
        )
        for name, by_class in medians.items():
            for cls, d in by_class.items():
                lines.append(
                    f"{name:<10}{cls:<9}{d['rps_median']:>10.0f}{d['p50_ms_median']:>9.2f}"
                    f"{d['p99_ms_median']:>9.2f}{d['errors']:>9}{d['status_4xx_5xx']:>8}"
                )
        for k, v in srv["ratios"].items():
            lines.append(f"ratio {k} (exact hits): {v:.2f}")
    rss = result.get("rss")
    if isinstance(rss, dict):
        workers = ", ".join(f"{kib / 1024:.0f}" for kib in rss["workers_kib"])
        lines.append(
            f"gateway RSS with {rss['rules']:,} rules: workers {workers} MiB "
            f"(master {rss['master_kib'] / 1024:.0f} MiB); target <= 120 MB"
        )
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


def main() -> None:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small map, 2 s runs")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--exact", type=int, default=100_000)
    parser.add_argument("--patterns", type=int, default=1_000)
    parser.add_argument("--urls", type=int, default=5_000, help="distinct URLs per class")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--no-micro", action="store_true")
    parser.add_argument("--no-servers", action="store_true", help="micro-benchmarks only")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install")
    parser.add_argument("--matrix", action="store_true", help="also compare gunicorn settings")
    parser.add_argument("--matrix-exact", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.urls = 2, 1, 500
        args.exact, args.patterns, args.matrix_exact = 10_000, 100, 2_000
    settings = WrkSettings(args.duration, args.connections, args.threads)
    result: dict[str, object] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": vars(args) | {"out": str(args.out)},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
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
            wrk = tools["wrk"]
            if wrk is None:
                raise SystemExit("bench: wrk is not installed (apt-get install wrk)")
            map_dir = work / "map"
            result["map"] = generate(
                map_dir, n_exact=args.exact, n_patterns=args.patterns, n_urls=args.urls
            )
            servers = [
                gunicorn_server("gateway", "wsgi:app", map_dir, work),
                gunicorn_server("baseline", "bench.baseline_app:app", map_dir, work),
            ]
            if tools["nginx"]:
                servers.append(nginx_server(tools["nginx"], map_dir, work))
            with running(servers):
                for server in servers:
                    for cls in (
                        ("exact", "pattern", "miss") if server.name == "gateway" else ("exact",)
                    ):
                        check_answers(server, read_urls(map_dir / f"urls-{cls}.tsv"), 200)
                gateway = servers[0]
                assert gateway.process is not None
                result["rss"] = {
                    "rules": args.exact + args.patterns + 1,
                    "master_kib": rss_kib(gateway.process.pid),
                    "workers_kib": [rss_kib(pid) for pid in gateway.worker_pids()],
                }
                runs = throughput(wrk, servers, map_dir, settings, args.rounds)
                result["rss"]["workers_kib_after"] = [  # type: ignore[index]
                    rss_kib(pid) for pid in gateway.worker_pids()
                ]
            result["servers"] = summarise(runs) | {"runs": runs}
            if args.matrix:
                matrix_dir = work / "matrix-map"
                generate(matrix_dir, n_exact=args.matrix_exact, n_patterns=100, n_urls=args.urls)
                result["matrix"] = settings_matrix(
                    wrk,
                    matrix_dir,
                    work,
                    WrkSettings(max(2, args.duration // 2), args.connections, args.threads),
                    max(1, args.rounds - 1),
                )
    result["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"]["loadavg_at_end"] = os.getloadavg()  # type: ignore[index]
    out = args.out / f"bench-{stamp}.json"
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    (args.out / "latest.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(table(result))
    print(f"bench: results in {out}")


if __name__ == "__main__":
    main()
