"""The index of a map's web archives: captures keyed by canonical URL (spec §8), kept as CDXJ.

Owns the capture key (host, path and the *set* of significant query parameters, in
the canonical form of §3 that requests get), the ``Capture`` value, building one
file's index from its records (``gateway.archive.reader``) and keeping it as CDXJ
text in a cache folder, and merging the files' indexes into the one ``ArchiveIndex``
a map serves: the latest ``WARC-Date`` wins, at equal dates the later record of the
later file; revisit records are resolved to the response whose payload they repeat.

The cache: one ``.cdxj`` file per archive file, named by the archive's absolute path,
size, inode and modification time and by the map's settings that shape a key (case
rule, ignored query names, served hosts), so an index is reused while the file is
unchanged and rebuilt when it changes. Kept in a private folder of the service user
(by default ``archive-index/`` in the gateway's state directory, beside the
last-known-good copies), written atomically, so that every worker of a machine
shares one build and a file planted by another user is never read. Pure: no Flask.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from gateway.archive.reader import ArchiveError, Record, parse_date, read_archive
from gateway.canonical import LegacyURL, Malformed, fold, parse_split, split_target

log = logging.getLogger("gateway.archive")

CDXJ_VERSION = 1
_KEY_SAFE = "/:@!$'()*+,=-._~"
_URI_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def default_index_dir() -> str:
    """Return the index cache folder: ``archive-index`` in GATEWAY_STATE_DIR or the temp default."""
    state = os.environ.get("GATEWAY_STATE_DIR", "")
    if not state or state.lower() == "off":
        state = os.path.join(tempfile.gettempdir(), f"legacy-gateway-{os.geteuid()}")
    return os.path.join(state, "archive-index")


def capture_key(url: LegacyURL, case_sensitive: bool) -> str:
    """Return the key of a canonical URL: host, path and the set of significant parameters."""
    pairs = sorted({(p.key, fold(p.value, case_sensitive)) for p in url.last_params()})
    key = url.host + quote(url.path, safe=_KEY_SAFE)
    if pairs:
        key += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    return key


@dataclass(frozen=True)
class KeySettings:
    """What shapes a capture's key: the map's host table, case rule and ignored names."""

    host_of: Callable[[str], str | None]
    case_sensitive: bool
    is_ignored: Callable[[str], bool]
    fingerprint: str  # a hash of the settings above: part of each cached index's name

    def url_of(self, uri: str) -> LegacyURL | str:
        """Return a target URI's canonical URL, or why it is not served (a skip reason)."""
        if not uri.isascii():
            uri = quote(uri, safe=_URI_SAFE)  # an IRI: its characters as UTF-8 escapes
        try:
            authority, raw_path, raw_query = split_target(uri)
        except Malformed:
            return "target URI not http(s)"
        host = self.host_of(authority or "")
        if host is None:
            return "host not served by the map"
        try:
            return parse_split(
                host,
                raw_path,
                raw_query,
                case_sensitive=self.case_sensitive,
                is_ignored=self.is_ignored,
            )
        except Malformed as exc:
            return f"target URI malformed ({exc})"


@dataclass(frozen=True, slots=True)
class Capture:
    """One servable capture: where its record is, what it was, and when (spec §8)."""

    key: str
    url: str  # the capture's own URL (WARC-Target-URI)
    date: str  # WARC-Date of this capture (a revisit's own date)
    sort: str  # the date as a sortable UTC text
    file: str  # the archive file, as the map names it
    path: str  # the archive file on disk
    offset: int  # of the record holding the payload (a revisit's original)
    length: int
    status: int
    mime: str
    location: str
    payload_length: int
    kind: str  # "response" or "revisit"
    order: int = 0  # the file's place in the list, then the record's: the tie-break

    @property
    def is_redirect(self) -> bool:
        """Say whether this capture is a captured redirect (3xx with a Location)."""
        return 300 <= self.status < 400


