"""Reading one web archive file, strictly: WARC (``.warc``, ``.warc.gz``) and WACZ (``.wacz``).

Owns turning a file into the records the index keeps (``Record``), the records it
skips (counted by reason), and ``ArchiveError``: a file that is missing, empty, cut
short, not a web archive or broken at a record, named with the byte offset of the
record where that is known. warcio parses the records; this module adds the checks
warcio leaves out (it warns on stderr, or stops silently, where a WARC is broken):
a gzip member cut short, a record shorter than its Content-Length, a record not
followed by its blank lines, WARC headers that are not UTF-8. A WACZ is a zip whose
``archive/`` folder holds WARCs stored uncompressed, so that a record is read by
seeking in the ``.wacz`` itself. Pure: no Flask.
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from warcio.archiveiterator import ArchiveIterator

SUFFIXES = (".warc", ".warc.gz", ".wacz")
SERVED_TYPES = ("response", "revisit")
CHUNK = 64 * 1024


class ArchiveError(Exception):
    """An archive file that cannot be read: its name, the record's offset (or None), why."""

    def __init__(self, file: str, message: str, offset: int | None = None) -> None:
        where = file if offset is None else f"{file}:{offset}"
        super().__init__(f"{where}: error: {message}")
        self.file = file
        self.offset = offset
        self.message = message


@dataclass(frozen=True, slots=True)
class Record:
    """A response or revisit record with an HTTP response, as the index keeps it."""

    kind: str  # "response" or "revisit"
    url: str  # WARC-Target-URI
    date: str  # WARC-Date, as written
    offset: int  # of the record, in the file read (the .wacz itself for a WACZ)
    length: int  # of the record, compressed as stored
    status: int  # the HTTP status captured
    mime: str  # the captured Content-Type ("" when none)
    location: str  # a 3xx's Location ("" otherwise)
    digest: str  # WARC-Payload-Digest ("" when none)
    payload_length: int  # bytes of the payload as served (decoded); -1 for a revisit
    refers_url: str = ""  # a revisit's WARC-Refers-To-Target-URI
    refers_date: str = ""  # a revisit's WARC-Refers-To-Date


def archive_kind(path: str) -> str | None:
    """Return "warc" or "wacz" by the file's name, or None when it names no web archive."""
    lower = path.lower()
    if lower.endswith(".wacz"):
        return "wacz"
    if lower.endswith((".warc", ".warc.gz")):
        return "warc"
    return None


def parse_date(text: str) -> datetime | None:
    """Read a WARC-Date (ISO 8601, UTC); None when it is not one."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_archive(path: str, shown: str, skipped: Counter[str]) -> list[Record]:
    """Return the served-kind records of one archive file; count the others in `skipped`.

    Raise ArchiveError naming `shown` when the file cannot be read to its end.
    """
    kind = archive_kind(path)
    if kind is None:
        raise ArchiveError(shown, "not a web archive (.warc, .warc.gz or .wacz)")
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise ArchiveError(shown, f"cannot read: {exc.strerror or exc}") from None
    if size == 0:
        raise ArchiveError(shown, "the file is empty (0 bytes): not a web archive")
    try:
        with open(path, "rb") as fh:
            if kind == "wacz":
                return list(_wacz_records(fh, shown, skipped))
            return list(_warc_records(fh, shown, skipped, 0, size))
    except ArchiveError:
        raise
    except OSError as exc:
        raise ArchiveError(shown, f"cannot read: {exc.strerror or exc}") from None


def _wacz_records(fh: BinaryIO, shown: str, skipped: Counter[str]) -> Iterator[Record]:
    """Yield the records of every WARC in a WACZ's ``archive/`` folder, in name order."""
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveError(shown, f"not a WACZ (a zip package): {exc}") from None
    members = sorted(
        (info for info in zf.infolist() if _is_warc_member(info.filename)),
        key=lambda info: info.filename,
    )
    if not members:
        raise ArchiveError(shown, "not a WACZ: the zip holds no archive/*.warc or *.warc.gz")
    for info in members:
        where = f"{shown}!{info.filename}"
        if info.compress_type != zipfile.ZIP_STORED:
            raise ArchiveError(
                where, "compressed inside the zip; a WACZ stores its WARCs uncompressed"
            )
        start = _member_data_offset(fh, info, where)
        yield from _warc_records(fh, where, skipped, start, info.file_size)


def _is_warc_member(name: str) -> bool:
    return name.startswith("archive/") and name.lower().endswith((".warc", ".warc.gz"))


