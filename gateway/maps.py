"""The map being served: one reference to a loaded ``RedirectMap``, replaced whole, kept fresh.

Owns the life of the served map in one worker process:

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
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from gateway.mapfile import MapError, Problem, RedirectMap, load_map

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 2.0  # seconds between two stats of the map's files
SETTLE = 0.5  # seconds a changed file must stay unchanged before it is loaded
MAX_SETTLE_WAIT = 3.0  # seconds one attempt waits for files that keep changing
MAX_PROBLEMS_SHOWN = 20  # problems kept in last_error (the log gets the same)
KEEP_SNAPSHOTS = 3  # last-known-good copies kept per map (the current one included)

SERVING_MAP = "map"
SERVING_LAST_GOOD = "last-known-good"
SERVING_NONE = "none"

# (path, (inode, size, mtime_ns, ctime_ns) or None when the file cannot be stat'ed)
FileState = tuple[int, int, int, int] | None
Fingerprint = tuple[tuple[str, FileState], ...]

# The pid of this process, updated in a forked child, so that `current()` can tell a
# fresh worker (whose watcher thread did not survive the fork) with one comparison.
_pid = os.getpid()


# The wall clock that files' ctimes are compared with (a name of its own for the tests).
_clock = time.time_ns


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


@dataclass(frozen=True)
class Status:
    """What is served and how the last load went: one value, replaced whole."""

    map: RedirectMap | None
    serving: str  # SERVING_MAP, SERVING_LAST_GOOD or SERVING_NONE
    last_attempt_at: datetime | None = None
    last_attempt_ok: bool | None = None
    last_error: str | None = None  # the last attempt's problems, one "FILE:LINE: ..." a line


class MapListener(Protocol):
    """Told about every load attempt (metrics use it)."""

    def map_event(self, status: Status, event: str) -> None:
        """Record an event: "loaded", "reloaded", "unchanged" or "failed"."""


@dataclass(frozen=True)
class Watched:
    """What a reload watches: files by stat, include globs by their matches."""

    files: tuple[str, ...]
    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, redirect_map: RedirectMap) -> Watched:
        """Return what to watch for a loaded map: its files and its include globs."""
        return cls(redirect_map.files, redirect_map.include_patterns)

    def fingerprint(self) -> Fingerprint:
        """Stat every file and every current match of the globs."""
        paths = set(self.files)
        for pattern in self.patterns:
            paths.update(glob.glob(pattern))
        return tuple((path, _file_state(path)) for path in sorted(paths))


def _file_state(path: str) -> FileState:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # ctime as well as mtime: `cp -p` or `touch -r` can put an old mtime on new content.
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _consistent(before: Fingerprint, after: Fingerprint, quiet_since: int) -> bool:
    """Say whether a load read the files as they are now: none changed, none is missing.

    Files stat'ed before the load must be unchanged; files only the new map names
    must have been quiet since `quiet_since` (ns) already.
    """
    known = dict(before)
    for path, state in after:
        if state is None:
            return False
        if path in known:
            if known[path] != state:
                return False
        elif state[3] > quiet_since:
            return False
    return True


def _newest_change(fingerprint: Fingerprint) -> int:
    """Return the newest ctime (ns) among the files that exist."""
    return max((state[3] for _, state in fingerprint if state is not None), default=0)


def describe_problems(problems: tuple[Problem, ...] | list[Problem]) -> str:
    """Return the problems as `FILE:LINE: error: message` lines, the first few of them."""
    lines = [str(p) for p in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problem(s)")
    return "\n".join(lines) or "the map did not load"


class MapHolder:
    """Hold the served map, reload it when its files change, keep a last-known-good copy."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        reload_interval: float = RELOAD_INTERVAL,
        state_dir: str | os.PathLike[str] | None = None,
        listener: MapListener | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.reload_interval = reload_interval
        self.last_good = LastGood(state_dir, self.path) if state_dir is not None else None
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
        if self._watch_pid != _pid:
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
            if self._watch_pid == _pid:
                return
            self._watch_pid = _pid
        if self.reload_interval <= 0:
            return
        thread = threading.Thread(
            target=_watch,
            args=(weakref.ref(self), self.reload_interval),
            name="gateway-map-watcher",
            daemon=True,
        )
        thread.start()

    def check(self) -> bool:
        """Reload if the map's files changed since the last attempt; True if a new map is served."""
        with self._lock:
            if self._watched.fingerprint() == self._seen:
                return False
            return self._reload(event="reloaded")

    def _reload(self, *, event: str) -> bool:
        """Load the map once its files are quiet; swap it in, or record why not."""
        watched = self._watched
        settle = int(SETTLE * 1e9)
        deadline = time.monotonic() + MAX_SETTLE_WAIT
        previous: Fingerprint | None = None
        while True:
            started = _clock()
            before = watched.fingerprint()
            # Quiet: no change for SETTLE, by the files' ctimes or (a clock ahead of ours,
            # e.g. on a network share) by looking twice, SETTLE apart.
            if _newest_change(before) + settle > started and before != previous:
                if time.monotonic() + SETTLE > deadline:
                    return False  # still changing: the next check tries again
                previous = before
                time.sleep(SETTLE)
                continue
            attempt_at = datetime.now(UTC)
            try:
                new = load_map(self.path)
            except MapError as exc:
                self._failed(exc.problems, before, started, attempt_at)
                return False
            except Exception as exc:  # a fault in the loader must not kill the watcher
                log.exception("loading %s failed unexpectedly", self.path)
                problem = Problem(self.path, 0, f"internal error while loading: {exc!r}")
                self._failed((problem,), before, started, attempt_at)
                return False
            watched = Watched.of(new)
            after = watched.fingerprint()
            if _consistent(before, after, started - settle):
                return self._swap(new, watched, after, attempt_at, event)
            # A file changed during the load, or one the old map did not include was not
            # known to be quiet: look again with the new map's files.
            previous = None
            if time.monotonic() > deadline:
                return False

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
        added = [(path, _file_state(path)) for path in new_files]
        self._watched = Watched(self._watched.files + tuple(new_files), self._watched.patterns)
        self._seen = tuple(sorted([*before, *added]))
        if _newest_change(tuple(added)) + int(SETTLE * 1e9) > started:
            self._seen = None  # a problem file changed during the load: look again next time
        self._status = replace(
            old, last_attempt_at=attempt_at, last_attempt_ok=False, last_error=message
        )
        served = f" (still serving version {old.map.version})" if old.map else ""
        log.error("map %s not loaded%s:\n%s", self.path, served, _indent(message))
        self._notify("failed")

    def _fall_back(self) -> None:
        """Serve the last-known-good copy when the map on disk does not load at start."""
        last_good = self.last_good.load() if self.last_good is not None else None
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


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _watch(ref: weakref.ref[MapHolder], interval: float) -> None:
    """Check the holder's files every `interval` seconds, until the holder is gone."""
    while True:
        time.sleep(interval)
        holder = ref()
        if holder is None:
            return
        try:
            holder.check()
        except Exception:
            log.exception("checking the map for changes failed")
        del holder  # hold no reference while sleeping: the holder may be collected


