"""The last-known-good copy: the files of the last map that loaded, kept in a state directory.

Owns the state directory's layout, its lock and its safety checks, copying a loaded
map's files there, switching the ``current`` symlink, pruning old copies and loading
the copy back, so that a worker started later (gunicorn's HUP) can serve it when the
map on disk is broken.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from gateway.mapfile import MapError, RedirectMap, load_map
from gateway.maps.files import Fingerprint, Watched
from gateway.maps.status import describe_problems, indent

# The package's name, not this module's: operators grep their logs for "gateway.maps".
log = logging.getLogger("gateway.maps")

KEEP_SNAPSHOTS = 3  # last-known-good copies kept per map (the current one included)


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

    def __init__(
        self, state_dir: str | os.PathLike[str], map_path: str, index_dir: str | None = None
    ) -> None:
        absolute = os.path.abspath(map_path)
        digest = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(absolute))[:60]
        self.state_dir = os.fspath(state_dir)
        self.root = os.path.join(self.state_dir, f"{name}-{digest}")
        self.index_dir = index_dir

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
                # The web archives are not copied (they can be gigabytes): the copy reads
                # them where the map found them, and serves without one that no longer reads.
                archive_base = manifest.get("archive_base")
                loaded = load_map(
                    os.path.join(snapshot, manifest["main"]),
                    archive_base=archive_base if isinstance(archive_base, str) else None,
                    index_dir=self.index_dir,
                    archive_optional=True,
                )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("the last-known-good copy in %s is unreadable: %s", self.root, exc)
            return None
        except MapError as exc:
            log.error(
                "the last-known-good copy in %s does not load:\n%s",
                self.root,
                indent(describe_problems(exc.problems)),
            )
            return None
        expected = manifest.get("files_version")
        found = loaded.files_version if expected is not None else loaded.version
        if found != (expected if expected is not None else manifest.get("version")):
            log.error("the last-known-good copy in %s was altered; not using it", self.root)
            return None
        return loaded

    def current_copy(self) -> tuple[str, Callable[[str], str]] | None:
        """Return the version of the current copy and where each of its map's files lies in it.

        For a compiled table of that version (``maps.compiled``): served as the copy, its
        rules name the copied files. None when there is no readable copy.
        """
        try:
            with self._locked():
                snapshot = os.path.realpath(os.path.join(self.root, "current"))
                with open(os.path.join(snapshot, "manifest.json"), encoding="utf-8") as f:
                    manifest = json.load(f)
            version, main, source = manifest["version"], manifest["main"], manifest["source"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("the last-known-good copy in %s is unreadable: %s", self.root, exc)
            return None
        home = os.path.dirname(os.path.join(snapshot, main))
        base = os.path.dirname(source)

        def place(file: str) -> str:  # as _copy_files placed it
            return os.path.normpath(
                os.path.join(home, os.path.relpath(os.path.abspath(file), base))
            )

        return str(version), place

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        safe_dir(self.state_dir, private=False)
        safe_dir(self.root, private=True)
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
                    "files_version": redirect_map.files_version,
                    "source": os.path.abspath(redirect_map.path),
                    "archive_base": os.path.dirname(os.path.abspath(redirect_map.path)),
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


def safe_dir(path: str, *, private: bool) -> None:
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
