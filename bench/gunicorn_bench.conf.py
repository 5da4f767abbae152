"""gunicorn config for benchmark runs: the project's gunicorn.conf.py, unchanged by default.

Owns two things only: a readiness marker (a file per worker once it has loaded the
app, so a run never starts while a worker is still loading a 100k-rule map), and,
for the settings matrix, overrides from BENCH_GUNICORN (JSON, e.g.
{"worker_class": "sync"}). Without overrides every setting is the project's.
"""

from __future__ import annotations

import json
import os
import runpy
from typing import Any

_project = runpy.run_path(os.environ["BENCH_PROJECT_CONF"])
globals().update({k: v for k, v in _project.items() if not k.startswith("__")})
globals().update(json.loads(os.environ.get("BENCH_GUNICORN") or "{}"))

_project_post_worker_init = _project.get("post_worker_init")


def post_worker_init(worker: Any) -> None:
    """Run the project's hook, then say this worker is ready."""
    if _project_post_worker_init is not None:
        _project_post_worker_init(worker)
    ready = os.environ.get("BENCH_READY_DIR")
    if ready:
        with open(os.path.join(ready, str(os.getpid())), "w") as f:
            f.write("ready\n")
