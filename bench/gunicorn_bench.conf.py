"""gunicorn config for benchmark runs: the project's gunicorn.conf.py, unchanged by default.

Owns three things only: a readiness marker (a file per worker once it has loaded the
app, so a run never starts while a worker is still loading a 100k-rule map; it holds
the worker's monotonic clock at its fork and once ready, JSON), for the settings matrix,
overrides from BENCH_GUNICORN (JSON, e.g. {"worker_class": "sync"}), and BENCH_BARE=1:
no map check before the workers (the project's on_starting left out), for timing a
bare gunicorn start. Without these every setting is the project's.
"""

from __future__ import annotations

import json
import os
import runpy
import time
from typing import Any

_project = runpy.run_path(os.environ["BENCH_PROJECT_CONF"])
globals().update({k: v for k, v in _project.items() if not k.startswith("__")})
globals().update(json.loads(os.environ.get("BENCH_GUNICORN") or "{}"))

_project_post_worker_init = _project.get("post_worker_init")
_project_post_fork = _project.get("post_fork")
_forked_at = 0.0

if os.environ.get("BENCH_BARE") == "1":

    def on_starting(server: Any) -> None:
        """A bare start: no map check before the workers."""


def post_fork(server: Any, worker: Any) -> None:
    """Note when this worker was forked (its clock starts here), then the project's hook."""
    global _forked_at
    _forked_at = time.monotonic()
    if _project_post_fork is not None:
        _project_post_fork(server, worker)


def post_worker_init(worker: Any) -> None:
    """Run the project's hook, then say this worker is ready."""
    if _project_post_worker_init is not None:
        _project_post_worker_init(worker)
    ready = os.environ.get("BENCH_READY_DIR")
    if ready:
        path = os.path.join(ready, str(os.getpid()))
        with open(path + ".tmp", "w") as f:
            json.dump({"forked": _forked_at, "ready": time.monotonic()}, f)
        os.replace(path + ".tmp", path)  # whole when seen