@dataclass(frozen=True)
class FileIndex:
    """One archive file's captures (revisits unresolved) and what was skipped, and why."""

    file: str
    records: tuple[tuple[str, Record], ...]  # (key, record), in file order
    skipped: dict[str, int]


@dataclass(frozen=True)
class ArchiveIndex:
    """The captures a map serves, by key; and per file, what was read and skipped."""

    captures: dict[str, Capture] = field(default_factory=dict)
    files: tuple[FileIndex, ...] = ()

    def __len__(self) -> int:
        return len(self.captures)

    def lookup(self, url: LegacyURL, case_sensitive: bool) -> Capture | None:
        """Return the capture of a canonical URL, or None."""
        if not self.captures:
            return None
        return self.captures.get(capture_key(url, case_sensitive))

    def served_by(self, file: str) -> int:
        """Return how many of the captures served come from `file`."""
        return sum(1 for c in self.captures.values() if c.file == file)


EMPTY = ArchiveIndex()


def index_file(path: str, shown: str, settings: KeySettings, cache_dir: str | None) -> FileIndex:
    """Return one archive file's index: from the cache while the file is unchanged, else built."""
    try:
        before = os.stat(path)
    except OSError as exc:
        raise ArchiveError(shown, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(before.st_mode):
        raise ArchiveError(shown, "not a regular file")
    cache = _cache_path(cache_dir, path, before, settings) if cache_dir else None
    if cache is not None:
        cached = _read_cache(cache, shown)
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
        _write_cache(cache, built)
    return built


def _servable_status(record: Record) -> bool:
    return record.status == 200 or (300 <= record.status < 400 and bool(record.location))


def merge(indexes: Sequence[FileIndex], paths: Sequence[str]) -> ArchiveIndex:
    """Merge the files' indexes (in the map's order): latest capture per key, revisits resolved."""
    # (shown name, path, record) of each response, by payload digest and by (URL, date).
    by_digest: dict[str, tuple[str, str, Record]] = {}
    by_url_date: dict[tuple[str, str], tuple[str, str, Record]] = {}
    for index, path in zip(indexes, paths, strict=True):
        for _, record in index.records:
            if record.kind == "response":
                if record.digest:
                    by_digest.setdefault(record.digest, (index.file, path, record))
                by_url_date[(record.url, record.date)] = (index.file, path, record)
    captures: dict[str, Capture] = {}
    files: list[FileIndex] = []
    for number, (index, path) in enumerate(zip(indexes, paths, strict=True)):
        unresolved = 0
        for position, (key, record) in enumerate(index.records):
            original: tuple[str, str, Record] | None = (index.file, path, record)
            if record.kind == "revisit":
                original = by_url_date.get((record.refers_url, record.refers_date))
                if original is None and record.digest:
                    original = by_digest.get(record.digest)
                if original is None or not _servable_status(original[2]):
                    unresolved += 1
                    continue
            assert original is not None
            capture = _capture(key, record, original, number, position)
            if capture is None:
                unresolved += 1
                continue
            old = captures.get(key)
            if old is None or (capture.sort, capture.order) >= (old.sort, old.order):
                captures[key] = capture
        skipped = dict(index.skipped)
        if unresolved:
            skipped["revisit of a payload not in the archive"] = unresolved
        files.append(FileIndex(index.file, index.records, skipped))
    return ArchiveIndex(captures, tuple(files))


def _capture(
    key: str,
    record: Record,
    original: tuple[str, str, Record],
    number: int,
    position: int,
) -> Capture | None:
    when = parse_date(record.date)
    if when is None:
        return None
    shown, path, payload = original
    return Capture(
        key=key,
        url=record.url,
        date=record.date,
        sort=when.strftime("%Y%m%d%H%M%S%f"),
        file=shown,
        path=path,
        offset=payload.offset,
        length=payload.length,
        status=payload.status,
        mime=payload.mime,
        location=payload.location,
        payload_length=payload.payload_length,
        kind=record.kind,
        order=number * 10_000_000 + position,
    )


def build_index(
    files: Iterable[tuple[str, str]], settings: KeySettings, cache_dir: str | None
) -> tuple[ArchiveIndex, list[ArchiveError]]:
    """Index each (path, shown name) and merge; return the index and each file's error."""
    indexes: list[FileIndex] = []
    paths: list[str] = []
    errors: list[ArchiveError] = []
    for path, shown in files:
        try:
            indexes.append(index_file(path, shown, settings, cache_dir))
            paths.append(path)
        except ArchiveError as exc:
            errors.append(exc)
    return merge(indexes, paths), errors


# --- the CDXJ cache -----------------------------------------------------------------------


def _cache_path(cache_dir: str, path: str, st: os.stat_result, settings: KeySettings) -> str | None:
    """Return the cache file of one archive file's current state, or None when no cache is safe."""
    try:
        _private_dir(cache_dir)
    except OSError as exc:
        log.warning("archive index cache %s not used: %s", cache_dir, exc)
        return None
    absolute = os.path.abspath(path)
    name = hashlib.sha256(absolute.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    state = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{settings.fingerprint}:{CDXJ_VERSION}"
    digest = hashlib.sha256(state.encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{name}-{digest}.cdxj")


def _private_dir(path: str) -> None:
    """Create `path` private to this user if missing; refuse one others could write to."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PermissionError(f"{path} is not a directory only this user can write to")


def to_cdxj(index: FileIndex) -> str:
    """Return a file's index as CDXJ text: a ``!meta`` line, then ``urlkey timestamp {json}``."""
    lines = ["!meta " + json.dumps({"version": CDXJ_VERSION, "skipped": index.skipped})]
    for key, r in index.records:
        when = parse_date(r.date)
        stamp = when.strftime("%Y%m%d%H%M%S") if when else "0"
        fields = {
            "url": r.url,
            "date": r.date,
            "type": r.kind,
            "status": r.status,
            "mime": r.mime,
            "offset": r.offset,
            "length": r.length,
            "plen": r.payload_length,
        }
        fields.update(
            {
                k: v
                for k, v in (
                    ("location", r.location),
                    ("digest", r.digest),
                    ("refers_url", r.refers_url),
                    ("refers_date", r.refers_date),
                )
                if v
            }
        )
        lines.append(f"{key} {stamp} {json.dumps(fields, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def from_cdxj(text: str, shown: str) -> FileIndex:
    """Read CDXJ text written by ``to_cdxj``; raise ValueError when it is not that."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("!meta "):
        raise ValueError("no !meta line")
    meta = json.loads(lines[0][6:])
    if meta.get("version") != CDXJ_VERSION:
        raise ValueError("another version")
    records = []
    for line in lines[1:]:
        key, _, rest = line.partition(" ")
        _, _, data = rest.partition(" ")
        f = json.loads(data)
        records.append(
            (
                key,
                Record(
                    f["type"],
                    f["url"],
                    f["date"],
                    f["offset"],
                    f["length"],
                    f["status"],
                    f["mime"],
                    f.get("location", ""),
                    f.get("digest", ""),
                    f["plen"],
                    f.get("refers_url", ""),
                    f.get("refers_date", ""),
                ),
            )
        )
    return FileIndex(shown, tuple(records), {str(k): int(v) for k, v in meta["skipped"].items()})


def _read_cache(cache: str, shown: str) -> FileIndex | None:
    try:
        with open(cache, encoding="utf-8") as f:
            return from_cdxj(f.read(), shown)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("the cached index %s is unreadable (%s); rebuilding it", cache, exc)
        return None


def _write_cache(cache: str, index: FileIndex) -> None:
    """Write the cache file atomically and drop the older indexes of the same archive file."""
    folder, name = os.path.split(cache)
    prefix = name.partition("-")[0] + "-"
    try:
        fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".cdxj", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(to_cdxj(index))
            os.replace(temporary, cache)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        for entry in os.scandir(folder):
            if entry.name.startswith(prefix) and entry.name != name:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    except OSError as exc:
        log.warning("could not keep the index of %s in %s: %s", index.file, folder, exc)
