"""The index of a map's web archives: captures keyed by canonical URL (spec §8).

Owns the capture key (host, path and the *set* of significant query parameters, in
the canonical form of §3 that requests get), the ``Capture`` value and the packed
``CaptureTable`` of those served, building one file's index from its records
(``gateway.archive.reader``), reused from the CDXJ cache while the file is unchanged
(``gateway.archive.cdxj``), and merging the files' indexes into the one
``ArchiveIndex`` a map serves: the latest ``WARC-Date`` wins, at equal dates the later
record of the later file; revisit records are resolved to the response whose payload
they repeat. The values shared with the cache (``KeySettings``, ``FileIndex``) are
``gateway.archive.values``'s; the cache is ``gateway.archive.cdxj``. Pure: no Flask.
"""

from __future__ import annotations

import itertools
import os
import stat
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import itemgetter
from typing import Any, overload
from urllib.parse import quote

from gateway.archive.cdxj import cache_path, read_cache, write_cache
from gateway.archive.reader import ArchiveError, Record, parse_date, read_archive
from gateway.archive.values import FileIndex, KeySettings
from gateway.canonical import LegacyURL, fold

__all__ = [
    "EMPTY",
    "ArchiveIndex",
    "Capture",
    "CaptureLookup",
    "CaptureTable",
    "FileIndex",
    "build_index",
    "capture_key",
    "index_file",
    "merge",
]

_KEY_SAFE = "/:@!$'()*+,=-._~"


def capture_key(url: LegacyURL, case_sensitive: bool) -> str:
    """Return the key of a canonical URL: host, path and the set of significant parameters."""
    pairs = sorted({(p.key, fold(p.value, case_sensitive)) for p in url.last_params()})
    key = url.host + quote(url.path, safe=_KEY_SAFE)
    if pairs:
        key += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return key


@dataclass(frozen=True, slots=True)
class Capture:
    """One servable capture: where its record is, what it was, and when (spec §8)."""

    key: str
    url: str  # the capture's own URL (WARC-Target-URI)
    date: str  # WARC-Date of this capture (a revisit's own date)
    file: str  # the archive file, as the map names it
    path: str  # the archive file on disk
    offset: int  # of the record holding the payload (a revisit's original)
    length: int
    status: int
    mime: str
    location: str
    payload_length: int
    kind: str  # "response" or "revisit"

    @property
    def is_redirect(self) -> bool:
        """Say whether this capture is a captured redirect (3xx with a Location)."""
        return 300 <= self.status < 400


# The captures served, packed: one text per capture, its fields joined by "\n" (no WARC or
# HTTP header value holds one), all in one bytes object, ordered by the key's hash.
_SEP = "\n"
_KIND_CODES = {"response": "r", "revisit": "v"}
_KIND_NAMES = {code: name for name, code in _KIND_CODES.items()}


class CaptureLookup(Mapping[str, Capture]):
    """Captures by key, each built when it is asked for: ``get`` is the one lookup."""

    __slots__ = ()

    def get(self, key: str, default: Any = None) -> Any:
        """Return the capture of a key, or `default`."""
        raise NotImplementedError

    def __getitem__(self, key: str) -> Capture:
        found: Capture | None = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None


