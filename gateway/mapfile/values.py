"""The values a loaded map is made of: ``RedirectMap``, ``Site``, ``Archive`` and ``Problem``.

Frozen, and built only by the loader (``gateway.mapfile.loader``) once every check
has passed; ``MapError`` carries every problem of a map that cannot be served.
Pure: no Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from gateway.canonical import canonical_host, ignore_matcher
from gateway.matcher import Matcher
from gateway.rules import Rule

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
    """One problem in a map file, at a line (0 when it concerns the whole file)."""

    file: str
    line: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


class MapError(Exception):
    """A map that cannot be served; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


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
    """The ``archive:`` section: the banner's notice and the archived-copy prefix."""

    notice_ru: str
    notice_en: str
    wayback: str | None = None


@dataclass(frozen=True)
class RedirectMap:
    """A loaded, validated map: everything the matcher and the banner need."""

    path: str
    site: Site
    hosts: dict[str, str]  # every served name (hosts and aliases) -> its canonical host
    archive: Archive
    rules: tuple[Rule, ...]
    files: tuple[str, ...]  # every file read, main first: what a reload watches
    version: str  # content hash of those files
    loaded_at: datetime
    matcher: Matcher = field(compare=False, repr=False)
    # The include globs joined to the map's folder: a reload re-globs them to see new files.
    include_patterns: tuple[str, ...] = ()

    @property
    def default_host(self) -> str:
        """Return the first host under ``hosts:``: the host of a request that names none."""
        return next(iter(self.hosts.values()))

    def host_of(self, name: str) -> str | None:
        """Return the canonical served host for a Host header, or None if not served."""
        host = canonical_host(name)
        return self.hosts.get(host) if host else None
