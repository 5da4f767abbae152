"""Tests of gateway.banner: what the archive banner says, decided without Flask.

Every outcome comes from ``gateway.decide.decide`` on a real map (the bundled one unless
a test needs what it lacks), so the URLs are canonicalised exactly as the server does.
Expected values are written out by hand: the words, links and escapes a reader sees.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

import pytest

import gateway.banner
from gateway.banner import (
    FILE_EXTENSIONS,
    MAX_ACCEPT_LANGUAGE,
    TEXTS,
    archive_url,
    banner_language,
    banner_page,
    displayed_url,
    is_file,
)
from gateway.decide import decide
from gateway.mapfile import RedirectMap, load_map
from gateway.outcomes import Gone, NotFound
from tests.support import WriteMap, versioned_map_text, versioned_table_text

HOST = "khabarovskadm.ru"
WAYBACK = "https://web.archive.org/web/20210228000000/"
# All three sentences of the old site's announcement (redirects.yaml archive.notice).
NOTICE_RU = (
    "С 01.03.2021 осуществлен запуск новой версии сайта администрации города Хабаровска "  # noqa: RUF001
    "https://khv27.ru. Старая версия сайта khabarovskadm.ru является архивной. "
    "Начиная с 1 марта 2021 года вся актуальная информация размещается исключительно "  # noqa: RUF001
    "на новом сайте, расположенном по адресу https://khv27.ru."
)
NOTICE_EN = (
    "On 1 March 2021 the new version of the Khabarovsk City Administration website, "
    "https://khv27.ru, was launched. The old version of the site, khabarovskadm.ru, "
    "is an archive. Since 1 March 2021 all current information has been published only "
    "on the new website at https://khv27.ru."
)
# The heading, by language, status and whether a file was asked for.
TITLES = {
    ("ru", 410, False): "Страница перенесена в архив",
    ("ru", 410, True): "Файл перенесён в архив",
    ("ru", 404, False): "Страница не найдена",
    ("ru", 404, True): "Файл не найден",
    ("en", 410, False): "This page has been archived",
    ("en", 410, True): "This file has been archived",
    ("en", 404, False): "Page not found",
    ("en", 404, True): "File not found",
}


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
        pytest.param("/nothing", "de, fr;q=0.9", "en", id="neither-language-gets-english"),
        pytest.param("/nothing", "*", "ru", id="wildcard-alone-names-nothing-russian"),
        pytest.param(
            "/nothing", "english", "en", id="english-is-not-the-en-tag-so-neither-gets-english"
        ),
        pytest.param(
            "/nothing", "rus, eng", "en", id="three-letter-codes-not-read-so-neither-gets-english"
        ),
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
    assert page.title == TITLES[(lang, page.status, page.is_file)]


@pytest.mark.parametrize(
    ("accept_language", "lang"),
    [
        pytest.param("zh-CN,zh;q=0.9", "en", id="chinese-gets-english"),
        pytest.param("ja", "en", id="japanese-gets-english"),
        pytest.param("ko-KR,ko;q=0.9", "en", id="korean-gets-english"),
        pytest.param("zh-Hant-TW", "en", id="script-and-region-subtags-still-neither"),
        pytest.param("*, zh", "en", id="wildcard-beside-another-language-gets-english"),
        pytest.param("zh, ru;q=0.1", "ru", id="russian-accepted-at-all-beats-neither"),
        pytest.param("zh, en;q=0.1", "en", id="english-accepted-beside-neither"),
        pytest.param("", "ru", id="empty-header-gets-russian"),
        pytest.param("*", "ru", id="wildcard-alone-names-nothing-russian"),
        pytest.param("*;q=0.5", "ru", id="weighted-wildcard-alone-names-nothing-russian"),
        pytest.param("zh;q=0", "ru", id="refused-language-names-nothing-russian"),
    ],
)
def test_language_when_neither_is_named(
    bundled: RedirectMap, accept_language: str, lang: str
) -> None:
    outcome = banner_outcome(bundled, "/nothing")
    assert banner_language(outcome, accept_language) == lang
    assert banner_page(bundled, outcome, accept_language).lang == lang


def test_accept_language_is_read_to_its_limit_only(
    bundled: RedirectMap, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = banner_outcome(bundled, "/nothing")
    # 10,000 entries: the first 128 characters name only Chinese (English), the rest
    # Russian, which would win if the whole header were read.
    head = "zh, " * (MAX_ACCEPT_LANGUAGE // 4)
    assert len(head) == MAX_ACCEPT_LANGUAGE == 128
    header = head + ", ".join(["ru"] * (10_000 - MAX_ACCEPT_LANGUAGE // 4))
    assert header.count(",") + 1 == 10_000
    assert (
        banner_language(outcome, header)
        == banner_language(outcome, header[:MAX_ACCEPT_LANGUAGE])
        == "en"
    )
    assert banner_page(bundled, outcome, header).lang == "en"
    # Read past the limit, the same header is Russian: the limit is what decides.
    monkeypatch.setattr(gateway.banner, "MAX_ACCEPT_LANGUAGE", len(header))
    assert banner_language(outcome, header) == "ru"


def test_every_language_has_every_text() -> None:
    assert set(TEXTS) == {"ru", "en"}
    assert set(TEXTS["ru"]) == set(TEXTS["en"])
    assert all(TEXTS["ru"][key] != TEXTS["en"][key] for key in TEXTS["ru"])


# --- the title and lead: gone (410) or not found (404), a page or a file ---------------------

TITLE_AND_LEAD = [
    # (target, Accept-Language, status, is_file, title, lead)
    pytest.param(
        "/bitrix/rk.php?goto=https://evil.example/",
        "",
        410,
        False,
        "Страница перенесена в архив",
        "Этой страницы нет на новом сайте.",
        id="gone-page-ru",
    ),
    pytest.param(
        "/bitrix/redirect.php",
        "en",
        410,
        False,
        "This page has been archived",
        "This page has no equivalent on the new website.",
        id="gone-page-en",
    ),
    pytest.param(
        "/upload/a.pdf",
        "",
        410,
        True,
        "Файл перенесён в архив",
        "Этого файла нет на новом сайте.",
        id="gone-file-ru",
    ),
    pytest.param(
        "/upload/a.pdf",
        "en",
        410,
        True,
        "This file has been archived",
        "This file has no equivalent on the new website.",
        id="gone-file-en",
    ),
    pytest.param(
        "/upload/iblock/3f2/",
        "",
        410,
        True,
        "Файл перенесён в архив",
        "Этого файла нет на новом сайте.",
        id="gone-under-upload-is-a-file-without-an-extension",
    ),
    pytest.param(
        "/nothing",
        "",
        404,
        False,
        "Страница не найдена",
        "По этому адресу нет страницы ни на новом сайте, ни в архиве.",
        id="missing-page-ru",
    ),
    pytest.param(
        "/en/nothing",
        "",
        404,
        False,
        "Page not found",
        "This address has no page on the new website or in the archive.",
        id="missing-page-en-path",
    ),
    pytest.param(
        "/press-center/news/detail.php?ID=abc",
        "",
        404,
        False,
        "Страница не найдена",
        "По этому адресу нет страницы ни на новом сайте, ни в архиве.",
        id="missing-page-rule-condition-unmet",
    ),
    pytest.param(
        "/docs/report.doc",
        "",
        404,
        True,
        "Файл не найден",
        "По этому адресу нет файла ни на новом сайте, ни в архиве.",
        id="missing-file-ru",
    ),
    pytest.param(
        "/docs/photo.JPG",
        "en",
        404,
        True,
        "File not found",
        "This address has no file on the new website or in the archive.",
        id="missing-file-en",
    ),
]


@pytest.mark.parametrize(
    ("target", "accept_language", "status", "file", "title", "lead"), TITLE_AND_LEAD
)
def test_title_and_lead(
    bundled: RedirectMap,
    target: str,
    accept_language: str,
    status: int,
    file: bool,
    title: str,
    lead: str,
) -> None:
    page = banner_page(bundled, banner_outcome(bundled, target), accept_language)
    assert (page.status, page.is_file, page.title, page.lead) == (status, file, title, lead)


def test_every_state_has_its_own_title_and_lead() -> None:
    # Four headings and four leads per language, none shared between states.
    for texts in TEXTS.values():
        states = ("gone_page", "gone_file", "missing_page", "missing_file")
        assert len({texts[f"title_{state}"] for state in states}) == 4
        assert len({texts[f"lead_{state}"] for state in states}) == 4


# --- is it a file? ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "file"),
    [
        pytest.param("/upload/iblock/3f2/postanovlenie.pdf", True, id="upload-with-extension"),
        pytest.param("/upload/iblock/3f2/scan", True, id="anything-under-upload"),
        pytest.param("/upload/medialibrary/x.php", True, id="under-upload-any-extension"),
        pytest.param("/upload", False, id="upload-folder-itself-is-not-a-file"),
        pytest.param("/uploads/a", False, id="upload-prefix-of-another-segment"),
        pytest.param("/docs/upload/a", False, id="upload-not-the-first-segment"),
        pytest.param("/docs/report.pdf", True, id="pdf-anywhere"),
        pytest.param("/docs/report.docx", True, id="docx"),
        pytest.param("/docs/table.xlsx", True, id="xlsx"),
        pytest.param("/photo/a.jpeg", True, id="jpeg"),
        pytest.param("/archive.7z", True, id="seven-zip-at-the-root"),
        pytest.param("/a.b.c.rtf", True, id="last-extension-counts"),
        pytest.param("/a.pdf.php", False, id="php-after-pdf-is-a-page"),
        pytest.param("/docs/index.php", False, id="php-is-a-page"),
        pytest.param("/docs/page.html", False, id="html-is-a-page"),
        pytest.param("/a.tar.gz", False, id="gz-not-in-the-list"),
        pytest.param("/docs/pdf", False, id="extension-name-without-a-dot"),
        pytest.param("/pdf.d/readme", False, id="dot-in-a-folder-not-the-last-segment"),
        pytest.param("/docs/report.pdf ", False, id="trailing-space-is-not-pdf"),
        pytest.param("/", False, id="root"),
    ],
)
def test_is_file(path: str, file: bool) -> None:
    assert is_file(path) is file


def test_file_extensions_are_lower_case_without_dots() -> None:
    assert {"pdf", "doc", "docx", "xls", "xlsx", "jpg", "png", "zip", "rar"} <= FILE_EXTENSIONS
    assert all(ext == ext.lower() and "." not in ext for ext in FILE_EXTENSIONS)
    assert not {"php", "html", "htm", "asp", ""} & FILE_EXTENSIONS


def test_capital_extension_on_a_case_sensitive_map_is_a_file(write_map: WriteMap) -> None:
    # A case-sensitive map keeps the path's case in its canonical form: REPORT.PDF is
    # still a PDF (old Windows uploads often have capital extensions).
    redirect_map = load_map(
        write_map(
            "version: 1\n"
            "site:\n  new_site: https://khv27.ru\n  case_sensitive: true\n"
            "hosts:\n  khabarovskadm.ru: {}\n"
            "rules:\n  - from: /a\n    to: /a\n"
            'archive:\n  notice:\n    ru: "Архив"\n'
        )
    )
    outcome = banner_outcome(redirect_map, "/docs/REPORT.PDF")
    assert outcome.url.path == "/docs/REPORT.PDF"
    page = banner_page(redirect_map, outcome, "")
    assert (page.is_file, page.title) == (True, "Файл не найден")


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
            "khabarovskadm.ru/док/?q=1",
            id="requested-keeps-the-trailing-slash",
        ),
        pytest.param("/%CF%F0", HOST, "khabarovskadm.ru/Пр", id="windows-1251-decoded"),
        pytest.param("/%E4%EE%EA/", HOST, "khabarovskadm.ru/док/", id="windows-1251-with-slash"),
        pytest.param(
            "/x/", "int.khabarovskadm.ru", "int.khabarovskadm.ru/x/", id="no-scheme-trailing-slash"
        ),
        pytest.param(
            "/%D0%B4%D0%BE%D0%BA/index.php",
            HOST,
            "khabarovskadm.ru/док/index.php",
            id="requested-keeps-index-php",
        ),
        pytest.param("/x//y/", HOST, "khabarovskadm.ru/x//y/", id="requested-keeps-double-slash"),
        pytest.param(
            "/nothing/./../x", HOST, "khabarovskadm.ru/nothing/./../x", id="dot-segments-kept"
        ),
        pytest.param(
            "/Upload/A.PDF?x=1&utm_source=vk",
            HOST,
            "khabarovskadm.ru/Upload/A.PDF?x=1&utm_source=vk",
            id="case-and-ignored-params-kept",
        ),
        pytest.param(
            "/x?a=%D0%B4", HOST, "khabarovskadm.ru/x?a=%D0%B4", id="query-shown-raw-not-decoded"
        ),
        pytest.param(
            "http://edu.khabarovskadm.ru/x/",
            HOST,
            "edu.khabarovskadm.ru/x/",
            id="absolute-form-names-the-host",
        ),
    ],
)
def test_requested_url(bundled: RedirectMap, target: str, host: str, requested: str) -> None:
    page = banner_page(bundled, banner_outcome(bundled, target, host), "")
    assert page.requested_url == requested


@pytest.mark.parametrize(
    ("target", "parts"),
    [
        pytest.param("/x", ("khabarovskadm.ru/", "x"), id="one-segment"),
        pytest.param("/x/", ("khabarovskadm.ru/", "x/"), id="trailing-slash-ends-a-part"),
        pytest.param(
            "/a/b/c.pdf?x=1&y=2",
            ("khabarovskadm.ru/", "a/", "b/", "c.pdf?", "x=1&", "y=2"),
            id="cut-after-slash-question-mark-and-ampersand",
        ),
        pytest.param("/x//y", ("khabarovskadm.ru/", "x/", "/", "y"), id="double-slash-two-parts"),
        pytest.param(
            "/a&b/c?d", ("khabarovskadm.ru/", "a&", "b/", "c?", "d"), id="ampersand-in-the-path"
        ),
        pytest.param(
            "/%D0%B4%D0%BE%D0%BA/?q=1",
            ("khabarovskadm.ru/", "док/", "?", "q=1"),
            id="decoded-segments",
        ),
    ],
)
def test_requested_parts(bundled: RedirectMap, target: str, parts: tuple[str, ...]) -> None:
    page = banner_page(bundled, banner_outcome(bundled, target), "")
    assert page.requested_parts == parts
    assert "".join(parts) == page.requested_url


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


HOME = "https://khv27.ru/"
NEW = "https://khv27.ru"


@pytest.mark.parametrize(
    ("notice", "parts"),
    [
        pytest.param(
            NOTICE_RU,
            (
                (
                    "С 01.03.2021 осуществлен запуск новой версии сайта администрации "  # noqa: RUF001
                    "города Хабаровска ",
                    None,
                ),
                (NEW, HOME),
                (
                    ". Старая версия сайта khabarovskadm.ru является архивной. Начиная с "  # noqa: RUF001
                    "1 марта 2021 года вся актуальная информация размещается исключительно "
                    "на новом сайте, расположенном по адресу ",
                    None,
                ),
                (NEW, HOME),
                (".", None),
            ),
            id="bundled-notice-links-both-urls",
        ),
        pytest.param(
            "https://khv27.ru is new.",
            ((NEW, HOME), (" is new.", None)),
            id="url-at-the-start",
        ),
        pytest.param(
            "See https://khv27.ru now.",
            (("See ", None), (NEW, HOME), (" now.", None)),
            id="url-in-the-middle",
        ),
        pytest.param(
            "Go to https://khv27.ru", (("Go to ", None), (NEW, HOME)), id="url-at-the-end"
        ),
        pytest.param(
            "https://khv27.ru and https://khv27.ru",
            ((NEW, HOME), (" and ", None), (NEW, HOME)),
            id="url-twice",
        ),
        pytest.param(
            "https://khv27.ruhttps://khv27.ru",
            ((NEW, HOME), (NEW, HOME)),
            id="url-twice-back-to-back",
        ),
        pytest.param("Архив сайта.", (("Архив сайта.", None),), id="url-absent"),
        pytest.param(
            "khv27.ru, http://khv27.ru",
            (("khv27.ru, http://khv27.ru", None),),
            id="only-the-https-url-is-a-link",
        ),
        pytest.param("https://khv27.ru", ((NEW, HOME),), id="url-alone"),
    ],
)
def test_notice_parts(bundled: RedirectMap, notice: str, parts: tuple[object, ...]) -> None:
    page = banner_page(bundled, banner_outcome(bundled, "/nothing"), "")
    page = dataclasses.replace(page, notice=notice)
    assert page.notice_parts == parts
    # The runs are the notice, word for word: nothing lost or doubled.
    assert "".join(text for text, _ in page.notice_parts) == notice


def test_notice_parts_on_the_bundled_page(bundled: RedirectMap) -> None:
    # The bundled map's notice, as the page gets it: both languages link the new site twice.
    for accept_language in ("", "en"):
        page = banner_page(bundled, banner_outcome(bundled, "/nothing"), accept_language)
        links = [(text, href) for text, href in page.notice_parts if href]
        assert links == [(NEW, HOME), (NEW, HOME)]


# --- the home button, the description, the favicon ---------------------------------------


@pytest.mark.parametrize(
    ("accept_language", "label"),
    [
        pytest.param("", "Перейти на новый сайт khv27.ru", id="russian"),
        pytest.param(
            "en", "Go to the new website khv27.ru (in Russian)", id="english-says-russian"
        ),
    ],
)
def test_home_label(bundled: RedirectMap, accept_language: str, label: str) -> None:
    page = banner_page(bundled, banner_outcome(bundled, "/nothing"), accept_language)
    assert page.home_label == label


def test_home_label_names_the_maps_own_host(bundled: RedirectMap) -> None:
    page = banner_page(bundled, banner_outcome(bundled, "/nothing"), "en")
    page = dataclasses.replace(page, home_host="new.example")
    assert page.home_label == "Go to the new website new.example (in Russian)"


@pytest.mark.parametrize(
    ("accept_language", "description"),
    [
        pytest.param(
            "",
            "Архивная версия сайта администрации города Хабаровска. " + NOTICE_RU,
            id="russian",
        ),
        pytest.param(
            "en",
            "The archived website of the Khabarovsk City Administration. " + NOTICE_EN,
            id="english",
        ),
    ],
)
def test_description(bundled: RedirectMap, accept_language: str, description: str) -> None:
    page = banner_page(bundled, banner_outcome(bundled, "/nothing"), accept_language)
    assert page.description == description


def test_favicon_is_an_inline_svg(bundled: RedirectMap) -> None:
    page = banner_page(bundled, banner_outcome(bundled, "/upload/a.pdf"), "")
    prefix = "data:image/svg+xml,"
    assert page.favicon_url.startswith(prefix)
    # A whole SVG document in the URL itself: nothing to fetch.
    svg = ET.fromstring(unquote(page.favicon_url[len(prefix) :]))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert svg.get("viewBox") == "0 0 32 32"
    assert not [el for el in svg.iter() if any("href" in name for name in el.attrib)]
    # Escaped where a URL needs it: a raw '#' would cut the SVG at a fragment.
    assert not set("<>#\n") & set(page.favicon_url)
