"""Tests of gateway.banner: what the archive banner says, decided without Flask.

Every outcome comes from ``gateway.decide.decide`` on a real map (the bundled one unless
a test needs what it lacks), so the URLs are canonicalised exactly as the server does.
Expected values are written out by hand: the words, links and escapes a reader sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.banner import TEXTS, archive_url, banner_language, banner_page, displayed_url
from gateway.decide import decide
from gateway.mapfile import RedirectMap, load_map
from gateway.outcomes import Gone, NotFound
from tests.support import WriteMap, versioned_map_text, versioned_table_text

HOST = "khabarovskadm.ru"
WAYBACK = "https://web.archive.org/web/20210228000000/"
NOTICE_RU = (
    "С 01.03.2021 осуществлен запуск новой версии сайта администрации города Хабаровска "  # noqa: RUF001
    "https://khv27.ru. Старая версия сайта khabarovskadm.ru является архивной."
)
NOTICE_EN = (
    "On 1 March 2021 the new version of the Khabarovsk City Administration website, "
    "https://khv27.ru, was launched. The old version of the site, khabarovskadm.ru, "
    "is an archive."
)


def wire(raw: bytes) -> str:
    """A request target as the WSGI server hands it over: the wire bytes as latin-1."""
    return raw.decode("latin-1")


def banner_outcome(redirect_map: RedirectMap, target: str, host: str = HOST) -> Gone | NotFound:
    outcome = decide(redirect_map, "GET", host, target)
    assert isinstance(outcome, Gone | NotFound), outcome
    return outcome


@pytest.fixture
def ru_only_map(write_map: WriteMap) -> RedirectMap:
    """A map with a Russian notice only and no wayback prefix (tests/support.py's v1)."""
    write_map(versioned_table_text("v1"), "redirects.d/table.csv")
    path: Path = write_map(versioned_map_text("v1"))
    return load_map(path)


# --- language ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "accept_language", "lang"),
    [
        pytest.param("/en/about/", "", "en", id="en-path"),
        pytest.param("/en", "", "en", id="en-path-alone"),
        pytest.param("/eng/about/", "", "en", id="eng-path"),
        pytest.param("/EN/About/", "ru", "en", id="en-path-any-case-beats-a-russian-header"),
        pytest.param("/ENG/x", "ru-RU,ru;q=1", "en", id="eng-path-beats-a-russian-header"),
        pytest.param("/english/x", "", "ru", id="english-path-is-not-en"),
        pytest.param("/enx/", "", "ru", id="en-prefix-of-a-longer-segment"),
        pytest.param("/press-center/en/", "", "ru", id="en-not-the-first-segment"),
        pytest.param("/nothing", "", "ru", id="no-header-russian"),
        pytest.param("/nothing", "en", "en", id="english-only"),
        pytest.param("/nothing", "EN-gb", "en", id="tag-case-and-region-ignored"),
        pytest.param("/nothing", "en-US,en;q=0.9", "en", id="english-region-tags"),
        pytest.param("/nothing", "ru;q=0.5, en;q=0.8", "en", id="english-weighted-higher"),
        pytest.param("/nothing", "en;q=0.5, ru;q=0.8", "ru", id="russian-weighted-higher"),
        pytest.param("/nothing", "ru-RU;q=0.9,en;q=0.95", "en", id="english-just-higher"),
        pytest.param(
            "/nothing", "en-US;q=0.9, en;q=0.2, ru;q=0.8", "en", id="best-english-tag-counts"
        ),
        pytest.param("/nothing", "fr, en;q=0.1", "en", id="english-low-but-russian-absent"),
        pytest.param("/nothing", "en, ru", "ru", id="tie-goes-to-russian"),
        pytest.param("/nothing", "en;q=0.7, ru;q=0.7", "ru", id="weighted-tie-goes-to-russian"),
        pytest.param("/nothing", "en;q=0", "ru", id="english-refused"),
        pytest.param("/nothing", "de, fr;q=0.9", "ru", id="neither-language"),
        pytest.param("/nothing", "*", "ru", id="wildcard-is-not-english"),
        pytest.param("/nothing", "english", "ru", id="english-is-not-a-language-tag"),
        pytest.param("/nothing", "rus, eng", "ru", id="three-letter-codes-not-read"),
        pytest.param("/nothing", "en;q=abc", "ru", id="garbage-weight"),
        pytest.param("/nothing", ";;;,,q=,garbage\x00", "ru", id="garbage-header"),
        pytest.param("/upload/a.pdf", "en", "en", id="gone-page-too"),
    ],
)
def test_language(bundled: RedirectMap, target: str, accept_language: str, lang: str) -> None:
    outcome = banner_outcome(bundled, target)
    assert banner_language(outcome, accept_language) == lang
    page = banner_page(bundled, outcome, accept_language)
    assert page.lang == lang
    # The page's words are that language's: the title a reader sees first.
    title = {"ru": "Страница перенесена в архив", "en": "This page has been archived"}
    assert page.texts["title"] == title[lang]


