"""What the gateway decides for a request: small values that the web layer and the CLI render.

Every answer is one of these, decided in one place (``gateway.decide``), so the
server and ``gateway explain`` can never disagree. What each one answers (status,
headers, its name) is ``gateway.responses``' table, not a property of the value.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.archive.index import Capture
from gateway.canonical import LegacyURL
from gateway.rules import Rule


@dataclass(frozen=True, slots=True)
class Redirect:
    """A rule answered with a redirect to ``location`` (absolute https on an allowed host)."""

    status: int
    location: str
    rule: Rule
    url: LegacyURL
    host: str


@dataclass(frozen=True, slots=True)
class Gone:
    """A 410 rule answered: the banner page, with its suggested page if any."""

    rule: Rule
    url: LegacyURL
    host: str


@dataclass(frozen=True, slots=True)
class NotFound:
    """No rule answered (or matching failed): the banner page with status 404."""

    url: LegacyURL
    host: str
    reason: str = "no rule matches"


@dataclass(frozen=True, slots=True)
class Archived:
    """No rule answered, the web archive did (spec §8): the old page itself, under the notice.

    ``via``: the captured redirects followed to reach it (their URLs), in order.
    """

    capture: Capture
    url: LegacyURL
    host: str
    via: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownHost:
    """The Host header names no host under ``hosts:``: a plain 404, never a redirect."""

    host: str


@dataclass(frozen=True, slots=True)
class BadRequest:
    """The request target cannot be read (bad escape, control character, bad bytes)."""

    reason: str


@dataclass(frozen=True, slots=True)
class MethodNotAllowed:
    """A method other than GET and HEAD."""

    method: str


@dataclass(frozen=True, slots=True)
class RobotsTxt:
    """``/robots.txt`` on a served host (spec §9): answered by the gateway, before any rule."""

    host: str


@dataclass(frozen=True, slots=True)
class SitemapXml:
    """``/sitemap.xml`` on a served host (spec §9): its old URLs; ``part`` of an index."""

    host: str
    part: int | None = None


@dataclass(frozen=True, slots=True)
class Favicon:
    """``/favicon.ico`` that no rule answers: the gateway's own icon, not the banner page."""


@dataclass(frozen=True, slots=True)
class Unavailable:
    """No valid map is loaded at all (none on disk, no last-known-good copy): 503."""


@dataclass(frozen=True, slots=True)
class ServiceEndpoint:
    """A request for ``/-/...`` (health, metrics), answered on any host."""

    name: str


Outcome = (
    Redirect
    | Gone
    | Archived
    | NotFound
    | UnknownHost
    | BadRequest
    | MethodNotAllowed
    | RobotsTxt
    | SitemapXml
    | Favicon
    | Unavailable
    | ServiceEndpoint
)
