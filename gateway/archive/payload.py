"""A capture's payload read back from its archive file: its HTTP headers and its bytes, streamed.

Owns opening the record an index entry points at (``Capture.path`` at ``offset``, a
WACZ's stored WARC included) and handing out the payload as captured, with its
transfer and content encodings undone by warcio, in chunks: a 50 MB PDF is never
read into memory. Pure: no Flask.
"""

from __future__ import annotations

import io
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from gateway.archive.index import Capture
from gateway.archive.reader import CHUNK, ArchiveError, StrictIterator, Window

MAX_HTML_BYTES = 16 * 1024 * 1024  # an HTML page is read whole to be rewritten; no more than this
FAST_RECORD_BYTES = 1024 * 1024  # a record this small (as stored) is read without warcio's parser


@dataclass
class Payload:
    """An open capture: its content type and a stream of its payload's bytes."""

    content_type: str
    length: int  # the payload's length as served (decoded)
    _fh: BinaryIO
    _stream: Any

    def read(self, limit: int = MAX_HTML_BYTES) -> bytes:
        """Read the payload whole (at most `limit` bytes) and close the file."""
        try:
            return bytes(self._stream.read(limit))
        finally:
            self.close()

    def chunks(self) -> Iterator[bytes]:
        """Yield the payload in chunks, closing the file at the end (or when closed early)."""
        try:
            while chunk := self._stream.read(CHUNK):
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        """Close the archive file."""
        self._fh.close()


def stream_payload(capture: Capture) -> Iterator[bytes]:
    """Yield a capture's payload in chunks; the file is opened at the first chunk, not before.

    So an answer that sends no body (HEAD, 304) never opens the file, and a client that
    goes away closes it with the generator.
    """
    yield from open_payload(capture).chunks()


def open_payload(capture: Capture) -> Payload:
    """Open the record of a capture; raise ArchiveError when it no longer reads."""
    fast = _read_plain(capture) if 0 < capture.length <= FAST_RECORD_BYTES else None
    if fast is not None:
        mime, body = fast
        stream = io.BytesIO(body)
        return Payload(mime or capture.mime, capture.payload_length, stream, stream)
    try:
        fh = open(capture.path, "rb")  # noqa: SIM115 - closed by the Payload
    except OSError as exc:
        raise ArchiveError(capture.file, f"cannot read: {exc.strerror or exc}") from None
    try:
        iterator = StrictIterator(Window(fh, capture.offset, capture.length))
        record = next(iterator)
        if record.rec_type != "response":
            raise ArchiveError(capture.file, "not a response record", capture.offset)
        mime = (
            (record.http_headers.get_header("Content-Type") or "").strip()
            if record.http_headers
            else ""
        )
        return Payload(mime or capture.mime, capture.payload_length, fh, record.content_stream())
    except ArchiveError:
        fh.close()
        raise
    except Exception as exc:  # the file changed under the index: the next reload sees it
        fh.close()
        raise ArchiveError(
            capture.file, f"the record no longer reads: {exc}", capture.offset
        ) from None


def _read_plain(capture: Capture) -> tuple[str, bytes] | None:
    """Read a small record in one pread and return its plain payload, or None (warcio's case)."""
    try:
        fd = os.open(capture.path, os.O_RDONLY)
    except OSError:
        return None  # the general path says why
    try:
        raw = os.pread(fd, capture.length, capture.offset)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) != capture.length:
        return None
    try:
        return _plain_record(raw)
    except (ValueError, zlib.error):
        return None


_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# The header lines after a status line, each ending in CRLF: no folded line, bare CR or LF,
# or control character (those are warcio's case); then each (name, value), value trimmed.
_HEADER_BLOCK = re.compile(rb"(?:" + _TOKEN + rb":[\x20-\x7e\t]*\r\n)*")
_HEADER_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([\x20-\x7e\t]*?)[ \t]*\r\n")


def _plain_record(raw: bytes) -> tuple[str, bytes] | None:
    """Return (Content-Type, payload) of a whole response record in the plain case, else None.

    A small page is a third of an archived answer's cost in warcio's general parser. The
    plain case: one gzip member (or none), a ``response`` record whose block is exactly
    its Content-Length, ASCII headers of single lines ending in CRLF, and an HTTP payload
    with neither Transfer-Encoding nor Content-Encoding to undo. Anything else (None)
    goes through warcio, as the index read it.
    """
    if raw[:2] == b"\x1f\x8b":
        inflate = zlib.decompressobj(31)
        data = inflate.decompress(raw, 4 * FAST_RECORD_BYTES)
        if not inflate.eof or inflate.unused_data or inflate.unconsumed_tail:
            return None
    else:
        data = raw
    warc = _headers(data, b"WARC/1.")
    if warc is None:
        return None
    fields, start = warc
    if fields.get(b"warc-type") != b"response":
        return None
    length = fields.get(b"content-length", b"")
    if not length.isdigit():
        return None
    end = start + int(length)
    if len(data) < end or data[end:].strip(b"\r\n"):
        return None
    http = _headers(data[start:end], b"HTTP/1.")
    if http is None:
        return None
    fields, body_start = http
    if b"transfer-encoding" in fields or b"content-encoding" in fields:
        return None
    return fields.get(b"content-type", b"").decode("ascii"), data[start + body_start : end]


def _headers(data: bytes, version: bytes) -> tuple[dict[bytes, bytes], int] | None:
    """Read a head (status line, headers, CRLF CRLF) at the start of `data`: its fields, its end."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data.startswith(version):
        return None
    first = data.find(b"\r\n")
    if b"\n" in data[:first] or b"\r" in data[:first]:
        return None  # a status line with a bare CR or LF
    lines = data[first + 2 : end + 2]  # the header lines, each with its CRLF
    if not lines.isascii() or _HEADER_BLOCK.fullmatch(lines) is None:
        return None
    pairs = _HEADER_LINE.findall(lines)
    fields = {name.lower(): value for name, value in pairs}
    if len(fields) != len(pairs):
        return None  # a repeated header: which one counts is warcio's to say
    return fields, end + 4
