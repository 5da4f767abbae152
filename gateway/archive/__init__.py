"""The old site's own web archive (spec §8): reading WARC and WACZ files, and their index.

A package by job: ``reader`` (one file's records, strictly: ``ArchiveError`` names
the file and the broken record's offset) and ``index`` (captures keyed by canonical
URL, the CDXJ cache, the merge of a map's files into one ``ArchiveIndex``). The
names other modules use are re-exported here. Pure: no Flask.
"""

from __future__ import annotations

from gateway.archive.index import (
    EMPTY,
    ArchiveIndex,
    Capture,
    FileIndex,
    KeySettings,
    build_index,
    capture_key,
    default_index_dir,
    from_cdxj,
    to_cdxj,
)
from gateway.archive.reader import SUFFIXES, ArchiveError, Record, read_archive

__all__ = [
    "EMPTY",
    "SUFFIXES",
    "ArchiveError",
    "ArchiveIndex",
    "Capture",
    "FileIndex",
    "KeySettings",
    "Record",
    "build_index",
    "capture_key",
    "default_index_dir",
    "from_cdxj",
    "read_archive",
    "to_cdxj",
]