def test_every_language_has_every_text() -> None:
    assert set(TEXTS) == {"ru", "en"}
    assert set(TEXTS["ru"]) == set(TEXTS["en"])
    assert all(TEXTS["ru"][key] != TEXTS["en"][key] for key in TEXTS["ru"])


# --- the lead: gone (410) or not found (404) -------------------------------------------------


@pytest.mark.parametrize(
    ("target", "accept_language", "status", "lead"),
    [
        pytest.param("/upload/a.pdf", "", 410, "Этой страницы нет на новом сайте.", id="gone-ru"),
        pytest.param(
            "/upload/a.pdf",
            "en",
            410,
            "This page has no equivalent on the new website.",
            id="gone-en",
        ),
        pytest.param(
            "/bitrix/rk.php?goto=https://evil.example/",
            "",
            410,
            "Этой страницы нет на новом сайте.",
            id="gone-without-see",
        ),
        pytest.param("/nothing", "", 404, "Страница не найдена.", id="not-found-ru"),
        pytest.param("/en/nothing", "", 404, "Page not found.", id="not-found-en-path"),
        pytest.param(
            "/press-center/news/detail.php?ID=abc",
            "",
            404,
            "Страница не найдена.",
            id="not-found-rule-condition-unmet",
        ),
    ],
)
def test_lead(
    bundled: RedirectMap, target: str, accept_language: str, status: int, lead: str
) -> None:
    page = banner_page(bundled, banner_outcome(bundled, target), accept_language)
    assert (page.status, page.lead) == (status, lead)


# --- links: home, the suggested page, the archived copy --------------------------------------


@pytest.mark.parametrize(
    ("target", "see_url", "see_label"),
    [
        pytest.param(
            "/upload/iblock/3f2/file.pdf",
            "https://khv27.ru/documents/",
            "khv27.ru/documents/",
            id="gone-rule-with-see",
        ),
        pytest.param("/bitrix/redirect.php?goto=x", None, None, id="gone-rule-without-see"),
        pytest.param("/nothing", None, None, id="not-found-has-no-see"),
    ],
)
def test_see_link_and_label(
    bundled: RedirectMap, target: str, see_url: str | None, see_label: str | None
) -> None:
    page = banner_page(bundled, banner_outcome(bundled, target), "")
    assert (page.see_url, page.see_label) == (see_url, see_label)
    assert (page.home_url, page.home_host) == ("https://khv27.ru/", "khv27.ru")


def test_see_on_another_map_is_its_own(ru_only_map: RedirectMap) -> None:
    page = banner_page(ru_only_map, banner_outcome(ru_only_map, "/gone"), "")
    assert (page.status, page.see_url, page.see_label) == (
        410,
        "https://khv27.ru/v1/see",
        "khv27.ru/v1/see",
    )


@pytest.mark.parametrize(
    ("target", "host", "archived"),
    [
        pytest.param("/upload/a.pdf", HOST, "http://khabarovskadm.ru/upload/a.pdf", id="plain"),
        pytest.param(
            "/upload/a.pdf",
            "WWW.khabarovskadm.ru",
            "http://khabarovskadm.ru/upload/a.pdf",
            id="alias-archived-under-its-served-host",
        ),
        pytest.param("/x", "int.khabarovskadm.ru", "http://int.khabarovskadm.ru/x", id="subdomain"),
        pytest.param(
            "http://edu.khabarovskadm.ru/x",
            HOST,
            "http://edu.khabarovskadm.ru/x",
            id="absolute-form-names-the-host",
        ),
        pytest.param(
            "/Upload/A.PDF?x=1&utm_source=vk",
            HOST,
            "http://khabarovskadm.ru/Upload/A.PDF?x=1&utm_source=vk",
            id="raw-case-and-whole-query-kept",
        ),
        pytest.param(
            "/nothing/./../x//y/",
            HOST,
            "http://khabarovskadm.ru/nothing/./../x//y/",
            id="raw-path-not-canonicalised",
        ),
        pytest.param(
            "/%D0%B4%D0%BE%D0%BA/?q=1",
            HOST,
            "http://khabarovskadm.ru/%D0%B4%D0%BE%D0%BA/?q=1",
            id="escapes-kept-as-sent",
        ),
        pytest.param(
            wire("/upload/док.pdf".encode()),
            HOST,
            "http://khabarovskadm.ru/upload/%D0%B4%D0%BE%D0%BA.pdf",
            id="raw-utf8-bytes-quoted",
        ),
        pytest.param(
            wire(b"/upload/\xe4\xee\xea.pdf"),
            HOST,
            "http://khabarovskadm.ru/upload/%E4%EE%EA.pdf",
            id="raw-windows-1251-bytes-quoted",
        ),
        pytest.param(
            '/upload/a b<c>".pdf',
            HOST,
            "http://khabarovskadm.ru/upload/a%20b%3Cc%3E%22.pdf",
            id="raw-space-and-markup-quoted",
        ),
    ],
)
def test_archive_url(bundled: RedirectMap, target: str, host: str, archived: str) -> None:
    outcome = banner_outcome(bundled, target, host)
    assert archive_url(bundled, outcome) == WAYBACK + archived
    page = banner_page(bundled, outcome, "")
    assert (page.archive_url, page.archive_host) == (WAYBACK + archived, "web.archive.org")


