"""What a safe answer is, checked the same way by the attack corpus, the properties and the fuzzers.

Owns three judgements about one response, each independent of how the gateway
builds it:

- ``location_problems``: a ``Location`` must be absolute ``https`` on an allowed host,
  read the same by a WHATWG parser (``ada-url``) and by a naive split, with no control
  characters, backslashes, userinfo or ``//`` path that a second parser could read as
  another authority.
- ``banner_problems``: the banner page must have the template's own element structure
  (no element or attribute added by the request), and the request-derived text (the
  requested URL, the archived-copy link) must carry no raw ``<``, ``>``, ``"`` or ``'``.
- ``response_problems``: both of the above, plus no 5xx and the headers that go with
  each status class.

Each returns a list of findings (empty when safe), so that a test can both assert and
count them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from html.parser import HTMLParser
from urllib.parse import urlsplit

import ada_url
from hypothesis import HealthCheck, settings

# `make test` runs a few hundred examples per property; `make fuzz` sets 10000.
MAX_EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "200"))

# Deadlines are off: speed is measured in bench/, never asserted in tests.
PROPERTY_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

_UNSAFE_LOCATION_CHARS = re.compile(r"[\x00-\x20\x7f-\uffff\\]")


def location_problems(location: str, host_allowed: Callable[[str], bool]) -> list[str]:
    """List what is unsafe about a Location value (empty when it is safe)."""
    problems: list[str] = []
    bad = _UNSAFE_LOCATION_CHARS.search(location)
    if bad:
        problems.append(f"raw {bad.group()!r} (control, space, non-ASCII or backslash)")
    if not location.startswith("https://"):
        problems.append("not an absolute https:// URL")
        return problems
    authority = re.split(r"[/?#]", location[len("https://") :], maxsplit=1)[0]
    if "@" in authority:
        problems.append(f"userinfo in the authority {authority!r}")
    try:
        parsed = ada_url.URL(location)
    except ValueError:
        problems.append("ada-url cannot parse it")
        return problems
    if parsed.protocol != "https:":
        problems.append(f"ada-url reads the scheme as {parsed.protocol!r}")
    if parsed.username or parsed.password:
        problems.append("ada-url finds userinfo")
    if parsed.port:
        problems.append(f"an explicit port {parsed.port!r}")
    if parsed.hostname != authority.lower().rstrip("."):
        problems.append(f"ada-url reads the host as {parsed.hostname!r}, a split as {authority!r}")
    if not host_allowed(parsed.hostname):
        problems.append(f"host {parsed.hostname!r} is not an allowed target")
    if parsed.pathname.startswith("//"):
        problems.append("path starts with '//' (protocol-relative if the scheme is dropped)")
    split_host = urlsplit(location).hostname or ""
    if split_host != parsed.hostname:
        problems.append(f"urllib reads the host as {split_host!r}, ada-url as {parsed.hostname!r}")
    return problems


class _Shape(HTMLParser):
    """Collects the element structure of a page: each start tag with its attribute names."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if (tag, attrs) == ("wbr", []):
            return  # the template's wrap points in the URL: as many as it has slashes
        self.tags.append((tag, tuple(name for name, _ in attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


Shape = tuple[tuple[str, tuple[str, ...]], ...]


def banner_shape(html: str) -> Shape:
    """Return the element structure of a page (tags and attribute names, in order)."""
    parser = _Shape()
    parser.feed(html)
    parser.close()
    return tuple(parser.tags)


_CODE = re.compile(r"<code\b[^>]*>(.*?)</code>", re.S)
_ARCHIVE_HREF = re.compile(r'<a href="([^"]*)" rel="nofollow">')
_RAW_MARKUP = re.compile(r"[<>\"']")


def banner_problems(html: str, known_shapes: Iterable[Shape]) -> list[str]:
    """List markup taken from the request into a banner page (empty when none)."""
    problems: list[str] = []
    shape = banner_shape(html)
    if shape not in set(known_shapes):
        extra = sorted(set(shape) - {t for s in known_shapes for t in s})
        problems.append(f"element structure differs from the template's: {extra or shape}")
    codes = _CODE.findall(html)
    if len(codes) != 1:
        problems.append(f"{len(codes)} <code> elements where the template has one")
    for raw in codes:
        # The template's own wrap points, bare <wbr> elements, are the only markup allowed.
        if _RAW_MARKUP.search(raw.replace("<wbr>", "")):
            problems.append(f"raw markup character in the requested URL: {raw[:120]!r}")
    for href in _ARCHIVE_HREF.findall(html):
        if _RAW_MARKUP.search(href):
            problems.append(f"raw markup character in the archived-copy link: {href[:120]!r}")
    return problems


def response_problems(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    host_allowed: Callable[[str], bool],
    known_shapes: Iterable[Shape],
    method: str = "GET",
) -> list[str]:
    """List everything unsafe about one response: 5xx, Location, headers, reflected markup."""
    problems: list[str] = []
    # Header names compare without case (Flask and the raw harness spell them differently).
    headers = {name.title(): value for name, value in headers.items()}
    if status >= 500:
        problems.append(f"status {status}")
    location = headers.get("Location")
    if 300 <= status < 400:
        if location is None:
            problems.append(f"{status} without a Location")
        else:
            problems += [
                f"Location {location!r}: {p}" for p in location_problems(location, host_allowed)
            ]
        if not headers.get("Cache-Control", "").startswith("public, max-age="):
            problems.append(f"redirect with Cache-Control {headers.get('Cache-Control')!r}")
    elif location is not None:
        problems.append(f"a Location on a {status}: {location!r}")
    content_type = headers.get("Content-Type", "")
    if content_type.startswith("text/html") and status in (404, 410) and method != "HEAD":
        problems += banner_problems(body.decode("utf-8"), known_shapes)
        if "Content-Security-Policy" not in headers:
            problems.append("banner without a Content-Security-Policy")
    if status in (400, 405) and headers.get("Cache-Control") != "no-store":
        problems.append(f"{status} with Cache-Control {headers.get('Cache-Control')!r}")
    if status == 405 and headers.get("Allow") != "GET, HEAD":
        problems.append(f"405 with Allow {headers.get('Allow')!r}")
    return problems


# Benign requests whose banners show every shape the template has: 404, 410 without and
# with a suggested page, in both languages (bundled map paths).
BASELINE_REQUESTS = tuple(
    (target, language)
    for target in ("/zz-baseline-page", "/bitrix/redirect.php", "/upload/baseline.pdf")
    for language in ("ru", "en")
)


def baseline_shapes(render: Callable[[str, str], str]) -> frozenset[Shape]:
    """Return the banner shapes of the benign requests; `render(target, language)` gives HTML."""
    return frozenset(banner_shape(render(t, lang)) for t, lang in BASELINE_REQUESTS)