class CaptureTable(CaptureLookup):
    """The captures served, by key, kept packed: a ``Capture`` is built at each lookup.

    100,000 captures as ``Capture`` objects in a dict cost a worker about 100 MB; packed,
    in a few large objects (one bytes, two arrays) that leave no small object behind,
    about 25 MB (``bench/archive.py``). A lookup hashes the key, bisects the sorted
    hashes, and reads the entry back. A capture that cannot be packed is kept as it is.
    """

    __slots__ = ("_blob", "_files", "_hashes", "_odd", "_starts")

    def __init__(
        self,
        files: Sequence[tuple[str, str]] = (),
        entries: Iterable[tuple[str, int, Record, int, Record]] = (),
    ) -> None:
        """Pack (key, file number, record, payload's file number, payload record) entries."""
        self._files = tuple(files)  # (shown name, path) by file number
        self._odd: dict[str, Capture] = {}
        packed: list[tuple[int, bytes]] = []
        for key, _, record, number, payload in entries:
            head = (
                f"{number} {payload.offset} {payload.length} {payload.status}"
                f" {payload.payload_length} {_KIND_CODES[record.kind]}"
            )
            text = _SEP.join((key, head, record.date, record.url, payload.mime, payload.location))
            if text.count(_SEP) != 5:  # a free text holds the separator
                self._odd[key] = self._capture(key, record, number, payload)
                continue
            packed.append((hash(key), text.encode("utf-8", "surrogatepass")))
        packed.sort(key=itemgetter(0))
        self._hashes = array("q", (h for h, _ in packed))
        self._starts = array("Q", itertools.accumulate((len(b) for _, b in packed), initial=0))
        self._blob = b"".join(b for _, b in packed)

    def _capture(self, key: str, record: Record, number: int, payload: Record) -> Capture:
        shown, path = self._files[number]
        return Capture(
            key=key,
            url=record.url,
            date=record.date,
            file=shown,
            path=path,
            offset=payload.offset,
            length=payload.length,
            status=payload.status,
            mime=payload.mime,
            location=payload.location,
            payload_length=payload.payload_length,
            kind=record.kind,
        )

    def _entry(self, i: int) -> list[str]:
        return (
            self._blob[self._starts[i] : self._starts[i + 1]]
            .decode("utf-8", "surrogatepass")
            .split(_SEP)
        )

    def get(self, key: str, default: Any = None) -> Any:
        """Return the capture of a key, or `default`."""
        h = hash(key)
        hashes = self._hashes
        i = bisect_left(hashes, h)
        while i < len(hashes) and hashes[i] == h:
            fields = self._entry(i)
            if fields[0] == key:
                _, head, date, url, mime, location = fields
                number, offset, length, status, payload_length, kind = head.split(" ")
                file, path = self._files[int(number)]
                return Capture(
                    key,
                    url,
                    date,
                    file,
                    path,
                    int(offset),
                    int(length),
                    int(status),
                    mime,
                    location,
                    int(payload_length),
                    _KIND_NAMES[kind],
                )
            i += 1
        return self._odd.get(key, default)

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self._hashes)):
            yield self._entry(i)[0]
        yield from self._odd

    def __len__(self) -> int:
        return len(self._hashes) + len(self._odd)


@dataclass(frozen=True)
class ArchiveIndex:
    """The captures a map serves, by key; and per file, what was read and skipped."""

    captures: Mapping[str, Capture] = field(default_factory=dict)
    files: tuple[FileIndex, ...] = ()

    def __len__(self) -> int:
        return len(self.captures)

    def lookup(self, url: LegacyURL, case_sensitive: bool) -> Capture | None:
        """Return the capture of a canonical URL, or None."""
        if not self.captures:
            return None
        return self.captures.get(capture_key(url, case_sensitive))

    def served_by(self, file: str) -> int:
        """Return how many of the captures served are answered by `file`'s records."""
        return sum(f.served for f in self.files if f.file == file)


EMPTY = ArchiveIndex()


def index_file(path: str, shown: str, settings: KeySettings, cache_dir: str | None) -> FileIndex:
    """Return one archive file's index: from the cache while the file is unchanged, else built."""
    try:
        before = os.stat(path)
    except OSError as exc:
        raise ArchiveError(shown, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(before.st_mode):
        raise ArchiveError(shown, "not a regular file")
    cache = cache_path(cache_dir, path, before, settings) if cache_dir else None
    if cache is not None:
        cached = read_cache(cache, shown)
        if cached is not None:
            return cached
    skipped: Counter[str] = Counter()
    keyed: list[tuple[str, Record]] = []
    for record in read_archive(path, shown, skipped):
        url = settings.url_of(record.url)
        if isinstance(url, str):
            skipped[url] += 1
        elif record.kind == "response" and not _servable_status(record):
            skipped[f"HTTP status {record.status}"] += 1
        else:
            keyed.append((capture_key(url, settings.case_sensitive), record))
    after = os.stat(path)
    if (after.st_size, after.st_mtime_ns, after.st_ino) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    ):
        raise ArchiveError(shown, "the file changed while it was being read; try again")
    built = FileIndex(shown, tuple(keyed), dict(skipped))
    if cache is not None:
        write_cache(cache, built)
    return built


def _servable_status(record: Record) -> bool:
    return record.status == 200 or (300 <= record.status < 400 and bool(record.location))


