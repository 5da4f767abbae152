"""The map's files as a reload sees them: what to watch, their fingerprint, and its checks.

Owns stat'ing the map's files, its web archives (spec §8) and their globs (``Watched``,
``Fingerprint``) and the two questions asked of fingerprints: did a load read the files
as they are now (``consistent``), and when did they last change (``newest_change``).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from gateway.mapfile import RedirectMap

# (path, (inode, size, mtime_ns, ctime_ns) or None when the file cannot be stat'ed)
FileState = tuple[int, int, int, int] | None
Fingerprint = tuple[tuple[str, FileState], ...]


@dataclass(frozen=True)
class Watched:
    """What a reload watches: files by stat, include globs by their matches."""

    files: tuple[str, ...]
    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, redirect_map: RedirectMap) -> Watched:
        """Return what to watch for a loaded map: its files, web archives and their globs."""
        return cls(
            redirect_map.files + redirect_map.archive_files,
            redirect_map.include_patterns + redirect_map.archive_patterns,
        )

    def fingerprint(self) -> Fingerprint:
        """Stat every file and every current match of the globs."""
        paths = set(self.files)
        for pattern in self.patterns:
            paths.update(glob.glob(pattern))
        return tuple((path, file_state(path)) for path in sorted(paths))


def file_state(path: str) -> FileState:
    """Return the file's inode, size, mtime and ctime, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    # ctime as well as mtime: `cp -p` or `touch -r` can put an old mtime on new content.
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def consistent(before: Fingerprint, after: Fingerprint, quiet_since: int) -> bool:
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


def newest_change(fingerprint: Fingerprint) -> int:
    """Return the newest ctime (ns) among the files that exist."""
    return max((state[3] for _, state in fingerprint if state is not None), default=0)
