"""What the archive banner page says: its language, words and links, decided in Python.

The template only lays these values out. Keeping the decisions here makes them
testable without an app and keeps per-request work out of Jinja (Werkzeug parses
Accept-Language; nothing here needs Flask).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from gateway.canonical import wire_bytes
from gateway.mapfile import RedirectMap
from gateway.outcomes import Gone, NotFound
from gateway.responses import status_of

# Characters a URL may carry as they are; anything else from the request is escaped.
URL_CHARS = "/:@!$&'()*+,;=-._~%?"
# Bidi controls would reorder the URL as shown; show them percent-encoded, as in a URL.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

TEXTS: Mapping[str, Mapping[str, str]] = {
    "ru": {
        "org": "Администрация города Хабаровска",
        "site": "Архивная версия сайта khabarovskadm.ru",
        "title": "Страница перенесена в архив",
        "lead_410": "Этой страницы нет на новом сайте.",
        "lead_404": "Страница не найдена.",
        "nav": "Куда перейти",
        "home": "Перейти на новый сайт",
        "see": "Рекомендуемая страница",
        "archive": "Архивная копия страницы",
        "requested": "Запрошенный адрес:",
    },
    "en": {
        "org": "Khabarovsk City Administration",
        "site": "Archived website khabarovskadm.ru",
        "title": "This page has been archived",
        "lead_410": "This page has no equivalent on the new website.",
        "lead_404": "Page not found.",
        "nav": "Where to go next",
        "home": "Go to the new website",
        "see": "Suggested page",
        "archive": "Archived copy of this page",
        "requested": "You requested:",
    },
}


@dataclass(frozen=True, slots=True)
class BannerPage:
    """Everything the banner template shows; URLs are safe to link, text is escaped by Jinja."""

    lang: str
    status: int
    texts: Mapping[str, str]
    notice: str
    notice_lang: str  # "ru" when an English page shows the Russian notice (no en given)
    home_url: str
    home_host: str
    see_url: str | None
    see_label: str | None
    archive_url: str | None
    archive_host: str | None
    requested_url: str

    @property
    def lead(self) -> str:
        """Return the sentence under the title: gone (410) or not found (404)."""
        return self.texts["lead_410" if self.status == 410 else "lead_404"]


def banner_language(outcome: Gone | NotFound, accept_language: str) -> str:
    """Choose the banner's language: English for /en/ and /eng/ or when preferred over Russian."""
    first = outcome.url.path.split("/", 2)[1].lower()
    if first in ("en", "eng"):
        return "en"
    accept = parse_accept_header(accept_language, LanguageAccept)
    weights = {"en": 0.0, "ru": 0.0}
    for tag, quality in accept:
        primary = tag.lower().partition("-")[0]
        if primary in weights:
            weights[primary] = max(weights[primary], quality)
    return "en" if weights["en"] > weights["ru"] else "ru"


def archive_url(redirect_map: RedirectMap, outcome: Gone | NotFound) -> str | None:
    """Return the archived-copy link: the wayback prefix + http:// + host + the raw target."""
    wayback = redirect_map.archive.wayback
    if wayback is None:
        return None
    raw = quote(wire_bytes(outcome.url.raw_target), safe=URL_CHARS)
    return f"{wayback}http://{outcome.host}{raw}"


def displayed_url(text: str) -> str:
    """Return a URL as the banner shows it: bidi controls percent-encoded so none reorders it."""
    return _BIDI.sub(lambda m: quote(m.group(), safe=""), text)


def banner_page(
    redirect_map: RedirectMap, outcome: Gone | NotFound, accept_language: str
) -> BannerPage:
    """Decide what the banner shows for this outcome and this reader."""
    lang = banner_language(outcome, accept_language)
    archive = redirect_map.archive
    notice = archive.notice_en if lang == "en" else archive.notice_ru
    home_url = redirect_map.site.new_site + "/"
    see_url = outcome.rule.see if isinstance(outcome, Gone) else None
    archived = archive_url(redirect_map, outcome)
    url = outcome.url
    query = f"?{url.raw_query}" if url.raw_query else ""
    # No scheme: behind a TLS terminator the gateway cannot tell http from https.
    requested = displayed_url(f"{outcome.host}{url.path_text}{query}")
    return BannerPage(
        lang=lang,
        status=status_of(outcome),
        texts=TEXTS[lang],
        notice=notice,
        notice_lang="ru" if notice == archive.notice_ru else lang,
        home_url=home_url,
        home_host=urlsplit(home_url).netloc,
        see_url=see_url,
        see_label=see_url.split("://", 1)[-1] if see_url else None,
        archive_url=archived,
        archive_host=urlsplit(archived).netloc if archived else None,
        requested_url=requested,
    )
