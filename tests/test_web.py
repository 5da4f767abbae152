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
    """The parts of a banner page the tests look at: links, <html lang>, <style>, <code>."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.lang = ""
        self.style = ""
        self.code = ""
        self._in: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a":
            self.hrefs.append(values.get("href") or "")
        elif tag == "html":
            self.lang = values.get("lang") or ""
        self._in = tag if tag in ("style", "code") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.style += data
        elif self._in == "code":
            self.code += data


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
    pytest.param("/no/such", "de-DE,de;q=0.9", "ru", id="neither-is-russian"),
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


def test_banner_links(client: FlaskClient) -> None:
    hrefs = Page(get(client, "/upload/iblock/a.pdf").text).hrefs
    assert hrefs == [
        "https://khv27.ru/",
        "https://khv27.ru/documents/",  # the rule's see:
        f"{WAYBACK}http://khabarovskadm.ru/upload/iblock/a.pdf",
    ]


def test_banner_without_see_has_no_see_link(client: FlaskClient) -> None:
    hrefs = Page(get(client, "/bitrix/rk.php").text).hrefs
    assert hrefs == ["https://khv27.ru/", f"{WAYBACK}http://khabarovskadm.ru/bitrix/rk.php"]


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
    # Every <, >, " and ' in the page is the template's own: the request adds none.
    for ch in "<>\"'":
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
        pytest.param("www.int.khabarovskadm.ru", id="undeclared-subdomain"),
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
    assert data["rules"] == len(bundled.rules) == 16
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
