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

from gateway.canonical import Malformed, decode, wire_bytes
from gateway.mapfile import RedirectMap
from gateway.outcomes import Archived, Gone, NotFound
from gateway.responses import status_of

# Characters a URL may carry as they are; anything else from the request is escaped.
URL_CHARS = "/:@!$&'()*+,;=-._~%?"
# Bidi controls would reorder the URL as shown; show them percent-encoded, as in a URL.
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

# Accept-Language is read this far and no further: a real one is under 100 characters, and
# a header of thousands of entries would cost more to parse than the answer (issue 13).
MAX_ACCEPT_LANGUAGE = 128
_LANGUAGE_RANGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")  # RFC 4647, "*" aside
# What was asked for is a file, not a page: uploads and the usual document and image types.
FILE_EXTENSIONS = frozenset(
    {
        *("pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "rtf", "txt"),
        *("csv", "zip", "rar", "7z", "jpg", "jpeg", "png", "gif", "tif", "tiff", "bmp"),
    }
)

# The icon (tools/make_favicon.py draws the same shapes into /favicon.ico), inline so that
# the banner fetches nothing.
FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="6" fill="#1d4f91"/>'
    '<path fill="#fff" d="M6 7h20v5H6zM8 13h16v13H8z"/>'
    '<path fill="#1d4f91" d="M13 16h6v2h-6z"/></svg>'
)
FAVICON_URL = "data:image/svg+xml," + quote(FAVICON_SVG, safe=" =:/\"'")

