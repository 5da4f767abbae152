"""The web edge (gateway.web) through Flask's test client: every outcome's headers and body.

Requests carry their raw target in ``RAW_URI``, as gunicorn passes it, so that the
bytes the gateway decides on are exactly those written in each table. Redirect
rows assert status, Location and Cache-Control together (spec §5).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from html.parser import HTMLParser
from typing import ClassVar

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import EnvironBuilder, TestResponse, run_wsgi_app

from gateway.mapfile import RedirectMap

HOST = "khabarovskadm.ru"
WAYBACK = "https://web.archive.org/web/20210228000000/"
REDIRECT_CACHE = "public, max-age=86400"
BANNER_CACHE = "public, max-age=3600"


def get(
    client: FlaskClient,
    target: str,
    *,
    host: str = HOST,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> TestResponse:
    """Send `target` as the raw request target (gunicorn's RAW_URI), byte for byte."""
    return client.open(
        "/",
        method=method,
        headers={"Host": host, **(headers or {})},
        environ_overrides={"RAW_URI": target},
    )


class Page(HTMLParser):
    """The parts of a banner page the tests look at.

    Links (href, and each <a>'s attributes and text), <html lang>, <style>, the <code>
    text (the <wbr> inside it counted, not ending it), the <meta> names, the icon
    <link>s, and the text of <title>, <h1>, the lead, the notice and the masthead.
    """

    TEXT_OF: ClassVar[dict[str, str]] = {
        "title": "title",
        "h1": "h1",
        "lead": "lead",
        "notice": "notice",
        "org": "org",
    }
    FETCHING = ("href", "src", "srcset", "data", "poster", "action", "background")

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.anchors: list[dict[str, str | None]] = []  # attributes, plus "text"
        self.lang = ""
        self.style = ""
        self.code = ""
        self.wbr_in_code = 0
        self.meta: dict[str, str] = {}
        self.icons: list[dict[str, str | None]] = []
        self.text: dict[str, str] = {}
        self.fetches: list[tuple[str, str, str]] = []  # (tag, attribute, URL) of non-<a> tags
        self._in: str | None = None
        self._anchor: dict[str, str | None] | None = None
        self._texts: list[str] = []  # the TEXT_OF keys of the open elements, innermost last
        self._open: list[str | None] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "wbr":
            if self._in == "code":
                self.wbr_in_code += 1
            return
        if tag != "a":
            self.fetches += [(tag, n, v or "") for n, v in attrs if n in self.FETCHING]
        if tag == "a":
            self.hrefs.append(values.get("href") or "")
            within = next((key for key in reversed(self._open) if key), None)
            self._anchor = {**values, "text": "", "within": within}
            self.anchors.append(self._anchor)
        elif tag == "html":
            self.lang = values.get("lang") or ""
        elif tag == "meta" and values.get("name"):
            self.meta[values["name"] or ""] = values.get("content") or ""
        elif tag == "link" and "icon" in (values.get("rel") or "").split():
            self.icons.append(values)
        if tag in ("meta", "link"):
            return  # void elements: no end tag
        self._in = tag if tag in ("style", "code") else None
        key = self.TEXT_OF.get(tag) or self.TEXT_OF.get(values.get("class") or "")
        self._open.append(key)
        if key:
            self.text.setdefault(key, "")

    def handle_endtag(self, tag: str) -> None:
        self._in = None
        if tag == "a":
            self._anchor = None
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.style += data
        elif self._in == "code":
            self.code += data
        if self._anchor is not None:
            self._anchor["text"] = (self._anchor["text"] or "") + data
        for key in {k for k in self._open if k}:
            self.text[key] += data


def wrap_points(text: str) -> int:
    """The <wbr> the template puts in a requested URL: after each '/', '?', '&' but the last."""
    return sum(ch in "/?&" for ch in text[:-1])


# --- redirects ----------------------------------------------------------------------------

REDIRECTS = [
    # (Host header, raw target, status, Location)
    pytest.param(HOST, "/", 301, "https://khv27.ru/", id="home"),
    pytest.param("WWW.Khabarovskadm.RU:80", "/index.php", 301, "https://khv27.ru/", id="alias"),
    pytest.param("int.khabarovskadm.ru", "/", 301, "https://khv27.ru/en/", id="int-home"),
    pytest.param("edu.khabarovskadm.ru", "/", 301, "https://khv27.ru/education/", id="edu-home"),
    pytest.param(
        "dms.khabarovskadm.ru", "/", 301, "https://khv27.ru/municipal-property/", id="dms-home"
    ),
    pytest.param(
        HOST,
        "/press-center/news/detail.php?ID=12345&utm_source=yandex",
        301,
        "https://khv27.ru/news/12345/",
        id="detail-id",
    ),
    pytest.param(
        HOST,
        "/press-center/news/?ELEMENT_ID=4821&PAGEN_1=2",
        301,
        "https://khv27.ru/news/4821/",
        id="element-id-beats-list",
    ),
    pytest.param(
        HOST,
        "/search/?q=%E1%FE%E4%E6%E5%F2&utm_medium=email",
        301,
        "https://khv27.ru/search/?q=%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82",
        id="keep-query-cp1251-to-utf8",
    ),
    pytest.param(
        HOST,
        "http://khabarovskadm.ru/press-center/",
        301,
        "https://khv27.ru/news/",
        id="absolute-form-target",
    ),
]


@pytest.mark.parametrize(("host", "target", "status", "location"), REDIRECTS)
def test_redirect(client: FlaskClient, host: str, target: str, status: int, location: str) -> None:
    response = get(client, target, host=host)
    assert (
        response.status_code,
        response.headers.get("Location"),
        response.headers.get("Cache-Control"),
    ) == (status, location, REDIRECT_CACHE)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert Page(response.text).hrefs == [location]


def test_redirect_head_has_headers_and_no_body(client: FlaskClient) -> None:
    response = get(client, "/press-center/news/detail.php?ID=7", method="HEAD")
    assert (
        response.status_code,
        response.headers["Location"],
        response.headers["Cache-Control"],
    ) == (
        301,
        "https://khv27.ru/news/7/",
        REDIRECT_CACHE,
    )
    assert response.data == b""


def test_absolute_form_names_the_host_not_the_host_header(client: FlaskClient) -> None:
    # RFC 9112 §3.2.2: the authority in an absolute-form target replaces Host.
    served = get(client, "http://khabarovskadm.ru/", host="evil.example")
    assert (served.status_code, served.headers["Location"]) == (301, "https://khv27.ru/")
    unknown = get(client, "http://evil.example/", host=HOST)
    assert (unknown.status_code, unknown.headers.get("Location")) == (404, None)
    assert unknown.headers["Cache-Control"] == "no-store"


# --- banner pages -------------------------------------------------------------------------

BANNERS = [
    # (raw target, status)
    pytest.param("/bitrix/redirect.php?goto=https://evil.example/", 410, id="gone-open-redirect"),
    pytest.param("/upload/iblock/3f2/a.pdf", 410, id="gone-upload"),
    pytest.param("/no/such/page", 404, id="unmatched"),
    pytest.param("/press-center/news/detail.php?ID=abc", 404, id="int-condition-fails"),
]


@pytest.mark.parametrize(("target", "status"), BANNERS)
def test_banner_headers(client: FlaskClient, target: str, status: int) -> None:
    response = get(client, target)
    assert (response.status_code, response.headers.get("Location")) == (status, None)
    assert response.headers["Cache-Control"] == BANNER_CACHE
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Language"] == "ru"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp
    # The inline stylesheet is allowed by its hash, and by nothing else.
    page = Page(response.text)
    digest = base64.b64encode(hashlib.sha256(page.style.encode("utf-8")).digest()).decode()
    assert f"style-src 'sha256-{digest}';" in csp
    assert page.lang == "ru"


def test_banner_head_has_no_body(client: FlaskClient) -> None:
    response = get(client, "/upload/a.pdf", method="HEAD")
    assert (response.status_code, response.headers["Cache-Control"]) == (410, BANNER_CACHE)
    assert response.data == b""


LANGUAGES = [
    # (raw target, Accept-Language, language)
    pytest.param("/no/such", None, "ru", id="russian-by-default"),
    pytest.param("/en/no/such", None, "en", id="en-first-segment"),
    pytest.param("/EN/no/such", None, "en", id="en-first-segment-any-case"),
    pytest.param("/eng/no/such", None, "en", id="eng-first-segment"),
    pytest.param("/english/no/such", None, "ru", id="english-segment-is-not-en"),
    pytest.param("/a/en/", None, "ru", id="en-not-first-segment"),
    pytest.param("/no/such", "en-GB,en;q=0.9,ru;q=0.5", "en", id="english-preferred"),
    pytest.param("/no/such", "en", "en", id="english-only"),
    pytest.param("/no/such", "ru;q=0.5,en;q=0.5", "ru", id="tie-is-russian"),
    pytest.param("/no/such", "ru-RU,ru;q=0.9,en;q=0.8", "ru", id="russian-preferred"),
    pytest.param("/no/such", "de-DE,de;q=0.9", "en", id="neither-language-gets-english"),
    pytest.param("/no/such", "zh-CN,zh;q=0.9", "en", id="chinese-gets-english"),
    pytest.param("/no/such", "ja", "en", id="japanese-gets-english"),
    pytest.param("/no/such", "ko-KR,ko;q=0.9,en-US;q=0.8", "en", id="korean-and-english"),
    pytest.param("/no/such", "", "ru", id="empty-header-is-russian"),
    pytest.param("/no/such", "*", "ru", id="wildcard-alone-is-russian"),
    pytest.param("/no/such", "garbage;;q=x", "ru", id="unreadable-header-is-russian"),
    pytest.param("/upload/a.pdf", "en-US,en;q=0.9", "en", id="english-410"),
]


@pytest.mark.parametrize(("target", "accept", "lang"), LANGUAGES)
def test_banner_language(
    client: FlaskClient, bundled: RedirectMap, target: str, accept: str | None, lang: str
) -> None:
    headers = {"Accept-Language": accept} if accept is not None else {}
    response = get(client, target, headers=headers)
    assert response.headers["Content-Language"] == lang
    assert Page(response.text).lang == lang
    notice = bundled.archive.notice_en if lang == "en" else bundled.archive.notice_ru
    other = bundled.archive.notice_ru if lang == "en" else bundled.archive.notice_en
    assert notice in response.text
    assert other not in response.text


# The new site's home page: the masthead, the notice's two URLs, the button.
HOME_LINKS = ["https://khv27.ru/"] * 4


def test_banner_links(client: FlaskClient) -> None:
    hrefs = Page(get(client, "/upload/iblock/a.pdf").text).hrefs
    assert hrefs == [
        *HOME_LINKS,
        "https://khv27.ru/documents/",  # the rule's see:
        f"{WAYBACK}http://khabarovskadm.ru/upload/iblock/a.pdf",
    ]


def test_banner_without_see_has_no_see_link(client: FlaskClient) -> None:
    hrefs = Page(get(client, "/bitrix/rk.php").text).hrefs
    assert hrefs == [*HOME_LINKS, f"{WAYBACK}http://khabarovskadm.ru/bitrix/rk.php"]


TITLES_AND_LEADS = [
    # (raw target, Accept-Language, status, <h1>, lead)
    pytest.param(
        "/bitrix/rk.php",
        None,
        410,
        "Страница перенесена в архив",
        "Этой страницы нет на новом сайте.",
        id="gone-page-ru",
    ),
    pytest.param(
        "/bitrix/rk.php",
        "en",
        410,
        "This page has been archived",
        "This page has no equivalent on the new website.",
        id="gone-page-en",
    ),
    pytest.param(
        "/upload/iblock/a.pdf",
        None,
        410,
        "Файл перенесён в архив",
        "Этого файла нет на новом сайте.",
        id="gone-file-ru",
    ),
    pytest.param(
        "/upload/iblock/a.pdf",
        "en",
        410,
        "This file has been archived",
        "This file has no equivalent on the new website.",
        id="gone-file-en",
    ),
    pytest.param(
        "/no/such/page/",
        None,
        404,
        "Страница не найдена",
        "По этому адресу нет страницы ни на новом сайте, ни в архиве.",
        id="missing-page-ru",
    ),
    pytest.param(
        "/en/no/such/page/",
        None,
        404,
        "Page not found",
        "This address has no page on the new website or in the archive.",
        id="missing-page-en",
    ),
    pytest.param(
        "/docs/report.docx",
        None,
        404,
        "Файл не найден",
        "По этому адресу нет файла ни на новом сайте, ни в архиве.",
        id="missing-file-ru",
    ),
    pytest.param(
        "/docs/scan.JPG",
        "en",
        404,
        "File not found",
        "This address has no file on the new website or in the archive.",
        id="missing-file-en-extension-any-case",
    ),
]


@pytest.mark.parametrize(("target", "accept", "status", "title", "lead"), TITLES_AND_LEADS)
def test_banner_title_and_lead(
    client: FlaskClient, target: str, accept: str | None, status: int, title: str, lead: str
) -> None:
    headers = {"Accept-Language": accept} if accept is not None else {}
    response = get(client, target, headers=headers)
    page = Page(response.text)
    org = {"ru": "Администрация города Хабаровска", "en": "Khabarovsk City Administration"}
    assert response.status_code == status
    assert (page.text["h1"], page.text["lead"]) == (title, lead)
    assert page.text["title"] == f"{title} — {org[page.lang]}"


@pytest.mark.parametrize(
    ("accept", "lang"), [pytest.param(None, "ru", id="ru"), pytest.param("en", "en", id="en")]
)
def test_banner_notice_links_the_new_site(
    client: FlaskClient, bundled: RedirectMap, accept: str | None, lang: str
) -> None:
    headers = {"Accept-Language": accept} if accept is not None else {}
    page = Page(get(client, "/no/such", headers=headers).text)
    notice = bundled.archive.notice_en if lang == "en" else bundled.archive.notice_ru
    assert page.lang == lang
    # The notice reads word for word; each https://khv27.ru in it is a link (two).
    assert page.text["notice"] == notice
    links = [a for a in page.anchors if a["within"] == "notice"]
    assert [(a["href"], a["hreflang"], a["text"]) for a in links] == [
        ("https://khv27.ru/", "ru", "https://khv27.ru")
    ] * notice.count("https://khv27.ru")
    assert len(links) == 2


def test_banner_notice_link_in_the_html(client: FlaskClient) -> None:
    body = get(client, "/no/such").text
    assert (
        "города Хабаровска "
        '<a href="https://khv27.ru/" hreflang="ru">https://khv27.ru</a>. Старая версия'
    ) in body
    assert 'по адресу <a href="https://khv27.ru/" hreflang="ru">https://khv27.ru</a>.</p>' in body


@pytest.mark.parametrize(
    ("accept", "org", "hreflang"),
    [
        pytest.param(None, "Администрация города Хабаровска", None, id="ru-same-language"),
        pytest.param("en", "Khabarovsk City Administration", "ru", id="en-says-the-site-is-ru"),
    ],
)
def test_banner_masthead_links_the_new_site(
    client: FlaskClient, accept: str | None, org: str, hreflang: str | None
) -> None:
    headers = {"Accept-Language": accept} if accept is not None else {}
    page = Page(get(client, "/no/such", headers=headers).text)
    (link,) = [a for a in page.anchors if a["within"] == "org"]
    assert (link["href"], link["text"], link.get("hreflang")) == (
        "https://khv27.ru/",
        org,
        hreflang,
    )
    assert page.anchors[0] is link  # the first link on the page


@pytest.mark.parametrize(
    ("accept", "label"),
    [
        pytest.param(None, "Перейти на новый сайт khv27.ru", id="ru"),
        pytest.param("en", "Go to the new website khv27.ru (in Russian)", id="en-says-russian"),
    ],
)
def test_banner_home_button(client: FlaskClient, accept: str | None, label: str) -> None:
    headers = {"Accept-Language": accept} if accept is not None else {}
    page = Page(get(client, "/upload/a.pdf", headers=headers).text)
    (button,) = [a for a in page.anchors if a.get("class") == "button"]
    assert (button["href"], button["hreflang"], button["text"]) == (
        "https://khv27.ru/",
        "ru",
        label,
    )


REQUESTED_HTML = [
    # (Host header, raw target, the <code> element's inner HTML)
    pytest.param(
        HOST,
        "/a/b.pdf?x=1&y=2",
        "khabarovskadm.ru/<wbr>a/<wbr>b.pdf?<wbr>x=1&amp;<wbr>y=2",
        id="wbr-after-slash-question-mark-and-ampersand",
    ),
    pytest.param(
        "int.khabarovskadm.ru",
        "/x/",
        "int.khabarovskadm.ru/<wbr>x/",
        id="requested-keeps-the-trailing-slash-no-wbr-at-the-end",
    ),
    pytest.param(
        HOST,
        "/%D0%B4%D0%BE%D0%BA/index.php?q=1",
        "khabarovskadm.ru/<wbr>док/<wbr>index.php?<wbr>q=1",
        id="decoded-path-keeps-index-php",
    ),
    pytest.param(
        HOST,
        "/a/<b>?c='d'",
        "khabarovskadm.ru/<wbr>a/<wbr>&lt;b&gt;?<wbr>c=&#39;d&#39;",
        id="markup-escaped-between-wrap-points",
    ),
    pytest.param(
        HOST,
        "/%3Cwbr%3E/x",
        "khabarovskadm.ru/<wbr>&lt;wbr&gt;/<wbr>x",
        id="a-requested-wbr-is-text",
    ),
]


@pytest.mark.parametrize(("host", "target", "inner"), REQUESTED_HTML)
def test_banner_requested_url_html(client: FlaskClient, host: str, target: str, inner: str) -> None:
    body = get(client, target, host=host).text
    assert f'<code dir="ltr" translate="no">{inner}</code>' in body


@pytest.mark.parametrize(
    ("accept", "description"),
    [
        pytest.param(None, "Архивная версия сайта администрации города Хабаровска. ", id="ru"),
        pytest.param("en", "The archived website of the Khabarovsk City Administration. ", id="en"),
    ],
)
def test_banner_meta_description(
    client: FlaskClient, bundled: RedirectMap, accept: str | None, description: str
) -> None:
    headers = {"Accept-Language": accept} if accept is not None else {}
    page = Page(get(client, "/no/such", headers=headers).text)
    notice = bundled.archive.notice_en if accept else bundled.archive.notice_ru
    assert page.meta["description"] == description + notice
    assert page.meta["robots"] == "noindex"


def test_banner_favicon_is_a_data_url_and_the_page_fetches_nothing(client: FlaskClient) -> None:
    response = get(client, "/upload/a.pdf")
    page = Page(response.text)
    (icon,) = page.icons
    assert (icon["rel"], icon["type"]) == ("icon", "image/svg+xml")
    assert (icon["href"] or "").startswith("data:image/svg+xml,%3Csvg ")
    # No element but a link the reader follows names a URL that is not data:.
    assert page.fetches == [("link", "href", icon["href"])]
    assert "img-src data:" in response.headers["Content-Security-Policy"]


def test_banner_long_accept_language_is_read_to_its_limit(client: FlaskClient) -> None:
    # 10,000 entries: the first 128 characters name only Chinese, the rest Russian.
    header = "zh, " * 32 + ", ".join(["ru"] * (10_000 - 32))
    whole = get(client, "/no/such", headers={"Accept-Language": header})
    cut = get(client, "/no/such", headers={"Accept-Language": header[:128]})
    assert whole.headers["Content-Language"] == cut.headers["Content-Language"] == "en"
    assert Page(whole.text).lang == "en"


ARCHIVE_LINKS = [
    # (Host header, raw target, archived-copy link)
    pytest.param(HOST, "/no/such", f"{WAYBACK}http://khabarovskadm.ru/no/such", id="plain"),
    pytest.param(
        "WWW.khabarovskadm.ru.:8080",
        "/No/Such/?b=2&a=1",
        f"{WAYBACK}http://khabarovskadm.ru/No/Such/?b=2&a=1",
        id="canonical-host-raw-path-and-query",
    ),
    pytest.param(
        HOST,
        "/%C4%EE%EA/index.php?utm_source=x",
        f"{WAYBACK}http://khabarovskadm.ru/%C4%EE%EA/index.php?utm_source=x",
        id="escapes-and-ignored-params-kept-raw",
    ),
    pytest.param(
        HOST,
        '/a b/"<x>"?q=<y> z',
        f"{WAYBACK}http://khabarovskadm.ru/a%20b/%22%3Cx%3E%22?q=%3Cy%3E%20z",
        id="quote-angle-brackets-space-encoded",
    ),
    pytest.param(
        "int.khabarovskadm.ru",
        "/a\xd0\x94",
        f"{WAYBACK}http://int.khabarovskadm.ru/a%D0%94",
        id="raw-utf8-bytes-encoded",
    ),
]


@pytest.mark.parametrize(("host", "target", "link"), ARCHIVE_LINKS)
def test_archived_copy_link(client: FlaskClient, host: str, target: str, link: str) -> None:
    response = get(client, target, host=host)
    assert response.status_code == 404
    assert Page(response.text).hrefs[-1] == link


HOSTILE = [
    pytest.param("/<script>alert(1)</script>", id="script-in-path"),
    pytest.param("/%3Cscript%3Ealert(1)%3C/script%3E", id="escaped-script-in-path"),
    pytest.param("/x?q=<script>alert(1)</script>", id="script-in-query"),
    pytest.param("/\"onmouseover='alert(1)'", id="quotes-in-path"),
    pytest.param("/x?a=%22%27%3E%3Cimg%20src=x%3E", id="escaped-quotes-in-query"),
    pytest.param("/upload/%3Csvg%20onload=alert(1)%3E", id="script-in-a-410"),
    pytest.param("/%E2%80%AEfdp.exe", id="bidi-override"),
]


@pytest.mark.parametrize("target", HOSTILE)
def test_banner_escapes_the_request(client: FlaskClient, target: str) -> None:
    response = get(client, target)
    baseline = get(client, "/upload/x" if target.startswith("/upload/") else "/x")
    assert response.status_code == baseline.status_code
    body = response.text
    assert "<script" not in body.lower() and "<svg onload" not in body.lower()
    # The template's own <wbr> wrap points: one after each '/', '?', '&' of the URL as
    # shown (but the last character), none from the request.
    page, base = Page(body), Page(baseline.text)
    assert page.wbr_in_code == wrap_points(page.code)
    assert base.wbr_in_code == wrap_points(base.code) > 0
    # Every other <, >, " and ' in the page is the template's own: the request adds none.
    for ch in "<>":
        assert body.count(ch) - page.wbr_in_code == baseline.text.count(ch) - base.wbr_in_code
    for ch in "\"'":
        assert body.count(ch) == baseline.text.count(ch), ch
    assert "\u202e" not in body


def test_banner_shows_the_requested_url_as_text(client: FlaskClient) -> None:
    page = Page(get(client, "/a/<b>?c='d'").text)
    assert page.code == "khabarovskadm.ru/a/<b>?c='d'"


# --- plain answers ------------------------------------------------------------------------


def assert_plain(response: TestResponse, status: int) -> None:
    assert (response.status_code, response.headers.get("Location")) == (status, None)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("evil.example", id="other-host"),
        pytest.param("khabarovskadm.ru.evil.example", id="served-host-as-prefix"),
        pytest.param("evilkhabarovskadm.ru", id="domain-as-a-suffix-is-not-a-subdomain"),
        pytest.param("10.0.0.1", id="ip-address"),
        pytest.param("", id="empty-host"),
    ],
)
def test_unknown_host(client: FlaskClient, host: str) -> None:
    response = get(client, "/", host=host)
    assert_plain(response, 404)
    assert "not served" in response.text