def test_no_archive_link_without_a_wayback_prefix(ru_only_map: RedirectMap) -> None:
    outcome = banner_outcome(ru_only_map, "/nothing")
    assert archive_url(ru_only_map, outcome) is None
    page = banner_page(ru_only_map, outcome, "")
    assert (page.archive_url, page.archive_host) == (None, None)


# --- the requested URL as shown: bidi controls cannot reorder it ----------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("/a\u202eb", "/a%E2%80%AEb", id="right-to-left-override"),
        pytest.param("/a\u202db", "/a%E2%80%ADb", id="left-to-right-override"),
        pytest.param("/a\u202ab", "/a%E2%80%AAb", id="left-to-right-embedding"),
        pytest.param("/a\u202cb", "/a%E2%80%ACb", id="pop-directional-formatting"),
        pytest.param("/a\u200eb\u200f", "/a%E2%80%8Eb%E2%80%8F", id="lrm-and-rlm"),
        pytest.param("/a\u061cb", "/a%D8%9Cb", id="arabic-letter-mark"),
        pytest.param("/\u2066a\u2069", "/%E2%81%A6a%E2%81%A9", id="isolate-and-pop-isolate"),
        pytest.param("/\u2067\u2068", "/%E2%81%A7%E2%81%A8", id="rtl-and-first-strong-isolates"),
        pytest.param("/документы", "/документы", id="cyrillic-kept"),
        pytest.param("/a\u200db", "/a\u200db", id="zero-width-joiner-is-not-bidi"),
        pytest.param("/a b?q=<x>", "/a b?q=<x>", id="markup-left-to-the-template"),
    ],
)
def test_displayed_url(text: str, shown: str) -> None:
    assert displayed_url(text) == shown


@pytest.mark.parametrize(
    ("target", "host", "requested"),
    [
        pytest.param("/a%E2%80%AEb", HOST, "khabarovskadm.ru/a%E2%80%AEb", id="bidi-escape"),
        pytest.param(
            wire("/a\u202egpj.exe".encode()),
            HOST,
            "khabarovskadm.ru/a%E2%80%AEgpj.exe",
            id="raw-bidi-bytes",
        ),
        pytest.param(
            "/%D0%B4%D0%BE%D0%BA/?q=1",
            HOST,
            "khabarovskadm.ru/док?q=1",
            id="decoded-path-and-query",
        ),
        pytest.param("/%CF%F0", HOST, "khabarovskadm.ru/Пр", id="windows-1251-decoded"),
        pytest.param("/x/", "int.khabarovskadm.ru", "int.khabarovskadm.ru/x", id="no-scheme"),
    ],
)
def test_requested_url(bundled: RedirectMap, target: str, host: str, requested: str) -> None:
    page = banner_page(bundled, banner_outcome(bundled, target, host), "")
    assert page.requested_url == requested


# --- the notice ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "accept_language", "notice", "notice_lang"),
    [
        pytest.param("/nothing", "", NOTICE_RU, "ru", id="russian-page"),
        pytest.param("/nothing", "en", NOTICE_EN, "en", id="english-page-english-notice"),
        pytest.param("/eng/x", "", NOTICE_EN, "en", id="eng-path-english-notice"),
    ],
)
def test_notice(
    bundled: RedirectMap, target: str, accept_language: str, notice: str, notice_lang: str
) -> None:
    page = banner_page(bundled, banner_outcome(bundled, target), accept_language)
    assert (page.notice, page.notice_lang) == (notice, notice_lang)


@pytest.mark.parametrize(
    ("accept_language", "lang"),
    [
        pytest.param("", "ru", id="russian-page"),
        pytest.param("en", "en", id="english-page-falls-back-to-the-russian-notice"),
    ],
)
def test_notice_without_english(ru_only_map: RedirectMap, accept_language: str, lang: str) -> None:
    page = banner_page(ru_only_map, banner_outcome(ru_only_map, "/nothing"), accept_language)
    # notice_lang marks the Russian text on an English page (its lang attribute).
    assert (page.lang, page.notice, page.notice_lang) == (lang, "Архив v1", "ru")
