"""Reading access logs for coverage: each line to the (host, raw target) it requested.

Owns the formats coverage reads: combined or common log format, with or without a
leading virtual host; the gateway's own JSON access-log lines; plain lists of URLs;
``.gz`` files and stdin. Targets are kept in wire form (a latin-1 ``str`` whose code
points are bytes), as the server would have received them.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

# One compiled expression for combined and common log format, optionally after a virtual
# host (Apache's vhost_combined "%v:%p"). Bytes: logs carry whatever the client sent.
# The fields before the [date] (host ident user, or vhost host ident user) are taken
# whole and split only when there are four: half the cost of matching each one.
LOG_LINE = re.compile(rb'([^"\[]*)\[[^\]]*\] "([A-Za-z]+) ([^\s"]+)')
_ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})|\\(.)")
_URL_LINE = re.compile(rb"(?i)(?:https?://|/)\S*")
_HOST_LINE = re.compile(rb"[A-Za-z0-9.-]+\.[A-Za-z]{2,}\.?(?::[0-9]+)?/\S*")

OTHER_METHOD = "method other than GET or HEAD"
CUT_TARGET = "URL cut short in the access log (over 960 bytes)"

Key = tuple[str | None, str]  # (virtual host or None, raw target in wire form)


def count_requests(
    stream: Iterable[bytes], hits: dict[Key, int], other: Counter[str]
) -> tuple[int, int]:
    """Count a byte stream's requests into `hits` by key; return (lines, unreadable lines).

    Requests skipped before deciding (other methods) are counted into `other` by reason.
    """
    get = hits.get
    match = LOG_LINE.match
    lines = 0
    unreadable = 0
    for line in stream:
        lines += 1
        found = match(line)
        if found is not None:
            head, method, target = found.groups()
            if method != b"GET" and method != b"HEAD":
                other[OTHER_METHOD] += 1
                continue
            if b"\\" in target:
                target = unescape(target)
            vhost = head.split(None, 1)[0].decode("latin-1") if head.count(b" ") > 3 else None
            key: Key = (vhost, target.decode("latin-1"))
        else:
            parsed = other_line(line)
            if parsed is None:
                if line.strip():
                    unreadable += 1
                continue
            if isinstance(parsed, str):
                other[parsed] += 1
                continue
            key = parsed
        hits[key] = get(key, 0) + 1
    return lines, unreadable


def other_line(line: bytes) -> Key | str | None:
    """Read a JSON access-log line or a plain URL; a str is a reason to skip it."""
    text = line.strip()
    if text.startswith(b"{"):
        try:
            record = json.loads(text)
        except ValueError:
            return None
        if not isinstance(record, dict):
            return None
        method = str(record.get("method") or "GET").upper()
        if method not in ("GET", "HEAD"):
            return OTHER_METHOD
        cut = record.get("cut")
        if isinstance(cut, list) and "raw_target" in cut:
            return CUT_TARGET
        # The gateway's own lines (gateway.accesslog) carry raw_target; its "path" is the
        # canonical path, used only by logs that have nothing better (then with "query").
        target = record.get("raw_target") or record.get("target")
        if not isinstance(target, str):
            target = record.get("raw_path") or record.get("path")
            if not isinstance(target, str):
                return None
            query = record.get("query")
            if isinstance(query, str) and query:
                target = f"{target}?{query}"
        host = record.get("host")
        return (host if isinstance(host, str) and host else None), wire(target)
    if _URL_LINE.fullmatch(text):
        return None, text.decode("latin-1")
    if _HOST_LINE.fullmatch(text):
        return None, "http://" + text.decode("latin-1")
    return None


def unescape(target: bytes) -> bytes:
    """Undo a log's escaping of the request line: \\xHH bytes, \\" and \\\\."""
    return _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]) if m[1] is not None else m[2], target)


def wire(text: str) -> str:
    """Return a JSON log's target in wire form, as the server received it."""
    try:
        text.encode("latin-1")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8").decode("latin-1")


def open_log(name: str) -> IO[bytes] | gzip.GzipFile:
    """Open a log for reading bytes: ``-`` is stdin, ``.gz`` is decompressed."""
    if name == "-":
        return sys.stdin.buffer
    if name.endswith(".gz"):
        return gzip.GzipFile(name, "rb")  # a BufferedIOBase, read line by line
    return open(name, "rb")


def read_with_progress(
    stream: IO[bytes] | gzip.GzipFile, progress: Callable[[int], None] | None, every: int = 1 << 16
) -> Iterator[bytes]:
    """Yield a stream's lines, telling ``progress`` how many bytes were read every so often."""
    if progress is None:
        yield from stream
        return
    raw: Any = getattr(stream, "fileobj", None) or stream  # gzip: compressed position
    last = 0
    for n, line in enumerate(stream, 1):
        yield line
        if n % every == 0:
            position = raw.tell()
            progress(position - last)
            last = position
