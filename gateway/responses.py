"""What each kind of outcome answers: its status, cache policy, headers, and the name it goes by.

``ANSWERS`` is the one table. The web edge renders from it, the access log and the
metrics name outcomes by it, ``gateway explain`` shows it and ``gateway coverage``
counts by it. A new kind of answer is a new outcome (``gateway.outcomes``), a row
here, a branch in ``gateway.decide`` and, if it has a new ``body``, a renderer in
``gateway.web``. Pure: no Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

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

NO_STORE = "no-store"
BANNER_MAX_AGE = 3600  # seconds a banner may be cached: the map can gain a rule for it
# The banner's page is chosen by Accept-Language and links off-site: say so to caches and
# browsers. (Its Content-Security-Policy and Content-Language come from the renderer.)
BANNER_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Vary", "Accept-Language"),
)
# What coverage calls the files every site has; the gateway answers these itself.
FURNITURE = "page furniture (css, js, images, fonts, favicon)"


class Body(Enum):
    """How an answer's body is rendered (and the kind ``gateway explain`` shows)."""

    REDIRECT = "redirect"  # Location and a tiny link page
    BANNER = "banner"  # the archive banner page
    PLAIN = "plain"  # one line of text/plain
    FILE = "file"  # a file of the gateway's own: robots.txt, sitemap.xml, the icon
    SERVICE = "service"  # a /-/ endpoint answers for itself
    ARCHIVED = "archived"  # a capture from the web archive: the page under the banner, or bytes


class Cache(Enum):
    """Who may keep an answer, and for how long."""

    REDIRECT = "redirect"  # public, for the map's redirect_max_age
    BANNER = "banner"  # public, for BANNER_MAX_AGE (banners and the gateway's own files)
    NO_STORE = "no-store"  # errors and service answers: never kept


@dataclass(frozen=True, slots=True)
class Answer:
    """One row of the table: what an outcome of one kind answers."""

    name: str  # in access-log lines, metric labels, explain and check output
    body: Body
    status: int | None  # None: the outcome carries its own (a redirect rule's status)
    cache: Cache
    text: str = ""  # a PLAIN body; "{reason}" is the outcome's reason
    content_type: str = ""  # a FILE body's
    headers: tuple[tuple[str, str], ...] = ()
    coverage: str = "skipped"  # the bucket gateway coverage counts it in
    skip_reason: str = ""  # why coverage skips it

    def cache_control(self, redirect_max_age: int) -> str:
        """Return the Cache-Control value, given the map's redirect_max_age."""
        if self.cache is Cache.REDIRECT:
            return f"public, max-age={redirect_max_age}"
        if self.cache is Cache.BANNER:
            return f"public, max-age={BANNER_MAX_AGE}"
        return NO_STORE


def _own_file(name: str, content_type: str) -> Answer:
    """Return the row of a file the gateway serves itself: public for an hour, never sniffed."""
    return Answer(
        name,
        Body.FILE,
        200,
        Cache.BANNER,
        content_type=content_type,
        headers=(("X-Content-Type-Options", "nosniff"),),
        skip_reason=FURNITURE,
    )


ANSWERS: dict[type, Answer] = {
    Redirect: Answer("redirect", Body.REDIRECT, None, Cache.REDIRECT, coverage="redirect"),
    Gone: Answer("gone", Body.BANNER, 410, Cache.BANNER, headers=BANNER_HEADERS, coverage="gone"),
    # The Content-Security-Policy, Memento-Datetime, Link and ETag come from the renderer.
    Archived: Answer(
        "archived",
        Body.ARCHIVED,
        200,
        Cache.BANNER,
        headers=(("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")),
        coverage="archived",
    ),
    NotFound: Answer(
        "not_found", Body.BANNER, 404, Cache.BANNER, headers=BANNER_HEADERS, coverage="unmapped"
    ),
    UnknownHost: Answer(
        "unknown_host",
        Body.PLAIN,
        404,
        Cache.NO_STORE,
        text="This host is not served here.",
        skip_reason="host not under hosts:",
    ),
    BadRequest: Answer(
        "bad_request",
        Body.PLAIN,
        400,
        Cache.NO_STORE,
        text="Bad request: {reason}.",
        skip_reason="malformed URL (400)",
    ),
    MethodNotAllowed: Answer(
        "method_not_allowed",
        Body.PLAIN,
        405,
        Cache.NO_STORE,
        text="Method not allowed: this site answers GET and HEAD.",
        headers=(("Allow", "GET, HEAD"),),
        skip_reason="method not allowed (405)",
    ),
    RobotsTxt: _own_file("robots", "text/plain; charset=utf-8"),
    SitemapXml: _own_file("sitemap", "application/xml; charset=utf-8"),
    Favicon: _own_file("favicon", "image/x-icon"),
    Unavailable: Answer(
        "unavailable",
        Body.PLAIN,
        503,
        Cache.NO_STORE,
        text="Service unavailable: no valid redirect map is loaded.",
        headers=(("Retry-After", "5"),),
        skip_reason="no valid map (503)",
    ),
    ServiceEndpoint: Answer(
        "service", Body.SERVICE, None, Cache.NO_STORE, skip_reason="/-/ service endpoint"
    ),
}


def answer_of(outcome: Outcome) -> Answer:
    """Return the table's row for an outcome."""
    return ANSWERS[type(outcome)]


def status_of(outcome: Outcome) -> int:
    """Return the HTTP status an outcome answers with (a service endpoint's is its own: 200)."""
    status = ANSWERS[type(outcome)].status
    if status is not None:
        return status
    return outcome.status if isinstance(outcome, Redirect) else 200


def plain_text(outcome: Outcome) -> str:
    """Return the one line a PLAIN answer says."""
    text = ANSWERS[type(outcome)].text
    return text.format(reason=outcome.reason) if isinstance(outcome, BadRequest) else text
