"""URLs as people type them, and rules as the map spells them.

A person gives a full URL, ``host/path`` or a path; the server sees a Host header
and a raw request target in wire form (a latin-1 ``str`` whose code points are
bytes). ``request_of`` turns the first into the second, so that ``explain``,
``check``'s examples and ``coverage`` all ask ``decide`` the same question a
browser would. ``from_text`` goes the other way: a canonical URL (or a draft with
``<int:id>`` captures) written as a rule's ``from`` that compiles back to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from gateway.canonical import wire_bytes

_SCHEME = re.compile(r"(?i)https?://")
_HOST_FORM = re.compile(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}\.?(?::[0-9]+)?(?=/|\Z)")
# Characters that would change a rule's meaning if written as they are: '%' starts an
# escape, '<' '>' a placeholder, '?' '#' end the path, space and quotes confuse readers.
_PATH_ESCAPES = {c: f"%{ord(c):02X}" for c in "%<>?# \"'\\{}"}
# Printable ASCII stays as typed when a raw URL is shown; '%' too (escapes stay escapes).
_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
_QUERY_ESCAPES = {**_PATH_ESCAPES, **{c: f"%{ord(c):02X}" for c in "&;=+"}}


def to_wire(text: str) -> str:
    """Return typed text as the wire form a browser would send (non-ASCII as UTF-8 bytes)."""
    if text.isascii():
        return text
    # surrogateescape: bytes the terminal sent that were not UTF-8 travel as they were.
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def request_of(text: str, default_host: str) -> tuple[str, str]:
    """Return (Host header, raw target) for a URL, ``host/path`` or path as typed."""
    text = text.strip()
    if not _SCHEME.match(text) and not text.startswith("/") and _HOST_FORM.match(text):
        text = "http://" + text
    # An absolute-form target names its host itself: decide reads it from there, as the
    # server does, and the Host header only counts for a path.
    return default_host, to_wire(text)


def shown(raw: str) -> str:
    """Return a wire-form string printable as it is: other bytes and controls as %XX."""
    if raw.isascii() and raw.isprintable() and " " not in raw:
        return raw
    return quote(wire_bytes(raw), safe=_PRINTABLE)


def _escape(text: str, table: dict[str, str]) -> str:
    if not any(c in table for c in text):
        return text
    return "".join(table.get(c, c) for c in text)


def escape_segment(segment: str) -> str:
    """Escape a decoded path segment so that a rule's ``from`` reads it back as it is."""
    return _escape(segment, _PATH_ESCAPES)


def escape_query(text: str) -> str:
    """Escape a decoded query name or value for a rule's ``from``."""
    return _escape(text, _QUERY_ESCAPES)


def from_text(
    host: str | None,
    segments: Sequence[str],
    params: Iterable[tuple[str, str]],
    *,
    raw_segments: frozenset[int] = frozenset(),
    raw_values: frozenset[int] = frozenset(),
) -> str:
    """Write a rule's ``from``: host (None: every host), decoded segments, query conditions.

    Segments and values whose index is in ``raw_segments``/``raw_values`` are placeholders
    (``<int:id>``) and are written unescaped.
    """
    path = "/" + "/".join(
        s if i in raw_segments else escape_segment(s) for i, s in enumerate(segments)
    )
    query = "&".join(
        f"{escape_query(name)}={value if i in raw_values else escape_query(value)}"
        for i, (name, value) in enumerate(params)
    )
    return f"{host or ''}{path}{'?' + query if query else ''}"
