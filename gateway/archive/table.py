"""The captures of a compiled map (issue 14), kept in its LMDB table beside its rules.

Owns how the captures a map serves (``ArchiveIndex.captures``, after the merge: the
latest date won, revisits resolved) are written into the map's table by
``gateway.table.build_table`` and read back by every worker as a ``Mapping`` over the
same file: a worker opening a compiled map reads neither the archives' CDXJ caches
nor their records, and holds no capture in memory but the one it is answering.

Keys: ``\\x02`` and the capture key (``capture_key``; ``\\x02\\x01`` and its BLAKE2b-256
digest past 400 bytes), so the captures sort after every rule key and apart from
them. Value: a JSON list [key, url, date, file number, offset, length, status,
mime, location, payload length, kind]; the files (shown name, path) by number are
in the table's meta. Pure: no Flask.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from gateway.archive.index import ArchiveIndex, Capture, CaptureLookup

PREFIX = b"\x02"  # no host, and so no rule key, begins with it
MAX_KEY = 400  # bytes; LMDB's own limit is 511


def bounded_key(raw: bytes) -> bytes:
    """Return a table key as it is, or past MAX_KEY bytes as ``\\x01`` and its digest."""
    if len(raw) > MAX_KEY:
        return b"\x01" + hashlib.blake2b(raw, digest_size=32).digest()
    return raw


def capture_key(key: str) -> bytes:
    """Return the table key of a capture key."""
    return PREFIX + bounded_key(key.encode("utf-8", "surrogatepass"))


def capture_rows(index: ArchiveIndex) -> tuple[list[tuple[bytes, list[Any]]], dict[str, Any]]:
    """Return the table rows of a map's captures, and what the meta must say of them."""
    files: dict[tuple[str, str], int] = {}
    rows = []
    for c in index.captures.values():
        number = files.setdefault((c.file, c.path), len(files))
        record = [c.key, c.url, c.date, number, c.offset, c.length, c.status, c.mime]
        rows.append((capture_key(c.key), [*record, c.location, c.payload_length, c.kind]))
    return rows, {"count": len(rows), "files": list(files)}


class TableCaptures(CaptureLookup):
    """The captures of a compiled map, by capture key, read from its table at each lookup."""

    def __init__(self, env: Any, meta: dict[str, Any]) -> None:
        self._env = env
        self._count = int(meta["count"])
        self._files = tuple((str(shown), str(path)) for shown, path in meta["files"])

    def _capture(self, raw: bytes) -> Capture:
        key, url, date, number, offset, length, status, mime, location, size, kind = json.loads(raw)
        shown, path = self._files[number]
        return Capture(
            key, url, date, shown, path, offset, length, status, mime, location, size, kind
        )

    def get(self, key: str, default: Any = None) -> Any:
        """Return the capture of a key, or `default`."""
        with self._env.begin(buffers=False) as txn:
            raw = txn.get(capture_key(key))
        if raw is None:
            return default
        found = self._capture(raw)
        return found if found.key == key else default

    def _walk(self) -> Iterator[Capture]:
        with self._env.begin(buffers=False) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(PREFIX):
                return
            for key, raw in cursor:
                if not key.startswith(PREFIX):
                    return
                yield self._capture(raw)

    def __iter__(self) -> Iterator[str]:
        for capture in self._walk():
            yield capture.key

    def values(self) -> Iterator[Capture]:  # type: ignore[override]
        """Yield every capture, in table order (one read each, not a lookup per key)."""
        return self._walk()

    def __len__(self) -> int:
        return self._count
