"""Archived copies answered through the Flask client (spec §8): headers, 304, 206, HEAD,
precedence against the rules, charsets, the banner and what rewriting leaves out.

The archive is written with warcio's WARCWriter (tests/archives.py) in each module's
temp folder; the map adds rules that withhold (410) and redirect (301) captured pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from gateway.app import create_app
from gateway.archive.html import BANNER_TAG, decode_page, page_charset, rewrite_page
from tests.archives import OLD_SITE, PDF, Capture, archive_map, cp1251_page, write_warc

HOST = "khabarovskadm.ru"
HTML = (("Content-Type", "text/html"),)
HOSTILE = Capture(
    "http://khabarovskadm.ru/hostile/",
    b"<!doctype html><html><head>"
    b'<meta http-equiv="refresh" content="0;url=http://evil.example/">'
    b'<base href="http://khabarovskadm.ru/sub/">'
    b'<link rel="stylesheet" href="http://cdn.example/x.css"><link rel="stylesheet" href="s.css">'
    b'<link rel="preconnect" href="//khabarovskadm.ru/">'
    b"<style>body>*:first-child{display:none!important}[class*=banner]{display:none!important}"
    b"</style><script>alert(1)</script><title>Hostile</title></head>"
    b'<body onload="x()"><div class="top-banner" style="position:fixed;top:0;left:0;width:100%;'
    b'z-index:2147483647">cover</div><img src="http://tracker.example/p.gif">'
    b'<img src="pic.png" srcset="a.png 1x, http://cdn.example/b.png 2x">'
    b'<a href="http://other.example/">out</a><a href="javascript:alert(1)">js</a>'
    b'<form action="http://evil.example/post"><input name="q"><button formaction="/x">go</button>'
    b'</form><iframe src="http://evil.example/"></iframe><object data="x.swf"><p>fallback</p>'
    b'</object><noscript><img src="http://tracker.example/ns.gif"></noscript>'
    b'<svg><script>alert(2)</script><a href="http://int.khabarovskadm.ru/about/">int</a></svg>'
    b"<p>text &amp; more</p></body></html>",
    headers=(("Content-Type", "text/html; charset=utf-8"),),
)
EXTRA = (
    HOSTILE,
    Capture("http://khabarovskadm.ru/meta-only/", cp1251_page("Мета", "Только в meta.", meta=True)),
    Capture(
        "http://khabarovskadm.ru/lies-utf8/",
        cp1251_page("Ложь", "Заявлен UTF-8."),
        headers=(("Content-Type", "text/html; charset=utf-8"),),
    ),
    Capture("http://khabarovskadm.ru/withheld/", b"<p>personal data</p>", headers=HTML),
    Capture("http://khabarovskadm.ru/ruled/", b"<p>has a rule</p>", headers=HTML),
    Capture(
        "http://khabarovskadm.ru/to-rule/",
        status="302 Found",
        headers=(("Location", "/ruled-elsewhere/"),),
    ),
    Capture(
        "http://khabarovskadm.ru/to-withheld/",
        status="301 Moved",
        headers=(("Location", "http://www.khabarovskadm.ru/withheld/"),),
    ),
    Capture(
        "http://khabarovskadm.ru/loop-a/", status="301 Moved", headers=(("Location", "/loop-b/"),)
    ),
    Capture(
        "http://khabarovskadm.ru/loop-b/", status="301 Moved", headers=(("Location", "/loop-a/"),)
    ),
    Capture(
        "http://khabarovskadm.ru/away/",
        status="301 Moved",
        headers=(("Location", "https://example.com/"),),
    ),
)
RULES = (
    "{from: /withheld/, status: 410}",
    "{from: /ruled/, to: /new/ruled/}",
    "{from: /ruled-elsewhere/, to: /new/elsewhere/}",
)


@pytest.fixture(scope="module")
def map_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("archived")
    write_warc(folder / "site.warc.gz", (*OLD_SITE, *EXTRA))
    return archive_map(folder, ["site.warc.gz"], RULES)


@pytest.fixture(scope="module")
def app(map_path: Path) -> Flask:
    return create_app({"TESTING": True, "MAP_PATH": str(map_path)})


def get(
    client: FlaskClient,
    target: str,
    *,
    host: str = HOST,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
) -> TestResponse:
    """Send `target` as the raw request target (gunicorn's RAW_URI)."""
    return client.open(
        "/",
        method=method,
        headers={"Host": host, **(headers or {})},
        environ_overrides={"RAW_URI": target},
    )


def archived_headers(response: TestResponse) -> dict[str, str | None]:
    names = [
        "Content-Type",
        "Cache-Control",
        "X-Content-Type-Options",
        "Memento-Datetime",
        "Link",
        "Accept-Ranges",
        "Vary",
    ]
    return {"status": str(response.status_code), **{n: response.headers.get(n) for n in names}}


HEADERS = [
    (
        "cp1251-page",
        "/press-center/news/detail.php?ID=7",
        {
            "status": "200",
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "public, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Memento-Datetime": "Sat, 20 Feb 2021 10:00:00 GMT",
            "Link": '<http://khabarovskadm.ru/press-center/news/detail.php?ID=7>; rel="original"',
            "Accept-Ranges": None,
            "Vary": "Accept-Language",
        },
    ),
    (
        "pdf",
        "/docs/report.pdf",
        {
            "status": "200",
            "Content-Type": "application/pdf",
            "Cache-Control": "public, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Memento-Datetime": "Sat, 20 Feb 2021 10:00:00 GMT",
            "Link": '<http://khabarovskadm.ru/docs/report.pdf>; rel="original"',
            "Accept-Ranges": "bytes",
            "Vary": None,
        },
    ),
    (
        "revisit-date",
        "/city/history/",
        {
            "status": "200",
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "public, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Memento-Datetime": "Thu, 25 Feb 2021 10:00:00 GMT",
            "Link": '<http://khabarovskadm.ru/city/history/>; rel="original"',
            "Accept-Ranges": None,
            "Vary": "Accept-Language",
        },
    ),
    (
        "followed-captured-301",
        "/old-page/",
        {
            "status": "200",
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "public, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Memento-Datetime": "Thu, 25 Feb 2021 10:00:00 GMT",
            "Link": '<http://khabarovskadm.ru/city/history/>; rel="original"',
            "Accept-Ranges": None,
            "Vary": "Accept-Language",
        },
    ),
]


@pytest.mark.parametrize(
    ("target", "expected"), [c[1:] for c in HEADERS], ids=[c[0] for c in HEADERS]
)
def test_an_archived_answer_carries_the_headers_of_spec_8(
    client: FlaskClient, target: str, expected: dict[str, str | None]
) -> None:
    response = get(client, target)
    assert archived_headers(response) == expected
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "script-src 'none'",
        "form-action 'none'",
        "default-src 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp
    assert "img-src 'self' data: *.khabarovskadm.ru int.khabarovskadm.ru" in csp
    assert response.headers["ETag"].startswith('"')


@pytest.mark.parametrize(
    "target", ["/press-center/news/detail.php?ID=7", "/docs/report.pdf"], ids=["html", "pdf"]
)
def test_a_conditional_get_answers_304(client: FlaskClient, target: str) -> None:
    etag = get(client, target).headers["ETag"]
    again = get(client, target, headers={"If-None-Match": etag})
    assert (again.status_code, again.headers["ETag"], again.data) == (304, etag, b"")
    assert again.headers["Cache-Control"] == "public, max-age=3600"


RANGES = [
    ("first-bytes", "bytes=0-9", 206, f"bytes 0-9/{len(PDF)}", PDF[:10]),
    ("suffix", "bytes=-5", 206, f"bytes {len(PDF) - 5}-{len(PDF) - 1}/{len(PDF)}", PDF[-5:]),
    ("middle", "bytes=100-199", 206, f"bytes 100-199/{len(PDF)}", PDF[100:200]),
    ("past-the-end", f"bytes={len(PDF) + 10}-", 416, f"bytes */{len(PDF)}", None),
]


@pytest.mark.parametrize(
    ("spec", "status", "content_range", "body"), [c[1:] for c in RANGES], ids=[c[0] for c in RANGES]
)
def test_a_range_of_a_pdf_answers_206(
    client: FlaskClient, spec: str, status: int, content_range: str, body: bytes | None
) -> None:
    response = get(client, "/docs/report.pdf", headers={"Range": spec})
    assert (response.status_code, response.headers["Content-Range"]) == (status, content_range)
    if body is not None:
        assert (response.data, response.headers["Content-Length"]) == (body, str(len(body)))


def test_a_range_of_an_html_page_is_the_whole_page(client: FlaskClient) -> None:
    response = get(client, "/city/history/", headers={"Range": "bytes=0-9"})
    assert (response.status_code, response.headers.get("Content-Range")) == (200, None)
    assert BANNER_TAG in response.get_data(as_text=True)


@pytest.mark.parametrize("target", ["/city/history/", "/docs/report.pdf"], ids=["html", "pdf"])
def test_head_answers_the_same_headers_without_a_body(client: FlaskClient, target: str) -> None:
    full = get(client, target)
    head = get(client, target, method="HEAD")
    assert (head.status_code, head.data) == (200, b"")
    for name in (
        "Content-Type",
        "Content-Length",
        "ETag",
        "Memento-Datetime",
        "Link",
        "Cache-Control",
    ):
        assert head.headers[name] == full.headers[name], name


PRECEDENCE = [
    # (id, target, status, Location or a text of the page)
    ("capture-served", "/city/history/", 200, "Основан в 1858 году."),
    ("410-withholds", "/withheld/", 410, "Страница перенесена в архив"),
    ("301-rule-wins", "/ruled/", 301, "https://khv27.ru/new/ruled/"),
    ("captured-redirect-to-a-rule", "/to-rule/", 301, "https://khv27.ru/new/elsewhere/"),
    ("captured-redirect-to-withheld", "/to-withheld/", 410, "Страница перенесена в архив"),
    ("captured-redirect-loop", "/loop-a/", 404, "Страница не найдена"),
    ("captured-redirect-off-site", "/away/", 404, "Страница не найдена"),
    ("captured-404", "/missing/", 404, "Страница не найдена"),
    ("not-captured", "/nothing/", 404, "Страница не найдена"),
]


@pytest.mark.parametrize(
    ("target", "status", "shows"), [c[1:] for c in PRECEDENCE], ids=[c[0] for c in PRECEDENCE]
)
def test_rules_come_before_the_archive(
    client: FlaskClient, target: str, status: int, shows: str
) -> None:
    response = get(client, target)
    assert response.status_code == status
    if status in (301, 302):
        assert (response.headers["Location"], response.headers.get("Memento-Datetime")) == (
            shows,
            None,
        )
    else:
        assert shows in response.get_data(as_text=True)


CHARSETS = [
    ("header", "/press-center/news/detail.php?ID=7", "Хабаровск отметил юбилей."),
    ("meta-only", "/meta-only/", "Только в meta."),
    ("nowhere", "/city/nocharset/", "Текст."),
    ("utf8-declared-wrongly", "/lies-utf8/", "Заявлен UTF-8."),
    ("utf8", "/%D0%B4%D0%BE%D0%BA%D1%83%D0%BC%D0%B5%D0%BD%D1%82%D1%8B/", "документы"),
]


@pytest.mark.parametrize(
    ("target", "text"), [c[1:] for c in CHARSETS], ids=[c[0] for c in CHARSETS]
)
def test_a_page_reads_right_whatever_its_charset(
    client: FlaskClient, target: str, text: str
) -> None:
    response = get(client, target)
    assert (response.status_code, response.mimetype) == (200, "text/html")
    page = response.get_data(as_text=True)
    assert text in page and "charset=windows-1251" not in page


BANNER = [
    (
        "ru",
        "/city/history/",
        {},
        [
            "Старая версия сайта является архивной.",
            "Архивная копия страницы от 25.02.2021.",
            'href="https://khv27.ru/"',
        ],
    ),
    (
        "en-path",
        "/en/news/",
        {},
        [
            "The old version of the site is an archive.",
            "captured on 20 February 2021",
            "Go to the new website khv27.ru",
        ],
    ),
    (
        "en-reader",
        "/city/history/",
        {"Accept-Language": "en"},
        ["The old version of the site is an archive.", "captured on 25 February 2021"],
    ),
]


@pytest.mark.parametrize(
    ("target", "headers", "texts"), [c[1:] for c in BANNER], ids=[c[0] for c in BANNER]
)
def test_the_banner_is_on_top_in_the_readers_language(
    client: FlaskClient, target: str, headers: dict[str, str], texts: list[str]
) -> None:
    response = get(client, target, headers=headers)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    body = page.index("<body") if "<body" in page else 0
    assert page.index(f"<{BANNER_TAG} ", body) < page.index("<khv-archived-page>")
    for text in texts:
        assert text in page


def test_the_hostile_page_loses_everything_that_runs_submits_or_fetches(
    client: FlaskClient,
) -> None:
    page = get(client, "/hostile/").get_data(as_text=True)
    for gone in ("<script", "alert(", "onload", "http-equiv", "<base", "evil.example", "cdn.example",  # noqa: E501
                 "tracker.example", "<iframe", "<object", "x.swf", "javascript:", "action=", "formaction",  # noqa: E501
                 "preconnect"):  # fmt: skip
        assert gone not in page, gone
    for kept in ('<link rel="stylesheet" href="/sub/s.css">', '<img src="/sub/pic.png" srcset="/sub/a.png 1x">',  # noqa: E501
                 '<a href="http://other.example/">out</a>', '<a href="//int.khabarovskadm.ru/about/">int</a>',  # noqa: E501
                 "<p>text &amp; more</p>", "<title>Hostile</title>"):  # fmt: skip
        assert kept in page, kept
    # Our layer's rules come before the page's own styles: its !important rules lose.
    assert page.index("@layer khv-archive-banner") < page.index("body>*:first-child")


def test_health_counts_the_captures(client: FlaskClient) -> None:
    body = get(client, "/-/health").get_json()
    assert (body["captures"], body["archive_problems"]) == (19, [])


# --- whatever the bytes: never a 5xx, always the banner ---------------------------------

MARKUP = st.sampled_from(
    ["<script>", "</script>", "<style>", "</style>", "<body>", "</body>", "<html>", "<!--", "-->",
     "<title>", "</title>", "<iframe>", "<noscript>", "<svg>", "<math>", "<plaintext>", "<xmp>",
     "<a href='", "javascript:", "<img src=http://x/ onerror=", "<base href=//x/>", "<meta charset=",  # noqa: E501
     "<![CDATA[", "<?xml", "&#0;", "&#x110000;", "\x00", "\ufeff", "<khv-archived-page>",
     "</khv-archive-notice>", "<p " + "a" * 5000 + "=1>", "<div style='" + "x" * 20000 + "'>"]
)  # fmt: skip
PAGES = st.one_of(
    st.binary(max_size=2000),
    st.lists(st.one_of(MARKUP, st.text(max_size=30)), max_size=40).map(
        lambda parts: "".join(parts).encode("utf-8", "surrogatepass")
    ),
    st.lists(st.one_of(MARKUP, st.text(max_size=30)), max_size=40).map(
        lambda parts: "".join(parts).encode("cp1251", "replace")
    ),
)
CONTENT_TYPES = st.sampled_from(
    ["text/html", "text/html; charset=utf-8", "text/html; charset=koi8-r", "text/html; charset=bogus",  # noqa: E501
     "application/xhtml+xml", "text/html; charset=utf-16"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(body=PAGES, content_type=CONTENT_TYPES)
def test_any_page_rewrites_with_the_banner(body: bytes, content_type: str) -> None:
    page = rewrite_page(
        decode_page(body, content_type),
        page_url="http://khabarovskadm.ru/x/",
        request_host=HOST,
        host_of=lambda name: HOST if name.lower() == HOST else None,
        banner=f'<{BANNER_TAG} id="{BANNER_TAG}">notice</{BANNER_TAG}>',
    )
    assert f'<{BANNER_TAG} id="{BANNER_TAG}">notice</{BANNER_TAG}>' in page
    assert page.count(f"<{BANNER_TAG}") == 1 and "<script" not in page.lower()
    assert page_charset(body, content_type)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=PAGES, content_type=CONTENT_TYPES)
def test_any_archived_bytes_answer_200_with_the_banner(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, content_type: str
) -> None:
    folder = tmp_path_factory.mktemp("fuzzed")
    write_warc(
        folder / "a.warc",
        [Capture("http://khabarovskadm.ru/fuzz/", body, headers=(("Content-Type", content_type),))],
        gzip=False,
    )
    client = create_app(
        {"TESTING": True, "MAP_PATH": str(archive_map(folder, ["a.warc"]))}
    ).test_client()
    response = get(client, "/fuzz/")
    assert response.status_code == 200
    assert f'<{BANNER_TAG} id="{BANNER_TAG}"' in response.get_data(as_text=True)
