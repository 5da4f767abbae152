"""Requests per second through nginx + gateway vs the gateway alone, on the 100k-rule map.

Owns the scale-out benchmark of issue 7: generate the map (bench/genmap.py), compile
it with ``gateway export nginx``, serve it with the real nginx in front of the real
gunicorn, check a sample of answers on both, then load each with ``wrk`` over the
distinct URLs of each class:

    exact-path   exact rules without a query: nginx answers these itself
    exact-query  exact rules with a query condition (detail.php?ID=N): proxied
    pattern      pattern rules: proxied
    miss         no rule (404 banner): proxied

    python bench/nginx_export.py [--dir bench/out/nginx] [--exact 100000] [--patterns 1000]
        [--duration 10] [--connections 32] [--threads 2] [--workers N] [--repeat 1]
        [--json FILE]

Needs nginx (``apt-get install nginx-light``) and wrk (``apt-get install wrk``).
The load generator shares the machine with both servers: the numbers compare the two
set-ups on one machine, they are not a capacity figure for production.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.genmap import generate
from gateway.mapfile import load_map
from gateway.ops.export import export_nginx
from tests.support import GunicornServer, free_port, raw_request  # the tests' harness

CLASSES = ("exact-path", "exact-query", "pattern", "miss")
WRK_SCRIPT = r"""
local reqs = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do
    local host, target = line:match("^([^\t]+)\t([^\t]+)")
    if host then reqs[#reqs + 1] = wrk.format("GET", target, {["Host"] = host}) end
  end
  i = math.random(#reqs)
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "errors_status": %d, "errors_other": %d, ' ..
    '"p50_ms": %.3f, "p99_ms": %.3f}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def read_class(out: Path, name: str) -> list[tuple[str, str, int, str]]:
    """Return (host, target, status, location) rows of one URL class."""
    source = {"exact-path": "exact", "exact-query": "exact"}.get(name, name)
    rows = []
    for line in (out / f"urls-{source}.tsv").read_text(encoding="utf-8").splitlines():
        host, target, status, location = line.split("\t")
        if (name == "exact-path") == ("?" in target) and name.startswith("exact"):
            continue  # exact-path: no query; exact-query: a query
        rows.append((host, target, int(status), location))
    return rows


def start_nginx(root: Path, include: Path, port: int) -> subprocess.Popen[bytes]:
    """Start nginx (a worker per CPU) with `include` in http {}; wait until it listens on `port`."""
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / sub).mkdir(exist_ok=True)
    temp = "".join(
        f"    {s}_temp_path {root}/{s};\n" for s in ("proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = root / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes auto;\npid {root}/nginx.pid;\n"
        f"error_log {root}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
        f"http {{\n    access_log off;\n{temp}    client_body_temp_path {root}/client_body;\n"
        f"    include {include};\n}}\n",
        encoding="utf-8",
    )
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen(
        [binary, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120  # a 245k-key map takes a few seconds to hash
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nginx exited:\n{(root / 'error.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("nginx did not listen within 120 s")


def check_sample(port: int, rows: list[tuple[str, str, int, str]], n: int = 200) -> int:
    """Send up to `n` URLs of a class; count the answers with the expected status and Location."""
    good = 0
    for host, target, status, location in rows[:n]:
        response = raw_request(port, target, host=host)
        if response.status == status and (response.header("Location") or "") == location:
            good += 1
    return good


def run_wrk(port: int, urls: Path, script: Path, args: argparse.Namespace) -> dict[str, float]:
    """Load 127.0.0.1:`port` with wrk over the URL list; return requests/s and latencies."""
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
        "--",
        str(urls),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no result:\n{done.stdout}\n{done.stderr}")
    result: dict[str, float] = json.loads(line[len("RESULT ") :])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def main() -> None:
    """Generate, export, serve, check and measure; print a table (and JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("bench/out/nginx"))
    parser.add_argument("--exact", type=int, default=100_000)
    parser.add_argument("--patterns", type=int, default=1_000)
    parser.add_argument("--urls", type=int, default=5_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeat", type=int, default=1, help="wrk runs per set-up; best counts")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(
                f"{tool} is missing: apt-get install {tool if tool == 'wrk' else 'nginx-light'}"
            )

    out = args.dir.resolve()
    generate(out, n_exact=args.exact, n_patterns=args.patterns, n_urls=args.urls)
    map_path = out / "redirects.yaml"
    started = time.perf_counter()
    redirect_map = load_map(map_path)
    loaded = time.perf_counter()
    print(f"map: {len(redirect_map.rules)} rules, loaded in {loaded - started:.1f} s")
    classes = {name: read_class(out, name) for name in CLASSES}
    results: dict[str, object] = {
        "rules": len(redirect_map.rules),
        "workers": args.workers,
        "connections": args.connections,
        "duration": args.duration,
        "repeat": args.repeat,
    }
    measured: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as tmp:
        root = Path(tmp)
        script = root / "urls.lua"
        script.write_text(WRK_SCRIPT, encoding="utf-8")
        gateway = GunicornServer(log_path=root / "gunicorn.log")
        gateway.START_TIMEOUT = 600  # each worker loads the 100k-rule map before serving
        with gateway.start(map_path, workers=args.workers):
            nginx_port = free_port()
            t0 = time.perf_counter()
            text, report = export_nginx(
                redirect_map,
                listen=f"127.0.0.1:{nginx_port}",
                upstream=f"127.0.0.1:{gateway.port}",
            )
            exported = time.perf_counter() - t0
            include = out / "legacy-gateway.conf"
            include.write_text(text, encoding="utf-8")
            results.update(nginx_keys=report.entries, export_seconds=round(exported, 2))
            print(
                f"export nginx: {report.entries} keys, {len(text) / 1e6:.1f} MB in {exported:.1f} s"
            )
            for line in report.summary()[1:]:
                print(line)
            t0 = time.perf_counter()
            nginx = start_nginx(root, include, nginx_port)
            results["nginx_start_seconds"] = round(time.perf_counter() - t0, 2)
            print(f"nginx up in {results['nginx_start_seconds']} s")
            try:
                print(
                    f"\n{'class':<12} {'urls':>5} {'gateway r/s':>12} {'nginx+gw r/s':>13} "
                    f"{'x':>5} {'p99 gw ms':>10} {'p99 ngx ms':>11} {'checked':>12}"
                )
                for name, rows in classes.items():
                    urls = root / f"{name}.tsv"
                    urls.write_text("".join(f"{h}\t{t}\n" for h, t, _, _ in rows), encoding="utf-8")
                    ok_gw = check_sample(gateway.port, rows)
                    ok_ngx = check_sample(nginx_port, rows)
                    # Alternate the two, best of --repeat: the least disturbed by other load.
                    runs = [
                        (
                            run_wrk(gateway.port, urls, script, args),
                            run_wrk(nginx_port, urls, script, args),
                        )
                        for _ in range(args.repeat)
                    ]
                    alone = max((a for a, _ in runs), key=lambda r: r["rps"])
                    edge = max((e for _, e in runs), key=lambda r: r["rps"])
                    checked = f"{ok_ngx}/{ok_gw}/{min(200, len(rows))}"
                    print(
                        f"{name:<12} {len(rows):>5} {alone['rps']:>12.0f} {edge['rps']:>13.0f} "
                        f"{edge['rps'] / alone['rps']:>5.1f} {alone['p99_ms']:>10.1f} "
                        f"{edge['p99_ms']:>11.1f} {checked:>12}"
                    )
                    measured[name] = {
                        "urls": len(rows),
                        "gateway": alone,
                        "nginx": edge,
                        "sample_ok_gateway": ok_gw,
                        "sample_ok_nginx": ok_ngx,
                    }
            finally:
                nginx.send_signal(signal.SIGTERM)
                nginx.wait(30)
    results["classes"] = measured
    load1, _, _ = os.getloadavg()
    results["loadavg_1min_after"] = load1
    print(f"\nload average (1 min) after the runs: {load1:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
