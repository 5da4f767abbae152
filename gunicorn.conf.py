"""gunicorn settings for legacy-gateway, and the map check that runs before any worker.

Owns: how the process is sized and bound (from GATEWAY_* environment variables) and
the rule that a map with problems stops gunicorn at startup, as `nginx -t` would,
instead of booting workers that would each fail on it.

    GATEWAY_MAP      map file (default: redirects.yaml in the working directory)
    GATEWAY_BIND     address to listen on (default: 127.0.0.1:8080)
    GATEWAY_WORKERS  worker processes (default: the number of CPUs)
    GATEWAY_THREADS  threads per worker (default: 4): requests served at once per worker
    GATEWAY_HEADER_TIMEOUT  seconds a client has to send its whole request head, from
                     its connect or its first byte after a keep-alive wait (default: 10);
                     past it the connection is closed (gateway/workers.py)

Live operations (gateway/maps.py, metrics.py, accesslog.py; docs/operations.md):

    GATEWAY_RELOAD_INTERVAL   seconds between checks of the map's files (default: 2)
    GATEWAY_STATE_DIR         where the last-known-good copy and the compiled tables
                              of the map are kept (default: $TMPDIR/legacy-gateway-<uid>;
                              "off": none, and every worker loads the whole map)
    GATEWAY_COMPILED          "on" (default) or "off": serve the map from its compiled
                              table in the state directory (gateway/maps/compiled.py)
    GATEWAY_ACCESS_LOG        JSON access lines: "-" stdout (default), a file, or "off"
    PROMETHEUS_MULTIPROC_DIR  the workers' shared metrics files (default: a fresh temp
                              folder, removed at exit); emptied at start

Every worker gets the map itself and reloads it when its files change, so the app
is not preloaded: a worker forked after HUP imports the code and reads the map as
they are on disk then, falling back to the last-known-good copy if the map is broken.
With a state directory (the default) each map version is compiled once, by the check
below or by one child process on reload, into a table the workers share
(GATEWAY_COMPILED=off: each worker loads the whole map, as before issue 14).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
from typing import Any


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        # Said plainly here: gunicorn would otherwise report a traceback from its config loader.
        sys.exit(f"gateway: {name} must be a positive integer, not {raw!r}")
    return value


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < 3600:
        sys.exit(f"gateway: {name} must be a number of seconds above 0, not {raw!r}")
    return value


bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8080")
workers = _env_int("GATEWAY_WORKERS", os.cpu_count() or 2)
# gthread, with request heads read by each worker's main loop and a deadline on them
# (gateway/workers.py, issue 13). Plain gthread gives each accepted connection to a pool
# thread that blocks reading its headers with no deadline, so workers x threads = 8 slow
# or idle clients stalled every request, /-/health included. Measured on 2 cores, 2
# workers x 4 threads, bundled map, loopback (python bench/slow_clients.py --candidates
# project,gthread,gevent: 256 slow-header + 64 idle + 64 slow-POST connections from
# 127.0.0.2-9, one byte every 10 s, for 30 s; GET / from 127.0.0.1 every 0.2 s, 2 s each):
#   gthread   14 of 14 legitimate requests timed out; 0 of 384 attack connections closed
#   deadline  0 of 149 failed, max 52 ms; slow and idle heads closed at 10.1 s, slow
#             bodies answered 405 and closed at 0.1 s; wrk -t2 -c50 -d10s GET /:
#             1.01 1.03 0.94 0.97 1.13 of gthread pair by pair; reloading a 100k-rule
#             map under a GET every 20 ms (--reload-map): max 75 ms (gthread 142 ms)
#   gevent    0 of 149 failed (its keepalive timeout bounds a head: closed at 5 s);
#             1.36-1.42 of gthread, but the map load (1.3 s at 100k rules) runs in a
#             greenlet and stops the worker's loop: a request waited 1,411 ms
# Each worker holds up to worker_connections (1000) sockets; a head not complete after
# GATEWAY_HEADER_TIMEOUT seconds is closed, so holding all 2,000 takes 200 new
# connections a second. Threads serve requests only: none waits on a client's head.
worker_class = "gateway.workers.DeadlineThreadWorker"
threads = _env_int("GATEWAY_THREADS", 4)
worker_connections = 1000
# Validated here (gunicorn would not); the worker reads it from the environment.
os.environ["GATEWAY_HEADER_TIMEOUT"] = repr(_env_seconds("GATEWAY_HEADER_TIMEOUT", 10.0))
# Off: with SO_REUSEPORT (gunicorn >= 24) each worker listens on a socket of its own, and
# a worker that stops (HUP, a graceful restart) closes it with connections still queued
# on it, which get a reset: measured 5 resets in 8 HUPs under a steady request loop, and
# none with one socket shared by all workers, the master's (tests/http/test_live_ops.py).
# HUP is how the gateway picks up new code without dropping a request, so that wins over
# the spreading of keep-alive connections that reuse_port gives (see issue 5).
reuse_port = False
# gunicorn >= 25.1 opens a control socket at one per-user path ($HOME/.gunicorn/gunicorn.ctl)
# by default; a second master (a reuse_port restart, the tests) would take it over and
# unlink it on exit. Nothing here uses gunicornc. Older gunicorns ignore the name.
control_socket_disable = True
keepalive = 5
graceful_timeout = 20
timeout = 30
# Room for long legacy query strings (gunicorn's default is 4094).
limit_request_line = 8190
# Structured access logs come later (they belong to the app, which knows the outcome).
accesslog = None
errorlog = "-"
proc_name = "legacy-gateway"
# Not preloaded: each worker loads (and reloads) its own map, so a worker respawned
# after a crash or a HUP starts from the map on disk, not from a copy the master
# loaded at startup. See docs/operations.md.
preload_app = False


def on_starting(server: Any) -> None:
    """Refuse to start on a map that does not load: every problem, then exit 1."""
    # First: importing gateway imports prometheus_client, which picks single- or
    # multi-process mode from PROMETHEUS_MULTIPROC_DIR once, at import (workers inherit it).
    _metrics_dir()
    # The check runs in a child process: loading a 100k-rule map grows a process by about
    # 100 MB that Python keeps, and every worker forked from the master would carry it
    # (worker RSS 163 MB instead of ~115 MB at 100k rules, issue 5). The master also
    # never imports gateway, so workers forked after a HUP import the code on disk then.
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _check_map(os.environ.get("GATEWAY_MAP", "redirects.yaml"))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        on_exit(server)
        sys.exit(1)


def _check_map(map_path: str) -> int:
    """Load (and compile) the map; print every problem and return 1 if it does not load."""
    from gateway.mapfile import MapError, load_map
    from gateway.maps import default_state_dir
    from gateway.maps.compiled import Compiled

    state_dir = os.environ.get("GATEWAY_STATE_DIR") or default_state_dir()
    compiled = os.environ.get("GATEWAY_COMPILED", "on").lower() != "off"
    try:
        if compiled and state_dir.lower() != "off":
            # Compiled here, once, before any worker: the workers then open its table
            # (gateway/maps/compiled.py), and a worker's start never waits for a compile.
            result = Compiled.of(map_path, state_dir).compile_now()
            if result.table is None:
                raise MapError(list(result.problems))
        else:
            load_map(map_path)
    except MapError as e:
        for problem in e.problems:
            print(str(problem), file=sys.stderr)  # already "FILE:LINE: error: message"
        print(
            f"gateway: refusing to start: {len(e.problems)} problem(s) in {map_path}",
            file=sys.stderr,
        )
        return 1
    except OSError as e:
        print(
            f"gateway: refusing to start: cannot read map {map_path}: {e.strerror or e}",
            file=sys.stderr,
        )
        return 1
    return 0


# Set when gunicorn made the metrics folder itself, so that on_exit removes it.
_OWN_METRICS_DIR = "GATEWAY_OWN_METRICS_DIR"


def _metrics_dir() -> None:
    """Give prometheus_client's multiprocess mode an empty folder, before any worker starts."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        path = tempfile.mkdtemp(prefix="legacy-gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        os.environ[_OWN_METRICS_DIR] = path
        return
    os.makedirs(path, exist_ok=True)
    # Figures from an earlier run would be added to this one's.
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))


def post_worker_init(worker: Any) -> None:
    """Start the worker's map watcher now, not at its first request (threads don't survive fork)."""
    extensions = getattr(worker.wsgi, "extensions", None)
    maps = extensions.get("gateway.maps") if isinstance(extensions, dict) else None
    if maps is not None:
        maps.start_watching()
    _trim_heap()


def _trim_heap() -> None:
    """Give back to the system the heap that loading the map used and freed (glibc only)."""
    # Parsing a 100k-rule map leaves ~8 MB of freed malloc memory in each worker's RSS.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's per-process gauges (its counters stay in the totals)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """Write what the worker still holds: its buffered access lines and metric counts.

    Runs in the worker once it has stopped serving (SIGTERM, HUP, SIGINT, a timeout's
    SIGABRT); atexit flushes again after the last request thread ends. Only SIGKILL
    skips both: it loses at most the worker's last flush interval (docs/operations.md).
    """
    accesslog = sys.modules.get("gateway.accesslog")  # absent if the app never loaded
    if accesslog is not None:
        accesslog.flush()


def on_exit(server: Any) -> None:
    """Remove the metrics folder gunicorn made for itself."""
    own = os.environ.get(_OWN_METRICS_DIR)
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(own, ignore_errors=True)
