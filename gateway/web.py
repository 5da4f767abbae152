"""The request path: decide each request once, answer redirects directly, render the rest in Flask.

gunicorn → ``GatewayMiddleware`` (method, Host, raw URI) → ``decide`` → an
outcome. A redirect — the hot path — is answered right there, without entering
Flask. Every other outcome is handed to the Flask app, whose one view renders
it: the archive banner, the plain 400/404/405 answers and the ``/-/``
endpoints. No answer is built from the Host header, and nothing raises a 500.
Each legacy request (not the ``/-/`` endpoints) is then handed to the recorder
(``gateway.accesslog``: metrics and one JSON log line). What each outcome answers
(status, Cache-Control, headers) is read from ``gateway.responses``; this module
only lays it out. It holds the one catch-all for faults: the request still gets an
answer (``decide.fallback``), never a 500.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import logging
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from html import escape
from http import HTTPStatus
from importlib.resources import files
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.http import http_date

from gateway.archive import ArchiveError
from gateway.archive.html import banner_html, decode_page, rewrite_page
from gateway.archive.payload import open_payload, stream_payload
from gateway.archive.reader import parse_date
from gateway.banner import MAX_ACCEPT_LANGUAGE, URL_CHARS, archived_banner, banner_page
from gateway.crawlers import robots_txt, sitemap, sitemap_xml
from gateway.decide import decide, fallback
from gateway.outcomes import (
    Archived,
    Favicon,
    Gone,
    NotFound,
    Outcome,
    Redirect,
    RobotsTxt,
    ServiceEndpoint,
    SitemapXml,
    Unavailable,
)
from gateway.responses import ANSWERS, NO_STORE, Body, answer_of, plain_text, status_of

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from gateway.mapfile import RedirectMap
    from gateway.maps import MapHolder

log = logging.getLogger(__name__)

# Who may read the service endpoints in full: /-/health's detail (map path, last error,
# pid) and /-/metrics. Anyone else gets health's bare status (load balancers probe it)
# and a 404 for metrics. With nginx in front, nginx enforces its own allow-list.
SERVICE_ALLOW_DEFAULT = "127.0.0.0/8,::1/128"
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

OUTCOME_KEY = "gateway.outcome"
MAP_KEY = "gateway.map"


def request_target(environ: WSGIEnvironment) -> str:
    """Return the raw request target: gunicorn's RAW_URI, else one rebuilt from PATH_INFO."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe=URL_CHARS)
    query = environ.get("QUERY_STRING", "")
    return f"{path}?{query}" if query else path or "/"


class Recorder(Protocol):
    """Records an answered request: metrics and the access log (gateway.accesslog)."""

    def __call__(
        self,
        environ: WSGIEnvironment,
        target: str,
        outcome: Outcome,
        status: int,
        started: float,
        redirect_map: RedirectMap | None,
    ) -> None: ...


