"""The values the archive index and its CDXJ cache share: the key's settings, one file's index.

Owns ``KeySettings`` (what shapes a capture's key: the map's host table, case rule and
ignored query names, and their fingerprint, part of each cached index's name) and
``FileIndex`` (one archive file's keyed records and what was skipped). A module of its
own so that ``gateway.archive.index`` (which builds and merges them) and
``gateway.archive.cdxj`` (which keeps them) both import it, not each other. Pure: no Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from gateway.archive.reader import Record
from gateway.canonical import LegacyURL, Malformed, parse_split, split_target

_URI_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


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


@dataclass(frozen=True)
class FileIndex:
    """One archive file's captures (revisits unresolved) and what was skipped, and why.

    Once merged into an ``ArchiveIndex``, ``served`` counts the captures its records
    answer and ``superseded`` those a later capture of the same key replaces; its
    ``records`` are then read again from the cache only when asked for (a worker does
    not keep them: see ``CaptureTable``).
    """

    file: str
    records: Sequence[tuple[str, Record]]  # (key, record), in file order
    skipped: dict[str, int]
    served: int = 0
    superseded: int = 0
