"""A capture's payload read back from its archive file: its HTTP headers and its bytes, streamed.

Owns opening the record an index entry points at (``Capture.path`` at ``offset``, a
WACZ's stored WARC included) and handing out the payload as captured, with its
transfer and content encodings undone by warcio, in chunks: a 50 MB PDF is never
read into memory. Pure: no Flask.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from gateway.archive.index import Capture
from gateway.archive.reader import CHUNK, ArchiveError, StrictIterator, Window

MAX_HTML_BYTES = 16 * 1024 * 1024  # an HTML page is read whole to be rewritten; no more than this


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