TEXTS: Mapping[str, Mapping[str, str]] = {
    "ru": {
        "org": "Администрация города Хабаровска",
        "site": "Архивная версия сайта khabarovskadm.ru",
        "title_gone_page": "Страница перенесена в архив",
        "title_gone_file": "Файл перенесён в архив",
        "title_missing_page": "Страница не найдена",
        "title_missing_file": "Файл не найден",
        "lead_gone_page": "Этой страницы нет на новом сайте.",
        "lead_gone_file": "Этого файла нет на новом сайте.",
        "lead_missing_page": "По этому адресу нет страницы ни на новом сайте, ни в архиве.",
        "lead_missing_file": "По этому адресу нет файла ни на новом сайте, ни в архиве.",
        "nav": "Куда перейти",
        "home": "Перейти на новый сайт {host}",
        "see": "Рекомендуемая страница",
        "archive": "Архивная копия страницы",
        "requested": "Запрошенный адрес:",
        "description": "Архивная версия сайта администрации города Хабаровска.",
    },
    "en": {
        "org": "Khabarovsk City Administration",
        "site": "Archived website khabarovskadm.ru",
        "title_gone_page": "This page has been archived",
        "title_gone_file": "This file has been archived",
        "title_missing_page": "Page not found",
        "title_missing_file": "File not found",
        "lead_gone_page": "This page has no equivalent on the new website.",
        "lead_gone_file": "This file has no equivalent on the new website.",
        "lead_missing_page": "This address has no page on the new website or in the archive.",
        "lead_missing_file": "This address has no file on the new website or in the archive.",
        "nav": "Where to go next",
        # The new site is in Russian: say so before the reader follows the link.
        "home": "Go to the new website {host} (in Russian)",
        "see": "Suggested page",
        "archive": "Archived copy of this page",
        "requested": "You requested:",
        "description": "The archived website of the Khabarovsk City Administration.",
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
    is_file: bool = False  # an uploaded file was asked for, not a page
    favicon_url: str = FAVICON_URL

    @property
    def title(self) -> str:
        """Return the one heading: archived (410) or not found (404), a page or a file."""
        return self.texts[f"title_{self._state}"]

    @property
    def lead(self) -> str:
        """Return the sentence under the title: gone (410) or not found (404)."""
        return self.texts[f"lead_{self._state}"]

    @property
    def _state(self) -> str:
        return ("gone_" if self.status == 410 else "missing_") + (
            "file" if self.is_file else "page"
        )

    @property
    def home_label(self) -> str:
        """Return the words of the button to the new site."""
        return self.texts["home"].format(host=self.home_host)

    @property
    def description(self) -> str:
        """Return the page's meta description: what this site is, then the notice."""
        return f"{self.texts['description']} {self.notice}"

    @property
    def notice_parts(self) -> tuple[tuple[str, str | None], ...]:
        """Return the notice as text runs, each with the link it is (the new site), or None."""
        target = self.home_url.rstrip("/")
        pieces = self.notice.split(target)
        parts: list[tuple[str, str | None]] = []
        for i, piece in enumerate(pieces):
            if i:
                parts.append((target, self.home_url))
            if piece:
                parts.append((piece, None))
        return tuple(parts)

    @property
    def requested_parts(self) -> tuple[str, ...]:
        """Return the requested URL cut after each '/', '?', '&': where it may wrap."""
        return tuple(re.findall(r"[^/?&]*[/?&]|[^/?&]+", self.requested_url))


def is_file(path: str) -> bool:
    """Say whether a canonical path names an uploaded file rather than a page."""
    last = path.rpartition("/")[2]
    extension = last.rpartition(".")[2].lower() if "." in last else ""
    return path.startswith("/upload/") or extension in FILE_EXTENSIONS


def banner_language(
    outcome: Gone | NotFound | Archived, accept_language: str, *, english_section: bool = False
) -> str:
    """Choose the banner's language: English for /en/ and /eng/ or when preferred over Russian.

    ``english_section``: the URL is in a section the map's ``archive.english`` names
    (int., /tourism-en/), English for every reader. A reader whose browser names
    neither language (Chinese, Japanese, Korean...) gets English, the one of the two
    more readers can read; no header at all gets Russian.
    """
    first = outcome.url.path.split("/", 2)[1].lower()
    if english_section or first in ("en", "eng"):
        return "en"
    accept = parse_accept_header(accept_language[:MAX_ACCEPT_LANGUAGE], LanguageAccept)
    weights = {"en": 0.0, "ru": 0.0}
    named = False
    for tag, quality in accept:
        primary = tag.lower().partition("-")[0]
        if primary in weights:
            weights[primary] = max(weights[primary], quality)
        elif quality > 0 and _LANGUAGE_RANGE.fullmatch(tag):
            named = True  # a real language that is neither (zh, ja); not "*", not garbage
    if named and weights["en"] == weights["ru"] == 0.0:
        return "en"
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


def requested_text(outcome: Gone | NotFound) -> str:
    """Return the URL as it was asked for: its own slashes and index file, escapes decoded."""
    url = outcome.url
    try:
        path = decode(wire_bytes(url.raw_path))
    except Malformed:
        path = url.path_text
    query = f"?{url.raw_query}" if url.raw_query else ""
    # No scheme: behind a TLS terminator the gateway cannot tell http from https.
    return displayed_url(f"{outcome.host}{path}{query}")


def banner_page(
    redirect_map: RedirectMap, outcome: Gone | NotFound, accept_language: str
) -> BannerPage:
    """Decide what the banner shows for this outcome and this reader."""
    archive = redirect_map.archive
    english = archive.is_english(outcome.host, outcome.url.path)
    lang = banner_language(outcome, accept_language, english_section=english)
    notice = archive.notice_en if lang == "en" else archive.notice_ru
    home_url = redirect_map.site.new_site + "/"
    see_url = outcome.rule.see if isinstance(outcome, Gone) else None
    archived = archive_url(redirect_map, outcome)
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
        requested_url=requested_text(outcome),
        is_file=is_file(outcome.url.path),
    )


# The banner over an archived page (spec §8): the notice, the capture's date, the way home.
ARCHIVED_TEXTS: Mapping[str, Mapping[str, str]] = {
    "ru": {"copy": "Архивная копия страницы от {date}.", "home": TEXTS["ru"]["home"]},
    "en": {"copy": "Archived copy of this page, captured on {date}.", "home": TEXTS["en"]["home"]},
}
_MONTHS_EN = "January February March April May June July August September October November December"


def capture_date(date: str, lang: str) -> str:
    """Return a capture's WARC-Date as the banner shows it: 20.02.2021, or 20 February 2021."""
    day, month, year = date[8:10], date[5:7], date[:4]
    if not (day.isdigit() and month.isdigit() and year.isdigit()) or not 1 <= int(month) <= 12:
        return date
    if lang == "en":
        return f"{int(day)} {_MONTHS_EN.split()[int(month) - 1]} {year}"
    return f"{day}.{month}.{year}"


def archived_banner(
    redirect_map: RedirectMap, outcome: Archived, accept_language: str
) -> tuple[str, list[list[tuple[str, str | None]]]]:
    """Return the language and the lines (text, link) of the banner over an archived page."""
    archive = redirect_map.archive
    english = archive.is_english(outcome.host, outcome.url.path)
    lang = banner_language(outcome, accept_language, english_section=english)
    words = ARCHIVED_TEXTS[lang]
    home_url = redirect_map.site.new_site + "/"
    notice = archive.notice_en if lang == "en" else archive.notice_ru
    copy = words["copy"].format(date=capture_date(outcome.capture.date, lang))
    home = words["home"].format(host=urlsplit(home_url).netloc)
    return lang, [[(notice, None)], [(copy + " ", None), (home, home_url)]]
