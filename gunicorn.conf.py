"""gunicorn settings for legacy-gateway, and the map check that runs before any worker.

Owns: how the process is sized and bound (from GATEWAY_* environment variables) and
the rule that a map with problems stops gunicorn at startup, as `nginx -t` would,
instead of booting workers that would each fail on it.

    GATEWAY_MAP      map file (default: redirects.yaml in the working directory)
    GATEWAY_BIND     address to listen on (default: 127.0.0.1:8080)
    GATEWAY_WORKERS  worker processes (default: the number of CPUs)
    GATEWAY_THREADS  threads per worker (default: 4)
"""

from __future__ import annotations

import os
import sys
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


bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8080")
workers = _env_int("GATEWAY_WORKERS", os.cpu_count() or 2)
# Threads, because a request is CPU-light and a slow client should not hold a process.
worker_class = "gthread"
threads = _env_int("GATEWAY_THREADS", 4)
# Lets a new master bind the same port while the old one drains (zero-downtime restart).
# Since gunicorn 24 it also means that each worker opens its own listening socket (the
# kernel spreads connections among them) and the master opens none.
reuse_port = True
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


def on_starting(server: Any) -> None:
    """Refuse to start on a map that does not load: every problem, then exit 1."""
    from gateway.mapfile import MapError, load_map

    map_path = os.environ.get("GATEWAY_MAP", "redirects.yaml")
    try:
        load_map(map_path)
    except MapError as e:
        for problem in e.problems:
            print(str(problem), file=sys.stderr)  # already "FILE:LINE: error: message"
        print(
            f"gateway: refusing to start: {len(e.problems)} problem(s) in {map_path}",
            file=sys.stderr,
        )
        sys.exit(1)
    except OSError as e:
        print(
            f"gateway: refusing to start: cannot read map {map_path}: {e.strerror or e}",
            file=sys.stderr,
        )
        sys.exit(1)
    finally:
        # Forget the gateway modules so that workers forked after a HUP import the code
        # as it is on disk then, not the copy the master loaded for this check.
        for name in [m for m in sys.modules if m == "gateway" or m.startswith("gateway.")]:
            del sys.modules[name]
