"""The map being served: one reference to a loaded ``RedirectMap``, replaced whole.

Owns ``MapHolder``: loading the map off the request path, swapping the one reference
requests read, falling back to the last-known-good copy at start, and the status
that ``/-/health`` shows. When to reload is ``watch``'s job; the copy is ``lastgood``'s.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

from gateway.mapfile import MapError, Problem, RedirectMap, load_map
from gateway.maps import watch
from gateway.maps.compiled import Compiled, CompileFailed
from gateway.maps.files import Fingerprint, Watched, consistent, file_state, newest_change
from gateway.maps.lastgood import LastGood
from gateway.maps.status import (
    SERVING_LAST_GOOD,
    SERVING_MAP,
    SERVING_NONE,
    MapListener,
    Status,
    describe_problems,
    indent,
)

# The package's name, not this module's: operators grep their logs for "gateway.maps".
log = logging.getLogger("gateway.maps")


class MapHolder:
    """Hold the served map, reload it when its files change, keep a last-known-good copy."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        reload_interval: float = watch.RELOAD_INTERVAL,
        state_dir: str | os.PathLike[str] | None = None,
        listener: MapListener | None = None,
        compiled: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.reload_interval = reload_interval
        # The web archives' indexes (spec §8) beside the last-known-good copies.
        self.index_dir = (
            os.path.join(os.fspath(state_dir), "archive-index") if state_dir is not None else None
        )
        self.last_good = (
            LastGood(state_dir, self.path, self.index_dir) if state_dir is not None else None
        )
        # Issue 14: with a state directory, the map compiled once per version into a
        # table every worker maps (maps.compiled), instead of loaded by each worker.
        self.compiled = (
            Compiled.of(self.path, os.fspath(state_dir))
            if compiled and state_dir is not None
            else None
        )
        self.listener = listener
        self._lock = threading.Lock()  # one load at a time
        self._start_lock = threading.Lock()  # apart: a load may hold _lock for seconds
        self._watch_pid = 0
        self._current: RedirectMap | None = None
        self._status = Status(None, SERVING_NONE)
        self._watched = Watched((self.path,))
        self._seen: Fingerprint | None = None
        with self._lock:
            if not self._reload(event="loaded"):
                self._fall_back()

    # --- the request path -------------------------------------------------------------

    def current(self) -> RedirectMap | None:
        """Return the map to answer the next request with (None: no valid map at all)."""
        if self._watch_pid != watch.pid:
            self.start_watching()
        return self._current

    # --- what health shows ------------------------------------------------------------

    def status(self) -> Status:
        """Return what is served and how the last load attempt went."""
        return self._status

    @property
    def last_error(self) -> str | None:
        """The last load attempt's problems, or None when it succeeded."""
        return self._status.last_error

    # --- reloading ----------------------------------------------------------------------

    def start_watching(self) -> None:
        """Start this process's watcher thread, unless it runs already (or reload is off)."""
        with self._start_lock:
            if self._watch_pid == watch.pid:
                return
            self._watch_pid = watch.pid
        if self.reload_interval <= 0:
            return
        watch.start_thread(self, self.reload_interval)

    def check(self) -> bool:
        """Reload if the map's files changed since the last attempt; True if a new map is served."""
        with self._lock:
            if self._watched.fingerprint() == self._seen:
                return False
            return self._reload(event="reloaded")

    def _reload(self, *, event: str) -> bool:
        """Load the map once its files are quiet; swap it in, or record why not."""
        watched = self._watched
        deadline = watch.settle_deadline()
        while True:
            quiet = watch.wait_until_quiet(watched, deadline)
            if quiet is None:
                return False  # still changing: the next check tries again
            started, before = quiet
            attempt_at = datetime.now(UTC)
            try:
                new = self._load()
            except MapError as exc:
                self._failed(exc.problems, before, started, attempt_at)
                return False
            except CompileFailed as exc:
                log.error("compiling %s failed: %s", self.path, exc)
                problem = Problem(self.path, 0, f"the map was not compiled: {exc}")
                self._failed((problem,), before, started, attempt_at)
                return False
            except Exception as exc:  # a fault in the loader must not kill the watcher
                log.exception("loading %s failed unexpectedly", self.path)
                problem = Problem(self.path, 0, f"internal error while loading: {exc!r}")
                self._failed((problem,), before, started, attempt_at)
                return False
            watched = Watched.of(new)
            after = watched.fingerprint()
            if consistent(before, after, watch.quiet_since(started)):
                return self._swap(new, watched, after, attempt_at, event)
            # A file changed during the load, or one the old map did not include was not
            # known to be quiet: look again with the new map's files.
            if time.monotonic() > deadline:
                return False

    def _load(self) -> RedirectMap:
        """Load the map as its files are now: from its compiled table, or whole in memory."""
        if self.compiled is not None:
            try:
                return self.compiled.load()
            except OSError as exc:  # an unsafe or unwritable state folder: serve regardless
                log.warning(
                    "cannot compile %s in %s (%s); this worker loads the whole map itself",
                    self.path,
                    self.compiled.root,
                    exc,
                )
        return load_map(self.path, index_dir=self.index_dir)

    def _swap(
        self,
        new: RedirectMap,
        watched: Watched,
        seen: Fingerprint,
        attempt_at: datetime,
        event: str,
    ) -> bool:
        """Serve `new` (True), or keep the served map when it has the same content (False)."""
        old = self._status
        self._watched = watched
        self._seen = seen
        if old.serving == SERVING_MAP and old.map is not None and old.map.version == new.version:
            # The same content (a touch, a save without changes): keep the map being served.
            self._status = replace(
                old, last_attempt_at=attempt_at, last_attempt_ok=True, last_error=None
            )
            self._notify("unchanged")
            return False
        self._status = Status(new, SERVING_MAP, attempt_at, True, None)
        self._current = new  # the one reference requests read: swapped whole
        if old.map is None:
            log.info("map %s loaded: version %s, %d rules", new.path, new.version, len(new.rules))
        elif old.serving == SERVING_LAST_GOOD:
            log.info(
                "map %s loads again: version %s, %d rules (the last-known-good copy is no"
                " longer served)",
                new.path,
                new.version,
                len(new.rules),
            )
        else:
            log.info(
                "map %s reloaded: version %s -> %s, %d rules",
                new.path,
                old.map.version,
                new.version,
                len(new.rules),
            )
        self._notify(event)
        if self.last_good is not None:
            self.last_good.save(new, seen)
        return True

    def _failed(
        self,
        problems: tuple[Problem, ...],
        before: Fingerprint,
        started: int,
        attempt_at: datetime,
    ) -> None:
        old = self._status
        message = describe_problems(problems)
        # Watch the files the problems are in too: fixing a newly included file must count.
        # The others keep the state they had before the load, so that a change made
        # during this load is still seen as a change by the next check.
        known = {path for path, _ in before}
        new_files = sorted({p.file for p in problems if p.file and p.file not in known})
        added = [(path, file_state(path)) for path in new_files]
        self._watched = Watched(self._watched.files + tuple(new_files), self._watched.patterns)
        self._seen = tuple(sorted([*before, *added]))
        if newest_change(tuple(added)) > watch.quiet_since(started):
            self._seen = None  # a problem file changed during the load: look again next time
        self._status = replace(
            old, last_attempt_at=attempt_at, last_attempt_ok=False, last_error=message
        )
        served = f" (still serving version {old.map.version})" if old.map else ""
        log.error("map %s not loaded%s:\n%s", self.path, served, indent(message))
        self._notify("failed")

    def _fall_back(self) -> None:
        """Serve the last-known-good copy when the map on disk does not load at start."""
        last_good = None
        if self.last_good is not None:
            if self.compiled is not None:
                last_good = self.compiled.last_good(self.last_good)
            if last_good is None:
                last_good = self.last_good.load()
        if last_good is not None:
            self._status = replace(self._status, map=last_good, serving=SERVING_LAST_GOOD)
            self._current = last_good
            log.warning(
                "serving the last-known-good copy of %s: version %s, %d rules, from %s",
                self.path,
                last_good.version,
                len(last_good.rules),
                last_good.path,
            )
        else:
            log.critical(
                "no map to serve: %s could not be loaded and there is no last-known-good copy;"
                " every request is answered 503 until the map is fixed",
                self.path,
            )
        self._notify("fallback")

    def _notify(self, event: str) -> None:
        if self.listener is None:
            return
        try:
            self.listener.map_event(self._status, event)
        except Exception:  # metrics must never stop a reload
            log.exception("recording the map event %r failed", event)
