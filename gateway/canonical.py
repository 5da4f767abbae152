"""The canonical form of a legacy URL (spec §3): host, path and query.

Requests and rules go through the same functions, so that a rule written in
Cyrillic matches a request sent as UTF-8 or windows-1251 escapes. Pure: no Flask.

Requests arrive as the raw request target (gunicorn's ``RAW_URI``), a ``str``
whose code points are the bytes on the wire (latin-1); rules are Unicode text
from YAML or CSV. Both are turned into bytes first and decoded here exactly once.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

from gateway import fastpaths

INDEX_FILES = frozenset({"index.php", "index.html", "index.htm"})

_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ESCAPE_RUN = re.compile(rb"(?:%[0-9A-Fa-f]{2})+")
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_QUERY_SEPARATOR = re.compile("[&;]")
# What a URL may carry unescaped when we rebuild one (RFC 3986 pchar + '/' + '%').
_URL_SAFE = "/:@!$&'()*+,;=-._~%"


class Malformed(ValueError):
    """The request cannot be read as a URL: a bad escape, a control character, bad bytes."""


class Param(NamedTuple):
    """One significant query parameter: its folded name, and name and value as sent."""

    key: str
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class LegacyURL:
    """A request's URL in canonical form, kept beside the original it came from.

    Match on ``path`` (case-folded unless the map is case-sensitive) and the
    params; build targets and captures from ``path_text`` (the request's own
    letters); show and archive the raw form.
    """

    host: str
    path: str
    path_text: str
    params: tuple[Param, ...]
    raw_path: str
    raw_query: str

    @property
    def raw_target(self) -> str:
        """Return the raw request target (path and query) as received."""
        return f"{self.raw_path}?{self.raw_query}" if self.raw_query else self.raw_path

    def last_values(self) -> dict[str, str]:
        """Return the last value of each significant parameter, by folded name (§2).

        When the request repeats a name its last value counts, as PHP (which served
        the old site) read ``$_GET``: ``?id=1&id=2`` is ``id=2``.
        """
        return {p.key: p.value for p in self.params}

    def last_params(self) -> tuple[Param, ...]:
        """Return each significant parameter once: its last occurrence, at its first place.

        What PHP's ``$_GET`` holds (a repeated key keeps its place, the last value wins),
        and what ``keep_query`` passes on: ``?a=1&b=2&a=3`` gives ``a=3&b=2``.
        """
        return last_params(self.params)

    def to_target(self) -> str:
        """Return a request target that canonicalises back to this URL."""
        path = quote(self.path_text, safe="/:@!$&'()*+,;=-._~")
        if not self.params:
            return path
        query = "&".join(f"{quote(p.name, safe='')}={quote(p.value, safe='')}" for p in self.params)
        return f"{path}?{query}"


def _unescape_run(found: re.Match[bytes]) -> bytes:
    """Return the bytes a run of valid %XX escapes stands for."""
    return bytes.fromhex(found.group().replace(b"%", b"").decode("ascii"))


def _unescape(raw: bytes) -> bytes:
    """Percent-decode once, refusing a '%' that is not a %XX escape."""
    if b"%" in raw:
        if _BAD_ESCAPE.search(raw):
            raise Malformed("an escape that is not %XX")
        # Each run of escapes in one call: a Cyrillic path is a few runs of dozens of
        # escapes, which unquote_to_bytes decodes one Python step at a time (4 times slower).
        raw = _ESCAPE_RUN.sub(_unescape_run, raw)
    return raw


def decode(raw: bytes) -> str:
    """Percent-decode once; read UTF-8, else windows-1251; refuse control characters."""
    raw = _unescape(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            # Old Russian links carry windows-1251 bytes; this codec rejects 0x98.
            text = raw.decode("cp1251")
        except UnicodeDecodeError:
            raise Malformed("bytes that are neither UTF-8 nor windows-1251") from None
    if _CONTROL.search(text):
        raise Malformed("a control character")
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def decode_parts(raws: Sequence[bytes]) -> list[str]:
    """Decode the pieces of one text as ``decode`` decodes the whole: one encoding for all.

    For a rule's ``from`` path, whose placeholders are found in the text as written
    (§2) and whose literal pieces between them are then decoded (§3): the pieces are
    read as UTF-8 when every one of them is UTF-8, else all as windows-1251.
    """
    unescaped = [_unescape(raw) for raw in raws]
    try:
        texts = [raw.decode("utf-8") for raw in unescaped]
    except UnicodeDecodeError:
        try:
            texts = [raw.decode("cp1251") for raw in unescaped]
        except UnicodeDecodeError:
            raise Malformed("bytes that are neither UTF-8 nor windows-1251") from None
    if any(_CONTROL.search(text) for text in texts):
        raise Malformed("a control character")
    return [text if text.isascii() else unicodedata.normalize("NFC", text) for text in texts]


def resolve_segments(text: str) -> list[str]:
    """Split a decoded path into segments: resolve dot segments, collapse '//', drop index files.

    Dot segments first, as a browser resolves them (RFC 3986 §5.2.4): the empty segment
    between ``//`` is a segment that ``..`` removes, so ``/a/b//../..`` is ``/a/``;
    never above the root. Only then are the empty segments (repeated ``/``) dropped.
    """
    if "/." not in text and not text.startswith("."):
        # No dot segment anywhere (the usual case): only the empty segments to drop.
        segments = [segment for segment in text.split("/") if segment]
    else:
        parts = text.split("/")
        if parts[0] == "":
            del parts[0]  # the root, before the first '/': never removed
        kept: list[str] = []
        for segment in parts:
            if segment == ".":
                continue
            if segment == "..":
                if kept:
                    kept.pop()
                continue
            kept.append(segment)  # an empty segment too: a later '..' removes it
        segments = [segment for segment in kept if segment]
    # Repeatedly, so that the canonical form is a fixed point (/index.php/index.html).
    while segments and segments[-1].lower() in INDEX_FILES:
        segments.pop()
    return segments


def fold(text: str, case_sensitive: bool) -> str:
    """Return the comparison form of decoded text under the map's case rule."""
    return text if case_sensitive else text.lower()


