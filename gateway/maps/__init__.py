"""The map being served: one reference to a loaded ``RedirectMap``, replaced whole, kept fresh.

Owns the life of the served map in one worker process, one job a module:

- **Start.** Load the map; when it does not load, serve the last-known-good copy
  (``LastGood``) and say so; when there is none either, serve no map at all (the
  web layer answers 503) rather than an empty one.
- **Reload.** A daemon thread per worker (started lazily, since threads do not
  survive gunicorn's fork) stats the map, its included files and the include
  globs every ``reload_interval`` seconds. When something changed it waits until
  the files have been quiet for ``SETTLE`` seconds (a half-written file is still
  changing), loads and validates the new map off the request path, checks that
  no file changed during the load, then swaps one reference. A map that fails to
  load changes nothing: the old one keeps serving, the error is logged with
  ``FILE:LINE`` and shown by ``/-/health``.
- **Last-known-good.** After each successful load the map's files are copied to a
  state directory, so that a worker started later (gunicorn's HUP) can serve them
  when the map on disk is broken.

A request reads ``current()`` once and keeps that map to the end, so a request
is always answered by exactly one complete map version.

- **Compiled once.** With a state directory, a load is ``compiled``'s: each map
  version is validated and written into one table by a single child process, and
  every worker opens that table instead of loading the map (issue 14).

Modules: ``holder`` (``MapHolder``: load, swap, fall back, status), ``watch`` (the
watcher thread and the settle wait), ``files`` (fingerprints of the map's files and
their checks), ``lastgood`` (the last-known-good copy), ``compiled`` (the compiled
versions and who compiles them) and ``status`` (what health and the metrics read).
The names others import are re-exported here.
"""

from __future__ import annotations

from gateway.maps.files import FileState, Fingerprint, Watched
from gateway.maps.holder import MapHolder
from gateway.maps.lastgood import KEEP_SNAPSHOTS, LastGood, default_state_dir
from gateway.maps.status import (
    MAX_PROBLEMS_SHOWN,
    SERVING_LAST_GOOD,
    SERVING_MAP,
    SERVING_NONE,
    MapListener,
    Status,
    describe_problems,
)

# Not SETTLE or the clock: they are read in ``watch``, where a test must patch them.
from gateway.maps.watch import RELOAD_INTERVAL

__all__ = [
    "KEEP_SNAPSHOTS",
    "MAX_PROBLEMS_SHOWN",
    "RELOAD_INTERVAL",
    "SERVING_LAST_GOOD",
    "SERVING_MAP",
    "SERVING_NONE",
    "FileState",
    "Fingerprint",
    "LastGood",
    "MapHolder",
    "MapListener",
    "Status",
    "Watched",
    "default_state_dir",
    "describe_problems",
]
