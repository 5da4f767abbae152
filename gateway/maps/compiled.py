"""Compile each map version once per machine, off every worker, and open it in each (issue 14).

Owns when a map is compiled and by which process. A worker never validates a big map
itself: it asks ``Compiled.load``, which

1. reads ``compiled.json``, the last compile's result: the files it read, their
   fingerprint (``maps.files``) then, and either its table or its problems. When
   those files are unchanged, the result is this map's: open the table (or raise the
   same problems) without compiling;
2. otherwise takes ``compile.lock`` (one compile at a time, whatever the number of
   workers), looks again (another worker may have just compiled it), and runs the
   compiler in a child process, ``python -m gateway.maps.compiled``: its CPU and its
   memory (a million rules take over a gigabyte while they are validated) are never
   a worker's, and the worker's threads keep serving the map they have meanwhile.

The compiler loads and validates the map with ``load_map`` (every problem as
FILE:LINE, the same messages), writes its table with ``gateway.table.ensure_table``
(atomic; an unchanged version's table is not built again), then replaces
``compiled.json`` atomically. A compile that is killed or fails leaves the result
and the tables as they were: the worker reports it and keeps serving. A worker
starting on a broken map serves the last-known-good copy (``LastGood``) from the
table of its version, its rules naming the copied files (``last_good``).

Layout, in the map's folder of the state directory (``LastGood.root``):
``tables/rules-VERSION.lmdb``, ``compiled.json``, ``compile.lock``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.mapfile import MapError, Problem, RedirectMap, load_map, with_captures
from gateway.maps.files import Fingerprint, Watched, newest_change
from gateway.maps.lastgood import LastGood, safe_dir
from gateway.table import TableError, ensure_table, open_table, table_path

log = logging.getLogger("gateway.maps")

RESULT = "compiled.json"
TABLES = "tables"
KEEP_TABLES = 3  # the served table and two before it: a worker may still be opening one
COMPILE_TIMEOUT = 900.0  # seconds; a million rules compile in about 30 s on 2 cores
# A file whose ctime is later than this before the compile started may have changed
# while it was read (ctimes come from the kernel's coarse clock, a few ms behind).
_CLOCK_SLACK_NS = 50_000_000


class CompileFailed(Exception):
    """The compiler itself failed (killed, crashed, out of disk): not a problem of the map."""


@dataclass(frozen=True)
class Result:
    """What one compile found: the files it read, and its table or its problems."""

    map_path: str
    watched: Watched
    fingerprint: Fingerprint | None  # None: a file changed while it was read
    version: str | None = None
    table: str | None = None
    problems: tuple[Problem, ...] = ()

    def is_current(self, map_path: str) -> bool:
        """Say whether this result is of this map as its files are now."""
        return (
            self.fingerprint is not None
            and self.map_path == os.path.abspath(map_path)
            and self.watched.fingerprint() == self.fingerprint
        )

    def to_json(self) -> dict[str, Any]:
        """Return the result as JSON values."""
        return {
            "map": self.map_path,
            "files": self.watched.files,
            "patterns": self.watched.patterns,
            "fingerprint": self.fingerprint,
            "version": self.version,
            "table": self.table,
            "problems": [[p.file, p.line, p.message, p.severity] for p in self.problems],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """Read a result written by ``to_json`` (KeyError, TypeError or ValueError if not)."""
        raw = data["fingerprint"]
        fingerprint = (
            None
            if raw is None
            else tuple((path, None if s is None else (s[0], s[1], s[2], s[3])) for path, s in raw)
        )
        return cls(
            map_path=str(data["map"]),
            watched=Watched(tuple(data["files"]), tuple(data["patterns"])),
            fingerprint=fingerprint,
            version=data["version"],
            table=data["table"],
            problems=tuple(
                Problem(str(f), int(n), str(m), str(s)) for f, n, m, s in data["problems"]
            ),
        )


class Compiled:
    """The compiled versions of one map in a state directory, and how a worker gets one."""

    def __init__(self, map_path: str, root: str, index_dir: str | None) -> None:
        self.map_path = map_path
        self.root = Path(root)
        self.index_dir = index_dir

    @classmethod
    def of(cls, map_path: str, state_dir: str) -> Compiled:
        """Return the compiled versions of a map in a state directory (the server's layout)."""
        root = LastGood(state_dir, map_path).root
        return cls(map_path, root, os.path.join(state_dir, "archive-index"))

    def compile_now(self) -> Result:
        """Compile the map in this process unless its current result is there (the start check)."""
        with self._locked():
            result = self._read(RESULT)
            if result is not None and result.is_current(self.map_path):
                return result
            return compile_map(self.map_path, str(self.root), self.index_dir)

    def load(self) -> RedirectMap:
        """Return the map as its files are now, compiled at most once; MapError if broken."""
        result = self._read(RESULT)
        if result is None or not result.is_current(self.map_path):
            with self._locked():
                result = self._read(RESULT)
                if result is None or not result.is_current(self.map_path):
                    result = self._run_compiler()
        if result.table is None:
            raise MapError(list(result.problems), result.watched.files, result.watched.patterns)
        return self._open(self.root / TABLES / result.table, result.version)

    def last_good(self, copies: LastGood) -> RedirectMap | None:
        """Return the last-known-good copy from its compiled table, or None if it has none.

        The table of the copy's version (kept since that version was served) is opened
        with its rules naming the copied files, as ``LastGood.load`` would name them,
        without validating the copy again in this worker.
        """
        found = copies.current_copy()
        if found is None:
            return None
        version, place = found
        path = table_path(self.root / TABLES, version)
        if not path.exists():
            return None
        try:
            return self._open(path, version, place, archive_optional=True)
        except (TableError, MapError, OSError) as exc:
            log.error("the compiled last-known-good copy %s cannot be opened: %s", path, exc)
            return None

    def _open(
        self,
        path: Path,
        version: str | None,
        rename: Callable[[str], str] | None = None,
        *,
        archive_optional: bool = False,
    ) -> RedirectMap:
        opened = open_table(path, version=version, rename=rename)
        if not archive_optional:
            return opened  # its captures are in the table, as its rules are
        # A last-known-good copy serves on without an archive file that no longer reads,
        # and says which (archive_problems): its captures are checked against the files.
        archives = tuple(zip(opened.archive_files, opened.archive_names, strict=True))
        return with_captures(opened, archives, self.index_dir, archive_optional=True)

    def _read(self, name: str) -> Result | None:
        try:
            with open(self.root / name, encoding="utf-8") as f:
                return Result.from_json(json.load(f))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the unreadable compile result %s: %s", self.root / name, exc)
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # A table someone else could write would be a map they could plant: as LastGood.
        safe_dir(str(self.root.parent), private=False)
        safe_dir(str(self.root), private=True)
        fd = os.open(self.root / "compile.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _run_compiler(self) -> Result:
        """Compile in a child process (this one holds the lock); return what it wrote."""
        command = [sys.executable, "-m", "gateway.maps.compiled", self.map_path, str(self.root)]
        if self.index_dir is not None:
            command += ["--index-dir", self.index_dir]
        started = time.monotonic()
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CompileFailed(f"the compiler did not finish: {exc}") from exc
        if done.returncode not in (0, 1):  # 1: the map has problems, written in the result
            tail = done.stderr.strip().splitlines()[-3:]
            raise CompileFailed(
                f"the compiler exited with status {done.returncode}: {' | '.join(tail)}"
            )
        result = self._read(RESULT)
        if result is None:
            raise CompileFailed("the compiler wrote no result")
        log.info(
            "map %s compiled in %.1f s: %s",
            self.map_path,
            time.monotonic() - started,
            f"version {result.version}" if result.table else f"{len(result.problems)} problem(s)",
        )
        return result


def compile_map(map_path: str, root: str, index_dir: str | None) -> Result:
    """Validate the map, write its table and record the result (the caller holds the lock)."""
    started = time.time_ns()
    tables = Path(root) / TABLES
    try:
        redirect_map = load_map(map_path, index_dir=index_dir)
    except MapError as exc:
        named = {p.file for p in exc.problems if p.file}
        watched = _absolute(Watched((map_path, *exc.files, *named), exc.include_patterns))
        result = Result(
            os.path.abspath(map_path), watched, _settled(watched, started), problems=exc.problems
        )
        _write(Path(root) / RESULT, result)
        return result
    table = ensure_table(redirect_map, tables)
    watched = _absolute(Watched.of(redirect_map))
    result = Result(
        os.path.abspath(map_path),
        watched,
        _settled(watched, started),
        version=redirect_map.version,
        table=table.name,
    )
    _write(Path(root) / RESULT, result)
    _prune(tables, keep=table.name)
    return result


def _absolute(watched: Watched) -> Watched:
    """Return what is watched with absolute paths: a result holds for any working directory."""
    files = tuple(dict.fromkeys(os.path.abspath(f) for f in watched.files))
    return Watched(files, tuple(os.path.abspath(p) for p in watched.patterns))


def _settled(watched: Watched, started: int) -> Fingerprint | None:
    """Return the files' fingerprint, or None if one may have changed while it was read."""
    fingerprint = watched.fingerprint()
    if newest_change(fingerprint) > started - _CLOCK_SLACK_NS:
        return None  # still a result for this worker; the others compile again
    return fingerprint


def _write(path: Path, result: Result) -> None:
    """Replace a result file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(result.to_json(), f, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _prune(tables: Path, keep: str) -> None:
    """Remove all but the newest tables, and what killed compiles left half-written."""
    found = sorted(tables.glob("rules-*.lmdb"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in [p for p in found if p.name != keep][KEEP_TABLES - 1 :]:
        old.unlink(missing_ok=True)  # a worker that has it open keeps its pages
    hour_ago = time.time() - 3600
    for leftover in tables.glob(".rules-*"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < hour_ago:  # not one being written now
                leftover.unlink()


def main(argv: list[str] | None = None) -> int:
    """Compile a map into the state directory: 0 compiled, 1 the map has problems."""
    parser = argparse.ArgumentParser(prog="python -m gateway.maps.compiled")
    parser.add_argument("map")
    parser.add_argument("root", help="the map's folder in the state directory")
    parser.add_argument("--index-dir", default=None)
    args = parser.parse_args(argv)
    result = compile_map(args.map, args.root, args.index_dir)
    return 0 if result.table is not None else 1


if __name__ == "__main__":
    sys.exit(main())
