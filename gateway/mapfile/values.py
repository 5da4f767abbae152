"""The values a loaded map is made of: ``RedirectMap``, ``Site``, ``Archive`` and ``Problem``.

Frozen, and built only by the loader (``gateway.mapfile.loader``) once every check
has passed; ``MapError`` carries every problem of a map that cannot be served.
Pure: no Flask.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from gateway.archive.index import EMPTY, ArchiveIndex
from gateway.canonical import canonical_host, ignore_matcher
from gateway.matcher import RuleMatcher
from gateway.rules import Rule

# A host name a wildcard may answer for: DNS labels of letters, digits and inner hyphens
# (punycode included), at most 253 characters. Anything else is not served.
_DNS_NAME = re.compile(r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}")
MAX_PROBLEMS = 200  # a list longer than this is no help to anyone, and costs memory
STATUSES = (301, 302, 307, 308, 410)
DEFAULT_IGNORE_QUERY = (
    "utm_*",
    "gclid",
    "yclid",
    "_openstat",
    "sphrase_id",
    "PAGEN_*",
    "SHOWALL_*",
    "clear_cache",
    "bitrix_include_areas",
    "print",
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a map file, at a line (0 when it concerns the whole file).

    In a web archive (spec §8) ``line`` is the byte offset of the broken record, or -1
    when the problem is the whole file's: shown as ``FILE: error: ...``.
    """

    file: str
    line: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        if self.line < 0:  # the whole of a file that has no lines (a web archive)
            return f"{self.file}: {self.severity}: {self.message}"
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


class MapError(Exception):
    """A map that cannot be served; ``problems`` lists every error found.

    ``files`` and ``include_patterns`` are what the loader had read and globbed when it
    stopped: a change to any of them may fix the map (a compiled failure is kept for them).
    """

    def __init__(
        self,
        problems: list[Problem],
        files: Collection[str] = (),
        include_patterns: Collection[str] = (),
    ) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)
        self.files = tuple(files)
        self.include_patterns = tuple(include_patterns)


@dataclass(frozen=True)
class Site:
    """The ``site:`` section: where redirects go and how URLs are compared."""

    new_site: str
    allow_targets: tuple[str, ...]
    redirect_max_age: int = 86400
    case_sensitive: bool = False
    ignore_query: tuple[str, ...] = DEFAULT_IGNORE_QUERY
    # Derived from ignore_query, so the two cannot disagree; not compared (ignore_query is).
    is_ignored: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: set once here, as the generated __init__ sets the other fields.
        object.__setattr__(self, "is_ignored", ignore_matcher(self.ignore_query))

    def host_allowed(self, host: str) -> bool:
        """Say whether a redirect may land on this host (``*.x`` means any subdomain of x)."""
        host = host.lower().rstrip(".")
        for allowed in self.allow_targets:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
                    return True
            elif host == allowed:
                return True
        return False


@dataclass(frozen=True)
class Archive:
    """The ``archive:`` section: the banner's notice, the archived-copy prefix, the web archives."""

    notice_ru: str
    notice_en: str
    wayback: str | None = None
    # archive.warc (spec §8): paths or globs of WARC and WACZ files, relative to the map.
    warc: tuple[str, ...] = ()
    # Sections whose banner is English for every reader: (canonical host or None, prefix).
    english: tuple[tuple[str | None, str], ...] = ()

    def is_english(self, host: str, path: str) -> bool:
        """Say whether a canonical URL lies in a section of ``archive.english``."""
        path = path.lower()
        for section_host, prefix in self.english:
            if section_host is not None and section_host != host:
                continue
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return True
        return False


@dataclass(frozen=True)
class RedirectMap:
    """A loaded, validated map: everything the matcher and the banner need."""

    path: str
    site: Site
    hosts: dict[str, str]  # every served name (hosts and aliases) -> its canonical host
    archive: Archive
    # Every rule: a tuple from the loader; from a compiled table (gateway.table), a
    # collection that builds the exact rules from it as they are iterated.
    rules: Collection[Rule]
    files: tuple[str, ...]  # every file read, main first: what a reload watches
    version: str  # content hash of those files
    loaded_at: datetime
    matcher: RuleMatcher = field(compare=False, repr=False)
    # The include globs joined to the map's folder: a reload re-globs them to see new files.
    include_patterns: tuple[str, ...] = ()
    # The web archives (spec §8): the files read, their globs joined to their folder, the
    # captures they serve; a reload watches them, the last-known-good copy refers to them.
    archive_files: tuple[str, ...] = ()
    archive_patterns: tuple[str, ...] = ()
    archive_names: tuple[str, ...] = ()  # archive_files as problems name them
    captures: ArchiveIndex = field(default=EMPTY, compare=False, repr=False)
    # The hash of the map's text files alone (version adds the archives' sizes and times).
    files_version: str = ""
    # Archive files left out of a last-known-good copy because they no longer read.
    archive_problems: tuple[Problem, ...] = ()
    # Derived from hosts: ".DOMAIN" for each "*.DOMAIN" key (spec §1a), longest first.
    wildcards: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        suffixes = sorted((k[1:] for k in self.hosts if is_wildcard(k)), key=len, reverse=True)
        object.__setattr__(self, "wildcards", tuple(suffixes))

    @functools.cached_property
    def rules_by_kind(self) -> Mapping[str, int]:
        """Return how many rules of each kind (``Rule.report_kind``) the map has."""
        counted = getattr(self.rules, "by_kind", None)  # a compiled table counted them
        if counted is not None:
            return dict(counted)
        kinds: dict[str, int] = {}
        for rule in self.rules:
            kinds[rule.report_kind] = kinds.get(rule.report_kind, 0) + 1
        return kinds

    @property
    def default_host(self) -> str:
        """Return the first host under ``hosts:``: the host of a request that names none."""
        return next(h for h in self.hosts.values() if not is_wildcard(h))

    @property
    def named_hosts(self) -> tuple[str, ...]:
        """Return the canonical hosts declared by name, in map order (no wildcards)."""
        return tuple(dict.fromkeys(h for h in self.hosts.values() if not is_wildcard(h)))

    def host_of(self, name: str) -> str | None:
        """Return the canonical served host for a Host header, or None if not served.

        A name declared (or aliased) is its host; any other subdomain of a wildcard's
        domain is itself (§1a), if it is a well-formed DNS name.
        """
        host = canonical_host(name)
        if not host or "*" in host:
            return None
        served = self.hosts.get(host)
        if served is None and self.wildcards and _DNS_NAME.fullmatch(host):
            for suffix in self.wildcards:
                if host.endswith(suffix):
                    return host
        return served


def is_wildcard(name: str) -> bool:
    """Say whether a key of ``hosts:`` is a wildcard (``*.DOMAIN``)."""
    return name.startswith("*.")