class GatewayMiddleware:
    """Decide every request; answer redirects here, pass every other outcome to Flask."""

    def __init__(
        self, maps: MapHolder, flask_app: WSGIApplication, record: Recorder | None = None
    ) -> None:
        self.maps = maps
        self.flask_app = flask_app
        self.record = record

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = perf_counter()
        redirect_map = self.maps.current()  # once: the whole request sees one map version
        target = request_target(environ)
        host = environ.get("HTTP_HOST", "")
        outcome: Outcome
        try:
            outcome = decide(redirect_map, environ.get("REQUEST_METHOD", "GET"), host, target)
        except Exception:
            # The one catch-all: never a 500. The commands let the same fault through.
            log.exception("deciding failed for %r", environ.get("RAW_URI"))
            outcome = (
                Unavailable() if redirect_map is None else fallback(redirect_map, host, target)
            )
        if type(outcome) is Redirect:
            assert redirect_map is not None  # a redirect comes from a map
            body = self._redirect(outcome, redirect_map, environ, start_response)
            if self.record is not None:
                self.record(environ, target, outcome, outcome.status, started, redirect_map)
            return body
        environ[OUTCOME_KEY] = outcome
        environ[MAP_KEY] = redirect_map
        if self.record is None or type(outcome) is ServiceEndpoint:
            return self.flask_app(environ, start_response)  # /-/ endpoints are not recorded
        statuses: list[str] = []

        def capture(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        result = self.flask_app(environ, capture)
        code = int(statuses[-1][:3]) if statuses else 500
        self.record(environ, target, outcome, code, started, redirect_map)
        return result

    @staticmethod
    def _redirect(
        outcome: Redirect,
        redirect_map: RedirectMap,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        location = outcome.location
        body = redirect_body(location)
        start_response(
            _STATUS_LINES[outcome.status],
            [
                ("Location", location),
                ("Cache-Control", _redirect_cache(redirect_map.site.redirect_max_age)),
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(body))),  # HEAD: the length GET would send
            ],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


# Built once: the hot path formats neither a status line nor a Cache-Control per request.
_STATUS_LINES = {s: f"{s} {HTTPStatus(s).phrase}" for s in (301, 302, 307, 308)}
_redirect_cache = functools.lru_cache(maxsize=8)(ANSWERS[Redirect].cache_control)


def redirect_body(location: str) -> bytes:
    """Return the tiny HTML body of a redirect: a link to where it goes."""
    href = escape(location)
    return f'<!doctype html><title>Moved</title><a href="{href}">{href}</a>\n'.encode()


# --- rendering in Flask ---------------------------------------------------------------------


def _style() -> tuple[str, str]:
    """Read the banner's stylesheet once and return it with its CSP hash source."""
    css = files("gateway").joinpath("static/banner.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return css, f"'sha256-{digest}'"


def plain(status: int, text: str, **headers: str) -> Response:
    """Return a short text/plain answer that no cache keeps."""
    response = Response(text + "\n", status=status, mimetype="text/plain")
    response.headers["Cache-Control"] = NO_STORE
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers.update(headers)
    return response


def parse_allow(text: str | Networks) -> Networks:
    """Read comma-separated CIDRs (GATEWAY_SERVICE_ALLOW); raise ValueError naming a bad one."""
    if isinstance(text, tuple):
        return text
    networks = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"GATEWAY_SERVICE_ALLOW: {item!r} is not an address or CIDR") from None
    return tuple(networks)


def _allowed(address: str | None, allow: Networks) -> bool:
    """Say whether a client address is in the allow-list (no address: not allowed)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in allow)


def init_app(
    app: Flask,
    maps: MapHolder,
    record: Recorder | None = None,
    service_allow: Networks | None = None,
) -> None:
    """Wire the gateway into a Flask app: the middleware in front, one view behind it."""
    allow = parse_allow(SERVICE_ALLOW_DEFAULT) if service_allow is None else service_allow
    css, style_source = _style()
    csp = (
        f"default-src 'none'; style-src {style_source}; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    endpoints: dict[str, Callable[[], Response]] = {"health": lambda: health(maps)}
    icon = files("gateway").joinpath("static/favicon.ico").read_bytes()

    def banner(outcome: Gone | NotFound, redirect_map: RedirectMap) -> Response:
        # Read from the environ and cut before any decoding: a 1 MB header would otherwise
        # be re-encoded whole by Werkzeug's header view (issue 13: 1.5x a banner).
        accept = str(request.environ.get("HTTP_ACCEPT_LANGUAGE", ""))[:MAX_ACCEPT_LANGUAGE]
        page = banner_page(redirect_map, outcome, accept)
        html = render_template("banner.html", page=page, style=css)
        spec = answer_of(outcome)
        response = Response(html, status=status_of(outcome), mimetype="text/html")
        response.headers.update(spec.headers)
        response.headers["Cache-Control"] = spec.cache_control(redirect_map.site.redirect_max_age)
        response.headers["Content-Security-Policy"] = csp
        response.headers["Content-Language"] = page.lang
        return response

    def archived(outcome: Archived, redirect_map: RedirectMap) -> Response:
        """Render a capture (spec §8): an HTML page under the banner, or the bytes captured."""
        capture = outcome.capture
        spec = answer_of(outcome)
        mime = capture.mime or "application/octet-stream"
        tag = hashlib.sha256(f"{capture.path}\0{capture.offset}\0{capture.date}".encode())
        length = capture.payload_length
        if mime.partition(";")[0].strip().lower() in HTML_TYPES:
            try:
                body = open_payload(capture).read()
            except ArchiveError as exc:
                log.error("archived copy unreadable: %s", exc)
                missing = NotFound(outcome.url, outcome.host, "archived copy unreadable")
                return banner(missing, redirect_map)
            accept = str(request.environ.get("HTTP_ACCEPT_LANGUAGE", ""))[:MAX_ACCEPT_LANGUAGE]
            lang, lines = archived_banner(redirect_map, outcome, accept)
            page = rewrite_page(
                decode_page(body, mime),
                page_url=capture.url,
                request_host=outcome.host,
                host_of=redirect_map.host_of,
                banner=banner_html(lang, lines),
            )
            response = Response(page, status=200, mimetype="text/html")
            response.headers["Content-Language"] = lang
            response.headers["Vary"] = "Accept-Language"
            tag.update(f"\0{lang}\0{redirect_map.version}".encode())
        else:
            # Streamed, the file opened only when the body is sent (not for HEAD or 304).
            response = Response(stream_payload(capture), status=200, content_type=mime)
            response.direct_passthrough = True
            if length >= 0:
                response.content_length = length
        response.headers.update(spec.headers)
        response.headers["Cache-Control"] = spec.cache_control(redirect_map.site.redirect_max_age)
        response.headers["Content-Security-Policy"] = archived_csp(redirect_map)
        when = parse_date(capture.date)
        if when is not None:
            response.headers["Memento-Datetime"] = http_date(when)
        original = quote(capture.url, safe=URL_CHARS + "#")
        link = f'<{original}>; rel="original"'
        if redirect_map.archive.wayback:
            link += f', <{redirect_map.archive.wayback}{original}>; rel="timegate"'
        response.headers["Link"] = link
        response.set_etag(tag.hexdigest()[:32])
        ranges = response.direct_passthrough and length > 0
        try:
            response.make_conditional(
                request, accept_ranges=ranges, complete_length=length if ranges else None
            )
        except RequestedRangeNotSatisfiable:
            return plain(416, "Range not satisfiable.", **{"Content-Range": f"bytes */{length}"})
        return response

    def own_file(outcome: RobotsTxt | SitemapXml | Favicon, redirect_map: RedirectMap) -> Response:
        body: str | bytes | None = icon
        if not isinstance(outcome, Favicon):
            # The host asked for, in the scheme it was asked in: engines want the same origin.
            origin = f"{request.scheme}://{outcome.host}"
            if isinstance(outcome, RobotsTxt):
                body = robots_txt(redirect_map, origin)
            else:
                found = sitemap(redirect_map, outcome.host, decide)
                body = sitemap_xml(found, origin, outcome.part)
        if body is None:
            return plain(404, "No such part of the sitemap.")
        spec = answer_of(outcome)
        response = Response(body, status=status_of(outcome), content_type=spec.content_type)
        response.headers.update(spec.headers)
        response.headers["Cache-Control"] = spec.cache_control(redirect_map.site.redirect_max_age)
        return response

    def service(outcome: ServiceEndpoint) -> Response:
        if request.method not in ("GET", "HEAD"):
            return plain(405, "Method not allowed.", Allow="GET, HEAD")
        if not _allowed(request.remote_addr, allow):
            if outcome.name == "health":
                return health(maps, detail=False)
            return plain(404, "No such service endpoint.")
        endpoint = endpoints.get(outcome.name)
        return endpoint() if endpoint else plain(404, "No such service endpoint.")

    def render(outcome: Outcome, redirect_map: RedirectMap | None) -> Response:
        """Render an outcome as its row of the answer table says."""
        spec = answer_of(outcome)
        if isinstance(outcome, ServiceEndpoint):
            return service(outcome)
        if spec.body is Body.PLAIN or redirect_map is None:
            return plain(status_of(outcome), plain_text(outcome), **dict(spec.headers))
        if isinstance(outcome, Redirect):  # only when the middleware was bypassed
            response = Response(status=outcome.status)
            response.headers["Location"] = outcome.location
            response.headers["Cache-Control"] = spec.cache_control(
                redirect_map.site.redirect_max_age
            )
            return response
        if isinstance(outcome, (RobotsTxt, SitemapXml, Favicon)):
            return own_file(outcome, redirect_map)
        if isinstance(outcome, Archived):
            try:
                return archived(outcome, redirect_map)
            except Exception:  # never a 500: the 404 banner, as for a fault in deciding
                log.exception("rendering the archived copy of %s failed", outcome.capture.url)
                outcome = NotFound(outcome.url, outcome.host, "archived copy failed to render")
        assert isinstance(outcome, (Gone, NotFound)), spec
        try:
            return banner(outcome, redirect_map)
        except Exception:
            log.exception("rendering the banner failed")
            return plain(404, "Not found.")

    def answer() -> Response:
        """Render the outcome the middleware decided (or decide now, for direct WSGI use)."""
        outcome: Outcome | None = request.environ.get(OUTCOME_KEY)
        redirect_map: RedirectMap | None = request.environ.get(MAP_KEY)
        if outcome is None:
            redirect_map = maps.current()
            target = request_target(request.environ)
            outcome = decide(redirect_map, request.method, request.host, target)
        return render(outcome, redirect_map)

    app.extensions["gateway.answer"] = answer
    app.extensions["gateway.endpoints"] = endpoints
    app.extensions["gateway.maps"] = maps
    app.wsgi_app = GatewayMiddleware(maps, app.wsgi_app, record)  # type: ignore[method-assign]


HTML_TYPES = ("text/html", "application/xhtml+xml")


def archived_csp(redirect_map: RedirectMap) -> str:
    """Return the CSP of an archived copy: no script, no form, fetches from served hosts only."""
    return _archived_csp(tuple(redirect_map.hosts))


@functools.lru_cache(maxsize=8)
def _archived_csp(names: tuple[str, ...]) -> str:
    """Build the archived copies' CSP once per set of served names, not per request."""
    hosts = " ".join(sorted(names))  # wildcards ("*.DOMAIN") are CSP sources too
    return (
        f"default-src 'none'; img-src 'self' data: {hosts}; style-src 'self' 'unsafe-inline'"
        f" {hosts}; font-src 'self' data: {hosts}; media-src 'self' {hosts}; script-src 'none';"
        " object-src 'none'; frame-src 'none'; connect-src 'none'; form-action 'none';"
        " base-uri 'none'; frame-ancestors 'none'"
    )


def health(maps: MapHolder, *, detail: bool = True) -> Response:
    """Answer /-/health: which map is served, since when, and the last reload error.

    200 while a valid map is served (the map on disk, or its last-known-good copy:
    "status" says "degraded"), 503 when there is none. Without ``detail`` (a client
    outside the allow-list) only that status: no path, error, pid or counts.
    """
    state = maps.status()
    current = state.map
    attempt = state.last_attempt_at
    status = {"map": "ok", "last-known-good": "degraded"}.get(state.serving, "unavailable")
    if not detail:
        response = jsonify(status=status)
        response.status_code = 200 if current else 503
        response.headers["Cache-Control"] = NO_STORE
        return response
    response = jsonify(
        status=status,
        serving=state.serving,
        version=current.version if current else None,
        rules=len(current.rules) if current else 0,
        captures=len(current.captures) if current else 0,
        archive_problems=[str(p) for p in current.archive_problems] if current else [],
        rules_by_kind=current.rules_by_kind if current else {},
        hosts=sorted(set(current.hosts.values())) if current else [],
        map=current.path if current else maps.path,
        loaded_at=current.loaded_at.isoformat() if current else None,
        last_reload_attempt=attempt.isoformat() if attempt else None,
        last_reload_ok=state.last_attempt_ok,
        last_error=state.last_error,
        pid=os.getpid(),
        now=datetime.now(UTC).isoformat(),
    )
    response.status_code = 200 if current else 503
    response.headers["Cache-Control"] = NO_STORE
    return response
