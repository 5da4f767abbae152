"""The order of decisions for one request, stated once (spec §5, then §4).

Service endpoints, then the method, then the host, then well-formedness, then
the map's precedence (in ``Matcher.match``). The web layer and ``gateway
explain`` both call ``decide``; neither has a rule of its own. Pure: no Flask.
"""

from __future__ import annotations

import logging

from gateway.canonical import LegacyURL, Malformed, parse_split, split_target
from gateway.mapfile import RedirectMap
from gateway.outcomes import (
    BadRequest,
    Gone,
    MethodNotAllowed,
    NotFound,
    Outcome,
    Redirect,
    ServiceEndpoint,
    UnknownHost,
)

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/-/"
METHODS = frozenset({"GET", "HEAD"})


def decide(redirect_map: RedirectMap, method: str, host_header: str, target: str) -> Outcome:
    """Decide the answer to one request from its method, Host header and raw request target."""
    if target.startswith(SERVICE_PREFIX):
        return ServiceEndpoint(target[len(SERVICE_PREFIX) :].partition("?")[0])
    if method not in METHODS:
        return MethodNotAllowed(method)
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
        url = parse_split(
            host,
            raw_path,
            raw_query,
            case_sensitive=site.case_sensitive,
            is_ignored=site.is_ignored,
        )
    except Malformed as exc:
        return BadRequest(str(exc))
    return answer(redirect_map, url)


def answer(redirect_map: RedirectMap, url: LegacyURL) -> Redirect | Gone | NotFound:
    """Answer a well-formed canonical URL on a served host by the map's precedence (§4)."""
    try:
        found = redirect_map.matcher.match(url, url.host)
        if found is None:
            return NotFound(url, url.host)
        rule = found.rule
        if rule.target is None:
            return Gone(rule, url, url.host)
        extra = [p for p in url.params if p.key not in found.consumed] if rule.keep_query else ()
        location = rule.target.build(found.captures, extra)
        return Redirect(rule.status, location, rule, url, url.host)
    except Exception:
        # Never a 500: a fault in matching is logged and answered with the 404 banner.
        log.exception("matching failed for %s%s", url.host, url.raw_target)
        return NotFound(url, url.host, reason="internal error while matching")