def _member_data_offset(fh: BinaryIO, info: zipfile.ZipInfo, where: str) -> int:
    """Return where a stored member's bytes start in the zip file (after its local header)."""
    fh.seek(info.header_offset)
    header = fh.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise ArchiveError(where, "the zip's local header is broken")
    name_length = int.from_bytes(header[26:28], "little")
    extra_length = int.from_bytes(header[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length


class Window:
    """A read-only view of `length` bytes of a file from `start`: one WARC, maybe in a zip."""

    def __init__(self, fh: BinaryIO, start: int, length: int) -> None:
        self.fh = fh
        self.start = start
        self.end = start + length
        self.pos = start
        fh.seek(start)

    def read(self, size: int = -1) -> bytes:
        left = self.end - self.pos
        size = left if size is None or size < 0 else min(size, left)
        if size <= 0:
            return b""
        self.fh.seek(self.pos)
        data = self.fh.read(size)
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos - self.start


def _strict_header(line: bytes | str) -> str:
    """Decode one WARC header line as UTF-8, or fail (warcio would guess latin-1)."""
    if isinstance(line, str):
        return line
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise _BrokenRecord("a WARC header that is not UTF-8") from None


class _BrokenRecord(Exception):
    """Raised inside the iterator; turned into an ArchiveError with the record's offset."""


class StrictIterator(ArchiveIterator):  # type: ignore[misc]
    """warcio's iterator, failing where it would warn or stop silently."""

    def __init__(self, fileobj: Any) -> None:
        super().__init__(fileobj, check_digests=False)
        self.loader.warc_parser.decode_header = _strict_header

    def _consume_blanklines(self) -> tuple[bytes | None, int]:
        line = self.reader.readline()
        if not line:
            return None, 0
        size = 0
        while line and not line.rstrip():
            size += len(line)
            line = self.reader.readline()
        if size == 0:
            raise _BrokenRecord("no blank line after the record: its Content-Length lies")
        return (line or None), size

    def read_to_end(self, record: Any = None) -> None:
        if self.record is not None and not self.member_info:
            while self.record.raw_stream.read(CHUNK):
                pass
            if getattr(self.record.raw_stream, "limit", 0) > 0:
                raise _BrokenRecord("the file ends inside the record (before its Content-Length)")
            start: int = self.offset  # type: ignore[has-type]
            super().read_to_end(record)
            # Only once the blank lines after the record are read: the record's last bytes can
            # end a read block, the member's end (and gzip trailer) still unread, in a whole file.
            decompressor = self.reader.decompressor
            if decompressor is not None and not getattr(decompressor, "eof", True):
                self.offset = start  # the error names the record's start, not its end
                raise _BrokenRecord("the gzip member ends before its end (the file is cut short)")
            return
        super().read_to_end(record)


def _warc_records(
    fh: BinaryIO, shown: str, skipped: Counter[str], start: int, length: int
) -> Iterator[Record]:
    """Yield the served-kind records of one WARC stream of `length` bytes at `start`."""
    window = Window(fh, start, length)
    iterator = StrictIterator(window)
    try:
        for record in iterator:
            if record.format != "warc":
                raise _BrokenRecord(f"not a WARC record ({record.format})")
            found = _record(record, iterator, skipped)
            if found is not None:
                offset = iterator.get_record_offset()
                yield _placed(found, start + offset, iterator.get_record_length())
            else:
                iterator.read_to_end()
    except ArchiveError:
        raise
    except Exception as exc:  # ours, and warcio's own: ArchiveLoadFailed, zlib errors, ...
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        # iterator.offset: where the record being read starts (warcio moves it past each one).
        first = iterator.offset == 0 and iterator.record is None
        if first or record_format(iterator) != "warc":
            raise ArchiveError(shown, f"not a WARC file: {message}") from None
        raise ArchiveError(shown, message, start + iterator.offset) from None


def record_format(iterator: StrictIterator) -> str:
    """Return the format of the record last read ("warc"; "" before the first)."""
    return str(getattr(iterator.record, "format", "warc"))


def _placed(found: Record, offset: int, length: int) -> Record:
    return Record(
        found.kind,
        found.url,
        found.date,
        offset,
        length,
        found.status,
        found.mime,
        found.location,
        found.digest,
        found.payload_length,
        found.refers_url,
        found.refers_date,
    )


def _record(record: Any, iterator: StrictIterator, skipped: Counter[str]) -> Record | None:
    """Return the record as the index keeps it, or count why it is skipped (None)."""
    kind = record.rec_type
    if kind not in SERVED_TYPES:
        skipped[f"{kind} record (not a response)"] += 1
        return None
    headers = record.rec_headers
    url = (headers.get_header("WARC-Target-URI") or "").strip().strip("<>")
    if not url.lower().startswith(("http://", "https://")):
        skipped["target URI not http(s)"] += 1
        return None
    date = headers.get_header("WARC-Date") or ""
    if parse_date(date) is None:
        skipped["no valid WARC-Date"] += 1
        return None
    http = record.http_headers
    if http is None or not http.statusline:
        skipped["no HTTP response headers"] += 1
        return None
    try:
        status = int(http.get_statuscode())
    except (TypeError, ValueError):
        skipped["an HTTP status that is not a number"] += 1
        return None
    payload_length = -1
    if kind == "response":
        payload_length = 0
        try:
            stream = record.content_stream()
            while chunk := stream.read(CHUNK):
                payload_length += len(chunk)
        except Exception:  # a Content-Encoding that does not decode: not servable
            skipped["a payload that does not decode"] += 1
            return None
    return Record(
        kind,
        url,
        date.strip(),
        0,
        0,
        status,
        (http.get_header("Content-Type") or "").strip(),
        (http.get_header("Location") or "").strip(),
        (headers.get_header("WARC-Payload-Digest") or "").strip(),
        payload_length,
        (headers.get_header("WARC-Refers-To-Target-URI") or "").strip().strip("<>"),
        (headers.get_header("WARC-Refers-To-Date") or "").strip(),
    )