def canonical_path(raw: bytes, case_sensitive: bool) -> tuple[str, str]:
    """Return a raw path's canonical comparison form and its text with the request's letters."""
    text = "/" + "/".join(resolve_segments(decode(raw)))
    return fold(text, case_sensitive), text


def ignore_matcher(globs: Iterable[str]) -> Callable[[str], bool]:
    """Compile query-name globs (``utm_*``) into a case-insensitive predicate on names."""
    patterns = [fnmatch.translate(g.lower()) for g in globs]
    if not patterns:
        return lambda name: False
    regex = re.compile("|".join(f"(?:{p})" for p in patterns))
    return lambda name: regex.match(name.lower()) is not None


def canonical_query(raw: bytes, is_ignored: Callable[[str], bool]) -> tuple[Param, ...]:
    """Return the significant parameters of a raw query, in request order."""
    params: list[Param] = []
    for pair in re.split(rb"[&;]", raw):
        name_raw, _, value_raw = pair.partition(b"=")
        # Decode even ignored and empty names: a control character anywhere is malformed.
        name = decode(name_raw.replace(b"+", b" "))
        value = decode(value_raw.replace(b"+", b" "))
        if name and not is_ignored(name):
            params.append(Param(name.lower(), name, value))
    return tuple(params)


def last_params(params: Sequence[Param]) -> tuple[Param, ...]:
    """Return each parameter once: its last occurrence, at the place of its first (§2)."""
    if len(params) < 2:
        return tuple(params)
    last = {p.key: p for p in params}
    if len(last) == len(params):
        return tuple(params)
    return tuple(last.values())


MAX_HOST = 300  # a DNS name is at most 253 characters; with a port, far below this


def canonical_host(host: str) -> str | None:
    """Return a Host header's canonical name (lowercase, no port or final dot, punycode)."""
    if len(host) > MAX_HOST:
        return None  # never a served host, and IDNA-encoding 8 KiB of it costs milliseconds
    host = host.strip().lower()
    # Drop the port; an IPv6 literal keeps its brackets.
    host = host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
    host = host.rstrip(".")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return host or None


def split_target(target: str) -> tuple[str | None, str, str]:
    """Split a request target into (authority of an absolute form, raw path, raw query)."""
    authority = None
    lowered = target[:8].lower()
    if lowered.startswith(("http://", "https://")):
        rest = target[target.index("//") + 2 :]
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        authority, target = rest[:cut], rest[cut:]
        if not target.startswith("/"):
            target = "/" + target
    elif not target.startswith("/"):
        raise Malformed("a request target that is neither a path nor an absolute URL")
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    query = query.partition("#")[0]
    return authority, path, query


def wire_bytes(text: str) -> bytes:
    """Return the bytes a WSGI string stands for (latin-1), or its UTF-8 if it is real text."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def parse_request(
    host: str,
    target: str,
    *,
    case_sensitive: bool,
    is_ignored: Callable[[str], bool],
) -> LegacyURL:
    """Canonicalise a request (host already canonical, raw target as received)."""
    _, raw_path, raw_query = split_target(target)
    return parse_split(
        host, raw_path, raw_query, case_sensitive=case_sensitive, is_ignored=is_ignored
    )


def parse_split(
    host: str,
    raw_path: str,
    raw_query: str,
    *,
    case_sensitive: bool,
    is_ignored: Callable[[str], bool],
) -> LegacyURL:
    """Canonicalise a request target already split by ``split_target``."""
    # Most legacy paths and queries are ASCII with no escape: for those, decoding is the
    # identity and only the control-character check remains, so skip the bytes round trip.
    if fastpaths.ENABLED and raw_path.isascii() and "%" not in raw_path:
        if _CONTROL.search(raw_path):
            raise Malformed("a control character")
        path_text = "/" + "/".join(resolve_segments(raw_path))
        path = fold(path_text, case_sensitive)
    else:
        path, path_text = canonical_path(wire_bytes(raw_path), case_sensitive)
    if not raw_query:
        params: tuple[Param, ...] = ()
    elif fastpaths.ENABLED and raw_query.isascii() and "%" not in raw_query:
        params = _ascii_query(raw_query, is_ignored)
    else:
        params = canonical_query(wire_bytes(raw_query), is_ignored)
    return LegacyURL(host, path, path_text, params, raw_path, raw_query)


def _ascii_query(raw: str, is_ignored: Callable[[str], bool]) -> tuple[Param, ...]:
    """Return canonical_query of an ASCII query with no escape, without decoding each part."""
    if _CONTROL.search(raw):
        raise Malformed("a control character")
    params: list[Param] = []
    for pair in _QUERY_SEPARATOR.split(raw.replace("+", " ")):
        name, _, value = pair.partition("=")
        if name and not is_ignored(name):
            params.append(Param(name.lower(), name, value))
    return tuple(params)
