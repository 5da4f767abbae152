"""The old site's own web archive (spec §8): reading WARC and WACZ files, and their index.

A package by job: ``reader`` (one file's records, strictly: ``ArchiveError`` names
the file and the broken record's offset), ``index`` (captures keyed by canonical
URL, the merge of a map's files into one ``ArchiveIndex``), ``cdxj`` (one file's
index kept as CDXJ in the cache folder) and ``values`` (the types those two share).
The names other modules use are re-exported here. Pure: no Flask.
"""

from __future__ import annotations

from gateway.archive.cdxj import default_index_dir, from_cdxj, to_cdxj
from gateway.archive.index import EMPTY, ArchiveIndex, Capture, build_index, capture_key
from gateway.archive.reader import SUFFIXES, ArchiveError, Record, read_archive
from gateway.archive.values import FileIndex, KeySettings

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