def merge(indexes: Sequence[FileIndex], paths: Sequence[str]) -> ArchiveIndex:
    """Merge the files' indexes (in the map's order): latest capture per key, revisits resolved."""
    originals = _Originals(indexes)
    dates: dict[str, datetime | None] = {}
    # The winner of each key: (date, file number, position), its record, its payload's place.
    best: dict[str, tuple[tuple[datetime, int, int], Record, int, Record]] = {}
    unresolved = [0] * len(indexes)
    candidates = [0] * len(indexes)
    for number, index in enumerate(indexes):
        for position, (key, record) in enumerate(index.records):
            payload_number, payload = number, record
            if record.kind == "revisit":
                original = originals.find(record)
                if original is None or not _servable_status(original[1]):
                    unresolved[number] += 1
                    continue
                payload_number, payload = original
            when = dates.get(record.date, _UNSEEN)
            if when is _UNSEEN:
                when = dates[record.date] = parse_date(record.date)
            if when is None:
                unresolved[number] += 1
                continue
            candidates[number] += 1
            rank = (when, number, position)
            old = best.get(key)
            if old is None or rank >= old[0]:
                best[key] = (rank, record, payload_number, payload)
    served = [0] * len(indexes)
    for rank, *_ in best.values():
        served[rank[1]] += 1
    files = [(index.file, path) for index, path in zip(indexes, paths, strict=True)]
    table = CaptureTable(files, ((k, r[1], rec, n, p) for k, (r, rec, n, p) in best.items()))
    merged = []
    for number, index in enumerate(indexes):
        skipped = dict(index.skipped)
        if unresolved[number]:
            skipped["revisit of a payload not in the archive"] = unresolved[number]
        merged.append(
            FileIndex(
                index.file,
                index.records,
                skipped,
                served=served[number],
                superseded=candidates[number] - served[number],
            )
        )
    return ArchiveIndex(table, tuple(merged))


_UNSEEN = datetime.min


class _Originals:
    """The responses a revisit may repeat, by (URL, date) and by payload digest: built lazily."""

    def __init__(self, indexes: Sequence[FileIndex]) -> None:
        self.indexes = indexes
        self.by_url_date: dict[tuple[str, str], tuple[int, Record]] | None = None
        self.by_digest: dict[str, tuple[int, Record]] = {}

    def find(self, revisit: Record) -> tuple[int, Record] | None:
        """Return (file number, response) of the payload a revisit repeats, or None."""
        if self.by_url_date is None:
            self.by_url_date = {}
            for number, index in enumerate(self.indexes):
                for _, record in index.records:
                    if record.kind == "response":
                        if record.digest:
                            self.by_digest.setdefault(record.digest, (number, record))
                        self.by_url_date[(record.url, record.date)] = (number, record)
        found = self.by_url_date.get((revisit.refers_url, revisit.refers_date))
        if found is None and revisit.digest:
            found = self.by_digest.get(revisit.digest)
        return found


class _Reread(Sequence[tuple[str, Record]]):
    """A merged file's records, read again (from the cache) only when asked for: ops, tests."""

    def __init__(self, load: Callable[[], Sequence[tuple[str, Record]]]) -> None:
        self._load = load
        self._records: Sequence[tuple[str, Record]] | None = None

    def _get(self) -> Sequence[tuple[str, Record]]:
        if self._records is None:
            self._records = self._load()
        return self._records

    @overload
    def __getitem__(self, i: int) -> tuple[str, Record]: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[str, Record]]: ...
    def __getitem__(self, i: int | slice) -> Any:
        return self._get()[i]

    def __len__(self) -> int:
        return len(self._get())


def build_index(
    files: Iterable[tuple[str, str]], settings: KeySettings, cache_dir: str | None
) -> tuple[ArchiveIndex, list[ArchiveError]]:
    """Index each (path, shown name) and merge; return the index and each file's error.

    The merged index keeps no record of its own: each file's ``records`` are read again
    when asked for.
    """
    indexes: list[FileIndex] = []
    paths: list[str] = []
    errors: list[ArchiveError] = []
    for path, shown in files:
        try:
            indexes.append(index_file(path, shown, settings, cache_dir))
            paths.append(path)
        except ArchiveError as exc:
            errors.append(exc)
    merged = merge(indexes, paths)
    del indexes
    kept = tuple(
        replace(f, records=_Reread(_reader(path, f.file, settings, cache_dir)))
        for f, path in zip(merged.files, paths, strict=True)
    )
    return ArchiveIndex(merged.captures, kept), errors


def _reader(
    path: str, shown: str, settings: KeySettings, cache_dir: str | None
) -> Callable[[], Sequence[tuple[str, Record]]]:
    return lambda: index_file(path, shown, settings, cache_dir).records