# --- the last-known-good copy ---------------------------------------------------------------


def default_state_dir() -> str:
    """Return the default state directory: one per user under the system's temp directory."""
    return os.path.join(tempfile.gettempdir(), f"legacy-gateway-{os.geteuid()}")


class LastGood:
    """Copies of the last map that loaded, one folder per version, ``current`` pointing at one.

    Layout under ``state_dir/<map name>-<hash of its absolute path>/``: ``snap-<version>/``
    holds the map's files at their places relative to the map (includes of ``../x`` get
    a parent folder of their own) and ``manifest.json``; ``current`` is a symlink to the
    newest, replaced atomically; ``lock`` serialises the workers.
    """

    def __init__(self, state_dir: str | os.PathLike[str], map_path: str) -> None:
        absolute = os.path.abspath(map_path)
        digest = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(absolute))[:60]
        self.state_dir = os.fspath(state_dir)
        self.root = os.path.join(self.state_dir, f"{name}-{digest}")

    def save(self, redirect_map: RedirectMap, seen: Fingerprint) -> bool:
        """Copy the loaded map's files (unchanged since `seen`) and point ``current`` at them."""
        try:
            with self._locked():
                return self._save(redirect_map, seen)
        except OSError as exc:
            log.warning("could not keep a last-known-good copy in %s: %s", self.root, exc)
            return False

    def load(self) -> RedirectMap | None:
        """Load the last-known-good copy, or return None when there is none that loads."""
        try:
            with self._locked():
                snapshot = os.path.realpath(os.path.join(self.root, "current"))
                with open(os.path.join(snapshot, "manifest.json"), encoding="utf-8") as f:
                    manifest = json.load(f)
                loaded = load_map(os.path.join(snapshot, manifest["main"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("the last-known-good copy in %s is unreadable: %s", self.root, exc)
            return None
        except MapError as exc:
            log.error(
                "the last-known-good copy in %s does not load:\n%s",
                self.root,
                _indent(describe_problems(exc.problems)),
            )
            return None
        if loaded.version != manifest.get("version"):
            log.error("the last-known-good copy in %s was altered; not using it", self.root)
            return None
        return loaded

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        _safe_dir(self.state_dir, private=False)
        _safe_dir(self.root, private=True)
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _save(self, redirect_map: RedirectMap, seen: Fingerprint) -> bool:
        name = f"snap-{redirect_map.version}"
        target = os.path.join(self.root, name)
        if not os.path.isdir(target):
            staging = tempfile.mkdtemp(prefix=".staging-", dir=self.root)
            try:
                main = self._copy_files(redirect_map, staging)
                if Watched.of(redirect_map).fingerprint() != seen:
                    return False  # the files changed after the load: the next load saves
                manifest = {
                    "main": main,
                    "version": redirect_map.version,
                    "source": os.path.abspath(redirect_map.path),
                    "saved_at": datetime.now(UTC).isoformat(),
                }
                with open(os.path.join(staging, "manifest.json"), "w", encoding="utf-8") as f:
                    json.dump(manifest, f, indent=2)
                    f.write("\n")
                os.rename(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)  # gone already when renamed
        link = os.path.join(self.root, f".current-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(name, link)
        os.replace(link, os.path.join(self.root, "current"))
        self._prune(name)
        return True

    @staticmethod
    def _copy_files(redirect_map: RedirectMap, staging: str) -> str:
        """Copy the map's files into `staging` at their places; return the main file's path."""
        base = os.path.dirname(os.path.abspath(redirect_map.path))
        relative = [os.path.relpath(os.path.abspath(f), base) for f in redirect_map.files]
        # Includes may climb out of the map's folder (../shared/x.csv): nest the main
        # file as deep as the deepest climb so that every copy lands inside `staging`.
        depth = max(_climb(r) for r in relative)
        home = os.path.join(staging, *(["_"] * depth))
        for source, rel in zip(redirect_map.files, relative, strict=True):
            dest = os.path.normpath(os.path.join(home, rel))
            if os.path.commonpath([dest, staging]) != staging:
                raise OSError(f"cannot place {source} inside the snapshot")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(source, dest)
        return os.path.relpath(os.path.join(home, relative[0]), staging)

    def _prune(self, keep: str) -> None:
        snapshots = []
        stale = time.time() - 600
        for entry in os.scandir(self.root):
            mtime = entry.stat(follow_symlinks=False).st_mtime
            if entry.name.startswith("snap-") and entry.name != keep:
                snapshots.append((mtime, entry.path))
            elif entry.name.startswith((".staging-", ".current-")) and mtime < stale:
                # Left behind by a worker killed while saving.
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
        snapshots.sort(reverse=True)
        for _, path in snapshots[KEEP_SNAPSHOTS - 1 :]:
            shutil.rmtree(path, ignore_errors=True)


def _safe_dir(path: str, *, private: bool) -> None:
    """Create `path` if missing; refuse one another user could plant a "last good" map in."""
    if private:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    else:
        os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise PermissionError(f"{path} is not a directory")
    if private:
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise PermissionError(f"{path} is not a private directory of this user")
    elif st.st_uid not in (os.geteuid(), 0) or (
        st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
    ):
        raise PermissionError(f"{path} can be written by other users")


def _climb(relative: str) -> int:
    """Return how many leading '..' a normalised relative path has."""
    parts = Path(relative).parts
    count = 0
    while count < len(parts) and parts[count] == "..":
        count += 1
    return count
