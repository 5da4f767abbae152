"""The order of decisions for one request, stated once (spec §5, §9, then §4).

Service endpoints, then whether a map is loaded at all, then the method, then the
host, then well-formedness, then the files for search engines (§9), then the map's
precedence (``answer``: the rules in ``Matcher.match``, then the web archive, §8),
then the gateway's own icon for an unanswered ``/favicon.ico``. The web edge and
every command (``explain``, ``check``, ``coverage``, ``import``) call ``decide``;
none has a rule of its own. A fault raises: only the web edge turns it into an
answer, with ``fallback``, so a bug in matching fails a command loudly instead of
reading as "no rule". Pure: no Flask.
"""

from __future__ import annotations

from urllib.parse import urljoin

from gateway.archive.index import Capture
from gateway.canonical import LegacyURL, Malformed, parse_split, split_target
from gateway.crawlers import ROBOTS_PATH, SITEMAP_PATH
from gateway.mapfile import RedirectMap
from gateway.outcomes import (
    Archived,
    BadRequest,
    Favicon,
    Gone,
    MethodNotAllowed,
    NotFound,
    Outcome,
    Redirect,
    RobotsTxt,
    ServiceEndpoint,
    SitemapXml,
    Unavailable,
    UnknownHost,
)

SERVICE_PREFIX = "/-/"
METHODS = frozenset({"GET", "HEAD"})
FAVICON_PATH = "/favicon.ico"


def decide(redirect_map: RedirectMap | None, method: str, host_header: str, target: str) -> Outcome:
    """Decide the answer to one request from its method, Host header and raw request target."""
    if target.startswith(SERVICE_PREFIX):
        return ServiceEndpoint(target[len(SERVICE_PREFIX) :].partition("?")[0])
    if redirect_map is None:
        return Unavailable()
    if method not in METHODS:
        return MethodNotAllowed(method)
    url = _read(redirect_map, host_header, target)
    if not isinstance(url, LegacyURL):
        return url
    if url.path == ROBOTS_PATH:
        return RobotsTxt(url.host)
    if url.path == SITEMAP_PATH:
        part = url.last_values().get("part", "")
        return SitemapXml(url.host, int(part) if part.isdigit() and len(part) < 7 else None)
    found = answer(redirect_map, url)
    if isinstance(found, NotFound) and url.path == FAVICON_PATH:
        return Favicon()
    return found


def answer(redirect_map: RedirectMap, url: LegacyURL) -> Redirect | Gone | Archived | NotFound:
    """Answer a well-formed canonical URL on a served host by the map's precedence (§4).

    The rules (steps 1-2: a 410 rule withholds a captured page), then the web archive
    (step 3), then the 404 banner. A captured redirect to a served host is decided as
    if its target had been requested (§8): at most MAX_HOPS, a loop is dropped.
    """
    via: list[str] = []  # the captured redirects followed
    keys: set[str] = set()
    current = url
    while True:
        found = _by_rules(redirect_map, current)
        if found is not None:
            return found if current is url else _via(found, url)
        capture = redirect_map.captures.lookup(current, redirect_map.site.case_sensitive)
        if capture is None:
            return NotFound(url, url.host)
        if not capture.is_redirect:
            return Archived(capture, url, url.host, tuple(via))
        target = _captured_target(redirect_map, capture)
        if target is None or capture.key in keys or len(via) >= MAX_HOPS:
            return NotFound(url, url.host, reason="a captured redirect leads nowhere served")
        via.append(capture.url)
        keys.add(capture.key)
        current = target


MAX_HOPS = 5  # captured redirects followed inside the archive (spec §8)


def _via(found: Redirect | Gone, url: LegacyURL) -> Redirect | Gone:
    """Return a rule's answer to a captured redirect's target, for the URL asked for."""
    if isinstance(found, Redirect):
        return Redirect(found.status, found.location, found.rule, url, url.host)
    return Gone(found.rule, url, url.host)


def _captured_target(redirect_map: RedirectMap, capture: Capture) -> LegacyURL | None:
    """Return a captured redirect's Location as a canonical URL on a served host, or None."""
    return _parse_url(redirect_map, urljoin(capture.url, capture.location))


def _parse_url(redirect_map: RedirectMap, text: str) -> LegacyURL | None:
    """Read an absolute http(s) URL as a canonical URL on a served host, or None."""
    if not text.lower().startswith(("http://", "https://")):
        return None
    url = _read(redirect_map, "", text)  # an absolute-form target names its own host
    return url if isinstance(url, LegacyURL) else None


def _by_rules(redirect_map: RedirectMap, url: LegacyURL) -> Redirect | Gone | None:
    """Answer a canonical URL by the map's rules (§4 steps 1-2), or None when none matches."""
    found = redirect_map.matcher.match(url, url.host)
    if found is None:
        return None
    rule = found.rule
    if rule.target is None:
        return Gone(rule, url, url.host)
    # Each repeated name once, with its last value, at its first place (§2, PHP's $_GET).
    extra = [p for p in url.last_params() if p.key not in found.consumed] if rule.keep_query else ()
    location = rule.target.build(found.captures, extra)
    return Redirect(rule.status, location, rule, url, url.host)


def fallback(redirect_map: RedirectMap, host_header: str, target: str) -> Outcome:
    """Return the web edge's answer when ``decide`` raised: the 404 banner if the URL reads."""
    try:
        url = _read(redirect_map, host_header, target)
    except Exception:
        return BadRequest("the request could not be read")
    if not isinstance(url, LegacyURL):
        return url
    return NotFound(url, url.host, reason="internal error while matching")


def _read(
    redirect_map: RedirectMap, host_header: str, target: str
) -> LegacyURL | UnknownHost | BadRequest:
    """Read the request target into a canonical URL on a served host, or say why not."""
    try:
        authority, raw_path, raw_query = split_target(target)
    except Malformed as exc:
        return BadRequest(str(exc))
    # An absolute-form target names the host itself (RFC 9112 §3.2.2); otherwise the Host header.
    host_name = authority if authority is not None else host_header
    host = redirect_map.host_of(host_name) if host_name else None
    if host is None:
        return UnknownHost(host_name or "")
    site = redirect_map.site
    try:
        return parse_split(
            host,
            raw_path,
            raw_query,
            case_sensitive=site.case_sensitive,
            is_ignored=site.is_ignored,
        )
    except Malformed as exc:
        return BadRequest(str(exc))
