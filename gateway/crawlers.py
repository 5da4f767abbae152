"""What search engines are given on every served host (spec §9): robots.txt and sitemap.xml.

The sitemap lists the exact redirect rules of a host and, with a web archive, its
captures that answer (an archived page, or a redirect a captured one leads to).

Search engines move an old site's standing to the new one only when they re-crawl
the old URLs and see the 301s, so robots.txt allows everything, names the ignored
query parameters to Yandex (``Clean-param``) and points at a sitemap of the old URLs
the map answers with a redirect. Each sitemap URL is checked with ``decide`` itself,
so a URL listed here is never one that answers anything else. Pure: no Flask.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import escape

from gateway.outcomes import Archived, Outcome, Redirect
from gateway.rules import Rule

if TYPE_CHECKING:  # the loader imports this module's paths: no import of the map at run time
    from gateway.mapfile import RedirectMap

ROBOTS_PATH = "/robots.txt"
SITEMAP_PATH = "/sitemap.xml"
RESERVED_PATHS = frozenset({ROBOTS_PATH, SITEMAP_PATH})
SITEMAP_LIMIT = 50_000  # URLs per sitemap file (sitemaps.org); past it, an index of parts
CLEAN_PARAM_LINE = 500  # Yandex reads at most this many characters of a Clean-param line

# Yandex's Clean-param takes names, not globs: what each usual glob stands for in practice.
GLOB_NAMES: dict[str, tuple[str, ...]] = {
    "utm_*": ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"),
    "PAGEN_*": tuple(f"PAGEN_{n}" for n in range(1, 10)),
    "SHOWALL_*": tuple(f"SHOWALL_{n}" for n in range(1, 10)),
}
_URL_SAFE = "/:@!$&'()*+,;=-._~%?"

Decide = Callable[["RedirectMap", str, str, str], Outcome]


@dataclass(frozen=True, slots=True)
class Sitemap:
    """One host's sitemap: the old URLs (path and query) that answer with a redirect."""

    host: str
    targets: tuple[str, ...]

    @property
    def parts(self) -> int:
        """Return how many sitemap files the URLs take (1 or more)."""
        return max(1, -(-len(self.targets) // SITEMAP_LIMIT))


def clean_param_names(ignore_query: tuple[str, ...]) -> list[str]:
    """Return the ignored parameters as Yandex's Clean-param names them: globs spelled out."""
    names: list[str] = []
    for glob in ignore_query:
        if glob in GLOB_NAMES:
            names.extend(GLOB_NAMES[glob])
        elif not any(c in glob for c in "*?["):
            names.append(glob)
    return list(dict.fromkeys(names))


def robots_txt(redirect_map: RedirectMap, origin: str) -> str:
    """Return robots.txt for a host: crawl everything, Clean-param for Yandex, the sitemap."""
    lines = ["# The old site redirects to its new one: crawl every URL to see where it went.", ""]
    lines += ["User-agent: *", "Allow: /", ""]
    lines += ["User-agent: Yandex", "Allow: /"]
    names = clean_param_names(redirect_map.site.ignore_query)
    lines += [f"Clean-param: {group}" for group in _groups(names)]
    lines += ["", f"Sitemap: {origin}{SITEMAP_PATH}", ""]
    return "\n".join(lines)


def _groups(names: list[str]) -> Iterator[str]:
    """Join names with '&' into lines no longer than Yandex reads."""
    line = ""
    for name in names:
        joined = f"{line}&{name}" if line else name
        if len(joined) > CLEAN_PARAM_LINE - len("Clean-param: "):
            yield line
            joined = name
        line = joined
    if line:
        yield line


T = TypeVar("T")
# Two caches: the sitemaps of any hosts asked for, and apart, the walks they are made
# from (one per named host, one for all of a wildcard's subdomains, per version), so
# that a stream of new subdomains empties the first and never the second.
_cache: dict[tuple[str, ...], Any] = {}
_walks: dict[tuple[str, ...], Any] = {}
_cache_lock = threading.Lock()
# One computation at a time per worker: a walk of a million rules takes tens of seconds
# of CPU (28 s for a host of bench/genmap.py's 1M map), and requests that need the same
# one wait for it instead of each doing it on a thread of their own.
_compute_lock = threading.RLock()  # re-entered: a sitemap is computed from cached walks
CACHE_SIZE = 64  # entries kept in each


def _cached(cache: dict[tuple[str, ...], Any], key: tuple[str, ...], compute: Callable[[], T]) -> T:
    found = cache.get(key)
    if found is None:
        with _compute_lock:
            found = cache.get(key)  # computed while this one waited
            if found is None:
                found = compute()
                with _cache_lock:
                    if len(cache) >= CACHE_SIZE:
                        cache.clear()
                    cache[key] = found
    return cast(T, found)


def sitemap(redirect_map: RedirectMap, host: str, decide: Decide) -> Sitemap:
    """Return the host's sitemap, computed once per map version and host.

    ``decide`` is ``gateway.decide.decide``, passed in because decide names the
    paths this module owns. The walk over the rules is done once per version for
    all the subdomains a wildcard answers (they share the every-host rules, which no
    host's rule can shadow there), so that asking each of a million subdomains for
    its sitemap does not walk the map a million times.
    """
    version = redirect_map.version
    scope = host if host in redirect_map.hosts else "*"

    def compute() -> Sitemap:
        rules = _cached(
            _walks,
            ("rules", version, scope),
            lambda: tuple(_rule_targets(redirect_map, host, decide)),
        )
        captures = _capture_targets(redirect_map, host, decide)
        return Sitemap(host, tuple(dict.fromkeys([*rules, *captures])))

    return _cached(_cache, ("sitemap", version, host), compute)


def _rule_targets(redirect_map: RedirectMap, host: str, decide: Decide) -> Iterator[str]:
    """Yield the URL of each exact redirect rule that answers it on this host."""
    for rule in redirect_map.rules:
        target = _listed_target(rule, host)
        if target is None:
            continue
        outcome = decide(redirect_map, "GET", host, target)
        # By order, not identity: a compiled map builds its rules afresh as they are read.
        if isinstance(outcome, Redirect) and outcome.rule.order == rule.order:
            yield target


def _capture_targets(redirect_map: RedirectMap, host: str, decide: Decide) -> Iterator[str]:
    """Yield the web archive's captures of this host (§8) that answer 200 or a redirect."""
    by_host = _cached(
        _walks, ("captures", redirect_map.version), lambda: _captures_by_host(redirect_map)
    )
    for target in by_host.get(host, ()):
        outcome = decide(redirect_map, "GET", host, target)
        if isinstance(outcome, (Redirect, Archived)):
            yield target


def _captures_by_host(redirect_map: RedirectMap) -> dict[str, list[str]]:
    """Return each served host's captured request targets, in the index's order."""
    by_host: dict[str, list[str]] = {}
    for capture in redirect_map.captures.captures.values():
        parts = urlsplit(capture.url)
        served = redirect_map.host_of(parts.netloc)
        if served is None:
            continue
        target = quote(parts.path or "/", safe=_URL_SAFE) + (
            f"?{parts.query}" if parts.query else ""
        )
        by_host.setdefault(served, []).append(target)
    return by_host


def _listed_target(rule: Rule, host: str) -> str | None:
    """Return the old URL an exact redirect rule was written for, or None if not listable.

    The URL as the rule writes it (its own slash, index file and letters), since that
    is the URL old links carry; ``_compute`` checks that it answers with this rule.
    """
    if not rule.is_exact or rule.target is None or rule.host not in (None, host):
        return None
    if any(c.literal is None for c in rule.conditions):
        return None  # a capture stands for many URLs
    text = rule.from_text.strip()
    if text[:8].lower().startswith(("http://", "https://")):
        text = text[text.index("//") + 2 :]
    if not text.startswith("/"):
        text = text[text.find("/") :] if "/" in text else "/"
    return quote(text, safe=_URL_SAFE)


def sitemap_xml(found: Sitemap, origin: str, part: int | None) -> str | None:
    """Return the sitemap (or, past the limit and with no part, its index); None: no such part."""
    if found.parts > 1 and part is None:
        entries = "".join(
            f"<sitemap><loc>{escape(origin)}{SITEMAP_PATH}?part={n}</loc></sitemap>\n"
            for n in range(1, found.parts + 1)
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
            f"{entries}</sitemapindex>\n"
        )
    index = (part or 1) - 1
    if not 0 <= index < found.parts:
        return None
    chunk = found.targets[index * SITEMAP_LIMIT : (index + 1) * SITEMAP_LIMIT]
    entries = "".join(f"<url><loc>{escape(origin + t)}</loc></url>\n" for t in chunk)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{entries}</urlset>\n"
    )