def test_missing_host_header(app: Flask) -> None:
    environ = EnvironBuilder(path="/", method="GET").get_environ()
    environ.pop("HTTP_HOST", None)
    environ["RAW_URI"] = "/"
    body, status, headers = run_wsgi_app(app, environ)
    assert (status, headers.get("Location"), headers["Cache-Control"]) == (
        "404 NOT FOUND",
        None,
        "no-store",
    )
    assert b"not served" in b"".join(body)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize(
    "target", ["/", "/no/such", "/-/health"], ids=["redirect", "404", "health"]
)
def test_method_not_allowed(client: FlaskClient, method: str, target: str) -> None:
    response = get(client, target, method=method)
    assert_plain(response, 405)
    assert response.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/%zz", id="bad-escape"),
        pytest.param("/a%4", id="short-escape"),
        pytest.param("/%00", id="nul"),
        pytest.param("/a%0d%0aSet-Cookie:x=1", id="crlf"),
        pytest.param("/%7f", id="del"),
        pytest.param("/%98", id="cp1251-undefined-byte"),
        pytest.param("/?utm_source=%0a", id="control-in-ignored-param"),
        pytest.param("no-slash", id="not-a-path"),
    ],
)
def test_malformed_is_400(client: FlaskClient, target: str) -> None:
    response = get(client, target)
    assert_plain(response, 400)
    assert "\r" not in response.text.strip() and "Set-Cookie" not in response.headers


