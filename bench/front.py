"""The standalone nginx front under the full attack of issue 13, and a 2,000-connection load.

Serves the bundled map with the real gunicorn (the project's gunicorn.conf.py, one
worker per CPU) behind the real nginx running ``gateway export nginx --standalone``
as it is (defaults: 4,096 connections, 64 per address, 10 s client timeouts). Then,
on loopback only:

1. flood: 3,000 slow-header + 500 idle + 200 slow-body connections from 127.0.0.2-9,
   each reopened as soon as nginx drops it (a slowloris keeps its count), for
   ``--duration`` s, while the legitimate client (127.0.0.1) asks for a 301 on a
   new connection every 0.1 s (nginx's own answer and the gateway's in turn), each
   with a 1 s deadline: every one must come back right and in time;
2. load: 2,000 keep-alive connections from 40 addresses (127.0.1.1-40, 50 each, under
   the per-address limit), half nginx's own 301s, half the gateway's, for
   ``--duration`` s: every answer must be the right 301, with no connection error;
3. with wrk (``apt-get install wrk``), if present: ``wrk -c2000`` on nginx's own 301.

    python bench/front.py [--duration 20] [--slow-header 3000] [--idle 500]
        [--slow-body 200] [--load 2000] [--json FILE]

The load generator is Python (asyncio) and shares the 2 CPUs with both servers: the
request rates compare runs on one machine, the errors are the claim. Exits 1 if any
legitimate request failed or was late, or the load saw an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.ops.nginx_conf import Front
from tests.http.test_front import running  # the tests' harness
from tests.support import BUNDLED_MAP, GunicornServer

HOST = "khabarovskadm.ru"
ATTACKERS = [f"127.0.0.{n}" for n in range(2, 10)]
LOCATION = b"https://khv27.ru/contacts/"
TARGETS = [b"/contacts/", b"/contacts/?utm_source=bench"]  # nginx's own 301, the gateway's


def raise_fd_limit() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def request(target: bytes, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target, HOST.encode(), extra)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one response: (status, Location, whether the server will close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    if length:
        await reader.readexactly(int(length.group(1)))
    location = re.search(rb"\r\nlocation: *([^\r]*)", head, re.I)
    closing = re.search(rb"\r\nconnection: *close", head, re.I) is not None
    return status, location.group(1) if location else b"", closing


@dataclass
class Attack:
    held: int = 0
    opened: int = 0
    dropped: int = 0  # closed or reset by nginx (its timeouts), then reopened
    refused: int = 0  # could not connect at all
    samples: list[int] = field(default_factory=list)


async def attacker(kind: str, source: str, port: int, stop: asyncio.Event, attack: Attack) -> None:
    opening = {
        "slow-header": request(b"/").removesuffix(b"\r\n"),  # the header never ends
        "idle": b"",
        "slow-body": b"POST /contacts/ HTTP/1.1\r\nHost: %s\r\nContent-Length: 900\r\n\r\n"
        % HOST.encode(),
    }[kind]
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        except OSError:
            attack.refused += 1
            await asyncio.sleep(0.5)
            continue
        attack.held += 1
        attack.opened += 1
        try:
            writer.write(opening)
            while not stop.is_set():
                try:
                    if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                        break  # nginx closed it
                except TimeoutError:
                    pass
                if kind != "idle":
                    writer.write(b"x")  # one byte a second
                    await writer.drain()
        except OSError:
            pass  # reset
        finally:
            attack.held -= 1
            if not stop.is_set():
                attack.dropped += 1
            writer.close()


async def legitimate(port: int, stop: asyncio.Event, results: list[tuple[float, str]]) -> None:
    i = 0
    while not stop.is_set():
        target = TARGETS[i % 2]
        i += 1
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.1", 0)), 1.0
            )
            writer.write(request(target, close=True))
            status, location, _ = await asyncio.wait_for(read_response(reader), 1.0)
            writer.close()
            outcome = "ok" if (status, location) == (301, LOCATION) else f"status {status}"
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            outcome = type(exc).__name__
        elapsed = time.perf_counter() - started
        results.append((elapsed, outcome if elapsed < 1.0 or outcome != "ok" else "late"))
        await asyncio.sleep(0.1)


async def flood(port: int, counts: dict[str, int], duration: float) -> dict[str, object]:
    stop = asyncio.Event()
    attack = Attack()
    tasks = [
        asyncio.create_task(attacker(kind, ATTACKERS[i % len(ATTACKERS)], port, stop, attack))
        for kind, n in counts.items()
        for i in range(n)
    ]
    total = sum(counts.values())
    ramp = time.monotonic()
    while attack.held < total and time.monotonic() - ramp < 30:
        await asyncio.sleep(0.1)
    ramp_s = time.monotonic() - ramp
    results: list[tuple[float, str]] = []
    legit = asyncio.create_task(legitimate(port, stop, results))
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        attack.samples.append(attack.held)
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(legit, *tasks, return_exceptions=True)
    latencies = sorted(r[0] for r in results)
    return {
        "attack": counts,
        "ramp_s": round(ramp_s, 2),
        "held_min": min(attack.samples),
        "held_max": max(attack.samples),
        "dropped_and_reopened": attack.dropped,
        "connect_refused": attack.refused,
        "legit_requests": len(results),
        "legit_failed": sum(outcome != "ok" for _, outcome in results),
        "legit_outcomes": dict(Counter(outcome for _, outcome in results)),
        "legit_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "legit_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "legit_max_ms": round(latencies[-1] * 1000, 1),
    }


async def load_connection(
    source: str, port: int, deadline: float, i: int, stats: Counter[str], lat: list[float]
) -> None:
    reader = writer = None
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(source, 0)
                )
            assert reader is not None
            started = time.perf_counter()
            writer.write(request(TARGETS[i % 2]))
            i += 1
            status, location, closing = await asyncio.wait_for(read_response(reader), 30)
            lat.append(time.perf_counter() - started)
            stats["ok" if (status, location) == (301, LOCATION) else f"status {status}"] += 1
            if closing:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            stats[f"error {type(exc).__name__}"] += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def load(port: int, connections: int, duration: float) -> dict[str, object]:
    sources = [f"127.0.1.{n}" for n in range(1, 41)]
    stats: Counter[str] = Counter()
    lat: list[float] = []
    deadline = time.monotonic() + duration
    started = time.monotonic()
    await asyncio.gather(
        *(
            load_connection(sources[i % len(sources)], port, deadline, i, stats, lat)
            for i in range(connections)
        )
    )
    elapsed = time.monotonic() - started
    lat.sort()
    return {
        "connections": connections,
        "sources": len(sources),
        "requests": sum(stats.values()),
        "rps": round(sum(stats.values()) / elapsed),
        "errors": sum(n for k, n in stats.items() if k != "ok"),
        "outcomes": dict(stats),
        "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 1) if lat else None,
    }


def run_wrk(wrk: str, port: int, connections: int, duration: int) -> dict[str, object]:
    done = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "-H", f"Host: {HOST}",
         f"http://127.0.0.1:{port}/contacts/"],
        capture_output=True, text=True, timeout=duration + 60, check=False,
    )  # fmt: skip
    out = done.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    non3xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "connections": connections,
        "rps": float(rps.group(1)) if rps else None,
        "socket_errors": errors.group(1) if errors else "none",
        "non_2xx_3xx": int(non3xx.group(1)) if non3xx else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds per phase")
    parser.add_argument("--slow-header", type=int, default=3000)
    parser.add_argument("--idle", type=int, default=500)
    parser.add_argument("--slow-body", type=int, default=200)
    parser.add_argument("--load", type=int, default=2000, help="load connections")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    fds = raise_fd_limit()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    root = Path(tempfile.mkdtemp(prefix="bench-front-"))
    counts = {"slow-header": args.slow_header, "idle": args.idle, "slow-body": args.slow_body}
    result: dict[str, object] = {"cpus": os.cpu_count(), "fd_limit": fds}
    workers = os.cpu_count() or 2
    gunicorn = GunicornServer(log_path=root / "gunicorn.log")
    with (
        gunicorn.start(BUNDLED_MAP, workers=workers) as gw,
        running(nginx, root, gw.port, Front()) as front,
    ):
        print(f"front: nginx on :{front.port}, gunicorn ({workers} workers) on :{gw.port}")
        result["flood"] = asyncio.run(flood(front.port, counts, args.duration))
        print("flood:", json.dumps(result["flood"]))
        time.sleep(2)  # let the flood's connections go
        result["load"] = asyncio.run(load(front.port, args.load, args.duration))
        print("load: ", json.dumps(result["load"]))
        wrk = shutil.which("wrk")
        if wrk:
            result["wrk"] = run_wrk(wrk, front.port, args.load, int(args.duration))
            print("wrk:  ", json.dumps(result["wrk"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    flood_result, load_result = result["flood"], result["load"]
    assert isinstance(flood_result, dict) and isinstance(load_result, dict)
    ok = flood_result["legit_failed"] == 0 and load_result["errors"] == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