def test_unknown_host_is_decided_before_well_formedness(client: FlaskClient) -> None:
    assert_plain(get(client, "/%zz", host="evil.example"), 404)


@pytest.mark.parametrize(
    "host", ["khabarovskadm.ru", "10.0.0.1", "evil.example", "[::1]:8080"], ids=str
)
def test_health_on_any_host(client: FlaskClient, bundled: RedirectMap, host: str) -> None:
    response = get(client, "/-/health", host=host)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Type"] == "application/json"
    data = json.loads(response.data)
    assert data["version"] == bundled.version
    assert re.fullmatch(r"[0-9a-f]{16}", data["version"])
    assert data["rules"] == len(bundled.rules) == 20
    assert data["last_error"] is None
    assert datetime.fromisoformat(data["loaded_at"]).tzinfo is not None


def test_health_head(client: FlaskClient) -> None:
    response = get(client, "/-/health", method="HEAD")
    assert (response.status_code, response.data) == (200, b"")


@pytest.mark.parametrize("target", ["/-/", "/-/nope", "/-/health/x", "/-/HEALTH"])
def test_other_service_paths_are_404(client: FlaskClient, target: str) -> None:
    assert_plain(get(client, target, host="10.0.0.1"), 404)


def test_fault_in_matching_is_the_404_banner(
    client: FlaskClient, app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    matcher = app.extensions["gateway.maps"].current().matcher
    monkeypatch.setattr(matcher, "match", broken)
    response = get(client, "/")
    assert (response.status_code, response.headers.get("Location")) == (404, None)
    assert response.headers["Cache-Control"] == BANNER_CACHE
