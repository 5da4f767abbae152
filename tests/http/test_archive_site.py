"""The demo's old site crawled by real wget, served from its WARC and WACZ by real gunicorn (§8).

Once per module the old site of docs/examples/old-site/ is served on loopback
(tests/oldsite.py), mirrored by the real ``wget --mirror --warc-file`` through
``http_proxy`` (so wget asks for khabarovskadm.ru and int.khabarovskadm.ru by name),
and the WARC packed as a WACZ. Each test starts gunicorn on a map whose
``archive.warc`` lists one or the other, and asks for the old site's URLs by raw
HTTP: every header of §8, 304, 206, HEAD, precedence against the map's rules, the
captured redirect and 404, Cyrillic and query-string URLs, the second host, and the
pages' own charsets. What each answer must hold is read from the WARC itself with
warcio, not from the gateway.

Then headless Chromium (tests/browser.py) loads archived pages at 390 and 1280 px with
every host but the old ones resolved to a listener that counts requests: no script
runs, the listener gets none, the text and the notice read right, the banner is on
top despite the page's hostile stylesheet, and the shots go to
docs/screenshots/archived-{390,1280}.png. Cost: about 1 s for the crawl, 0.5 s per
gunicorn, 1 s per browser case.
"""

from __future__ import annotations

import contextlib
import html
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.http import http_date

from tests.browser import LAUNCH_ARGS, find_or_install_chromium
from tests.oldsite import (
    NOTICE_EN,
    NOTICE_RU,
    Captured,
    crawl,
    find_or_install_wget,
    pack_wacz,
    read_captures,
    write_map,
)
from tests.support import GunicornServer, Response, StartServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.http, pytest.mark.timeout(900)]  # 900 s: a first apt-get install

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HOST = "khabarovskadm.ru"
ORIGIN = "http://khabarovskadm.ru"
DETAIL = "/press-center/news/detail.php?ELEMENT_ID=5"
PDF = "/upload/iblock/report-2020.pdf"
DOCUMENTS_UTF8 = "/%D0%B4%D0%BE%D0%BA%D1%83%D0%BC%D0%B5%D0%BD%D1%82%D1%8B/"  # /документы/
DOCUMENTS_CP1251 = "/%E4%EE%EA%F3%EC%E5%ED%F2%FB/"  # the same, escaped in windows-1251
EXTERNAL_HOSTS = ("cdn.external.example", "counter.external.example", "fonts.external.example")
# The captures served, by URL (spec §8: 200s and redirects on a served host). The
# Cyrillic page was captured under two spellings (wget escaped its link in UTF-8 from
# pages that declare their charset, in windows-1251 from the one that does not): one key.
SERVED = (
    "/",
    "/press-center/news/",
    DETAIL,
    "/city/history/",
    "/city/symbols/",
    "/city/honorary/",
    "/city/twin-cities/",
    "/en/",
    DOCUMENTS_UTF8,
    "/personal/",
    "/old-news/",
    "/old-list/",
    "/bitrix/templates/main/styles.css",
    "/bitrix/js/main/core.js",
    "/upload/logo.png",
    "/upload/iblock/amur.png",
    PDF,
    "http://int.khabarovskadm.ru/",
    "http://int.khabarovskadm.ru/en/about/",
)


@dataclass(frozen=True)
class OldSiteArchive:
    """The crawl's files, the maps serving them, and what the WARC holds, by URL."""

    folder: Path
    maps: dict[str, Path]  # "warc" and "wacz"
    captures: dict[str, Captured]
    requested: list[str]

    def capture(self, url: str) -> Captured:
        return self.captures[url if "://" in url else ORIGIN + url]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> OldSiteArchive:
    """Crawl the old site with wget once for the module; pack the WACZ; write both maps."""
    wget, why = find_or_install_wget()
    if wget is None:
        pytest.skip(f"wget is not installed and could not be installed: {why}")
    folder = tmp_path_factory.mktemp("old-site")
    done = crawl(wget, folder)
    wacz = pack_wacz(done.warc, folder / "old-site.wacz")
    maps = {
        "warc": write_map(folder, ["*.warc.gz"], name="warc.yaml"),  # a glob, as ops write it
        "wacz": write_map(folder, [wacz.name], name="wacz.yaml"),
    }
    return OldSiteArchive(folder, maps, read_captures(done.warc), done.requested)


@pytest.fixture(params=["warc", "wacz"])
def server(
    request: pytest.FixtureRequest, archive: OldSiteArchive, gunicorn_factory: StartServer
) -> GunicornServer:
    """gunicorn serving the map of the WARC, then of the WACZ."""
    return gunicorn_factory(archive.maps[request.param])


def get(server: GunicornServer, target: str, **kwargs: Any) -> Response:
    host = HOST
    if target.startswith("http://"):
        host, _, path = target[len("http://") :].partition("/")
        target = "/" + path
    return server.request(target, host=kwargs.pop("host", host), **kwargs)


def memento(captured: Captured) -> str:
    return http_date(datetime.fromisoformat(captured.date.replace("Z", "+00:00")))


def text_of(response: Response) -> str:
    """The body as UTF-8, which every archived HTML page is answered in."""
    return response.body.decode("utf-8")


# --- the crawl itself ---------------------------------------------------------------------


def test_wget_crawled_both_hosts_through_the_proxy(archive: OldSiteArchive) -> None:
    # Every URL of the site was asked for by its old host name, and no other host was.
    hosts = {url.split("/")[2] for url in archive.requested}
    assert hosts == {"khabarovskadm.ru", "int.khabarovskadm.ru"}
    for path in SERVED:
        assert archive.capture(path).status in (200, 301), path
    assert archive.capture("/deleted-page/").status == 404
    assert archive.capture("/old-news/").location.endswith(DETAIL)
    assert archive.capture(DOCUMENTS_CP1251).status == 200


# --- headers ------------------------------------------------------------------------------


HEADER_CASES = (
    (DETAIL, "text/html; charset=utf-8"),
    (PDF, "application/pdf"),
    ("/upload/logo.png", "image/png"),
    ("/bitrix/templates/main/styles.css", "text/css"),
    ("http://int.khabarovskadm.ru/en/about/", "text/html; charset=utf-8"),
)


@contextlib.contextmanager
def case(name: str) -> Iterator[None]:
    """Name the case of a table a failed assertion was checking (one server, many cases)."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{name}: {exc}") from exc


def test_every_header_of_spec_8(server: GunicornServer, archive: OldSiteArchive) -> None:
    for target, content_type in HEADER_CASES:
        with case(target):
            _check_headers(server, archive, target, content_type)


def _check_headers(
    server: GunicornServer, archive: OldSiteArchive, target: str, content_type: str
) -> None:
    captured = archive.capture(target)
    url = target if "://" in target else ORIGIN + target
    response = get(server, target)
    assert response.status == 200
    headers = response.headers
    assert headers["Content-Type"] == content_type
    assert headers["Memento-Datetime"] == memento(captured)
    assert headers["Link"] == f'<{url}>; rel="original"'
    assert headers["Cache-Control"] == "public, max-age=3600"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["ETag"].startswith('"') and len(headers["ETag"]) > 8
    csp = headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'none'",
        "connect-src 'none'",
        "form-action 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ):
        assert directive in csp, directive
    assert "external" not in csp and "*" not in csp.replace("*.khabarovskadm.ru", "")
    if content_type.startswith("text/html"):
        assert headers["Vary"] == "Accept-Language"
        assert "Accept-Ranges" not in headers
        assert "khv-archive-notice" in text_of(response)
    else:
        # Other payloads: the bytes captured, no banner, byte ranges offered.
        assert response.body == captured.payload
        assert headers["Content-Length"] == str(len(captured.payload))
        assert headers["Accept-Ranges"] == "bytes"


def test_conditional_get_ranges_and_head(server: GunicornServer, archive: OldSiteArchive) -> None:
    pdf = archive.capture(PDF).payload
    for target in (DETAIL, PDF):
        first = get(server, target)
        etag = first.headers["ETag"]
        again = get(server, target, headers={"If-None-Match": etag})
        assert (again.status, again.body) == (304, b""), target
        assert again.headers["ETag"] == etag
        assert again.headers["Memento-Datetime"] == first.headers["Memento-Datetime"]
        other = get(server, target, headers={"If-None-Match": '"not-this-one"'})
        assert other.status == 200 and other.body == first.body, target

        head = get(server, target, method="HEAD")
        assert head.status == 200 and head.body == b"", target
        skip = {"date"}
        assert {k: v for k, v in head.headers.items() if k not in skip} == {
            k: v for k, v in first.headers.items() if k not in skip
        }, target

    part = get(server, PDF, headers={"Range": "bytes=100-299"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-299/{len(pdf)}"
    assert part.body == pdf[100:300]
    tail = get(server, PDF, headers={"Range": "bytes=-50"})
    assert (tail.status, tail.body) == (206, pdf[-50:])
    beyond = get(server, PDF, headers={"Range": f"bytes={len(pdf) + 10}-"})
    assert beyond.status == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(pdf)}"
    # An HTML page is rewritten, so it is answered whole: no ranges of its bytes.
    page = get(server, DETAIL, headers={"Range": "bytes=0-9"})
    assert page.status == 200 and "khv-archive-notice" in text_of(page)
    assert get(server, DETAIL, method="POST").status == 405


# --- which answer -------------------------------------------------------------------------


def test_rules_come_before_the_archive(server: GunicornServer, archive: OldSiteArchive) -> None:
    # Captured, but the map has an equivalent: the rule's 301 wins.
    assert "<h1>" in archive.capture("/press-center/news/").payload.decode("cp1251")
    ruled = get(server, "/press-center/news/")
    assert (ruled.status, ruled.headers.get("Location")) == (301, "https://khv27.ru/news/")
    # A captured redirect to that page answers with the rule's 301, not a legacy Location.
    old_list = get(server, "/old-list/")
    assert (old_list.status, old_list.headers.get("Location")) == (301, "https://khv27.ru/news/")
    # Captured, but withheld with a 410: the banner, and nothing of the page.
    assert "Иванов" in archive.capture("/personal/").payload.decode("cp1251")
    withheld = get(server, "/personal/")
    assert withheld.status == 410
    assert "Иванов" not in text_of(withheld) and "Memento-Datetime" not in withheld.headers


def test_captured_redirects_404s_and_every_spelling(
    server: GunicornServer, archive: OldSiteArchive
) -> None:
    # The captured 301 is followed inside the archive: the page it led to, at the old URL.
    moved = get(server, "/old-news/")
    assert moved.status == 200 and "Location" not in moved.headers
    assert moved.headers["Link"] == f'<{ORIGIN}{DETAIL}>; rel="original"'
    assert "31 мая жители и гости краевой столицы" in text_of(moved)
    # The captured 404 is not served: the 404 banner, without the old 404 page's text.
    assert "Запрошенная страница удалена" in archive.capture("/deleted-page/").payload.decode(
        "cp1251"
    )
    gone = get(server, "/deleted-page/")
    assert gone.status == 404 and "Memento-Datetime" not in gone.headers
    assert "Запрошенная страница удалена" not in text_of(gone)
    assert "является архивной" in text_of(gone)
    # A Cyrillic path, in UTF-8 or windows-1251 escapes, and on the www alias.
    for target, host in (
        (DOCUMENTS_UTF8, HOST),
        (DOCUMENTS_CP1251, HOST),
        (DOCUMENTS_UTF8, "www.khabarovskadm.ru"),
    ):
        found = get(server, target, host=host)
        assert found.status == 200, (target, host)
        assert "Постановления и распоряжения" in text_of(found), (target, host)
    # A query-string page: its significant query must be the same set (§8).
    assert get(server, DETAIL + "&utm_source=vk").status == 200  # utm_* is not significant
    assert get(server, "/press-center/news/detail.php").status == 404
    assert get(server, "/press-center/news/detail.php?ELEMENT_ID=6").status == 404
    # The second host has its own captures, and the main host does not answer with them.
    int_page = get(server, "http://int.khabarovskadm.ru/en/about/")
    assert int_page.status == 200 and "Sister cities: Niigata" in text_of(int_page)
    assert get(server, "/en/about/").status == 404


def test_health_counts_the_captures(server: GunicornServer) -> None:
    health = get(server, "/-/health")
    assert health.status == 200
    data = json.loads(health.body)
    assert data["captures"] == len(SERVED)
    assert data["archive_problems"] == []


# --- the pages themselves -----------------------------------------------------------------

PAGES = [
    # (target, charset as captured, where it was declared, a sentence of the page)
    (DETAIL, "cp1251", "header", "31 мая жители и гости краевой столицы отметили день рождения"),
    ("/city/history/", "cp1251", "meta", "Хабаровск основан в 1858 году как военный пост"),
    ("/city/symbols/", "cp1251", "nowhere", "серебряная волнистая полоса обозначает Амур"),
    # KOI8-R: read right only by what it declares, not by the windows-1251 fallback.
    ("/city/honorary/", "koi8-r", "meta", "Почётный гражданин города Хабаровска» присваивается"),
    ("/city/twin-cities/", "koi8-r", "header", "Побратимы Хабаровска: Ниигата, Портленд, Харбин"),
    ("/en/", "utf-8", "header", "Хабаровск — Khabarovsk."),
    (DOCUMENTS_UTF8, "utf-8", "meta", "по кириллическому адресу"),
]


def test_pages_read_in_their_own_charset(server: GunicornServer, archive: OldSiteArchive) -> None:
    for target, charset, declared, sentence in PAGES:
        with case(f"{target} ({charset}, declared: {declared})"):
            _check_charset(server, archive, target, charset, declared, sentence)


def _check_charset(
    server: GunicornServer,
    archive: OldSiteArchive,
    target: str,
    charset: str,
    declared: str,
    sentence: str,
) -> None:
    captured = archive.capture(target)
    # The fixture is what it claims: the bytes are that charset, declared only there.
    assert sentence in html.unescape(captured.payload.decode(charset))
    in_header = "charset=" in captured.content_type
    in_meta = b"charset=" in captured.payload[:1024]
    assert (in_header, in_meta) == {
        "header": (True, False),
        "meta": (False, True),
        "nowhere": (False, False),
    }[declared]
    response = get(server, target)
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    text = text_of(response)
    assert sentence in text
    assert "\ufffd" not in text
    assert "является архивной" in text or "is an archive" in text


def test_nothing_runs_submits_or_leaves(server: GunicornServer) -> None:
    text = text_of(get(server, DETAIL))
    for gone in ("<script", "onload", "document.title", "action=", "<base", "http-equiv"):
        assert gone not in text, gone
    for host in EXTERNAL_HOSTS:
        assert host not in text, host
    # The page's own resources stay, as paths on the host asked for.
    assert 'href="/bitrix/templates/main/styles.css"' in text
    assert 'src="/upload/logo.png"' in text
    assert 'href="//int.khabarovskadm.ru/en/about/"' in text


# --- in a browser ---------------------------------------------------------------------------

WAIT_MS = 10_000
VIEWPORTS = {390: 844, 1280: 800}
BROWSER_PAGES = {
    # target: (title as captured, text of the page, the page's lang, the notice's words)
    DETAIL: (
        "Хабаровск отметил 163-летие со дня основания",  # noqa: RUF001
        "31 мая жители и гости краевой столицы отметили день рождения города.",
        "ru",
        "Старая версия сайта khabarovskadm.ru является архивной.",
    ),
    "/city/symbols/": (
        "Символика города",
        "на щите — медведь, серебряная волнистая полоса обозначает Амур.",
        "ru",
        "Старая версия сайта khabarovskadm.ru является архивной.",
    ),
    "/en/": (
        "Khabarovsk City Administration",
        "XXVII-th Meeting of Mayors from Siberia and Russian Far East",
        "en",
        "The old version of the site, khabarovskadm.ru, is an archive.",  # /en/: English (§5)
    ),
}


class _Counter(BaseHTTPRequestHandler):
    """Answers anything with 200 and counts it: the "external" hosts of the old pages."""

    server: ExternalHosts

    def _count(self) -> None:
        with self.server.lock:
            self.server.hits.append(f"{self.command} {self.headers.get('Host')}{self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_HEAD = do_OPTIONS = _count

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `hits` has what came."""


class ExternalHosts(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Counter)
        self.hits: list[str] = []
        self.lock = threading.Lock()


@pytest.fixture(scope="module")
def external() -> Iterator[ExternalHosts]:
    listener = ExternalHosts()
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        listener.shutdown()
        listener.server_close()


@pytest.fixture(scope="module")
def browser(external: ExternalHosts) -> Iterator[Browser]:
    """Chromium resolving the old hosts to 127.0.0.1 and every other host to `external`."""
    api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev extra")
    chromium, why = find_or_install_chromium()
    if chromium is None:
        pytest.skip(f"chromium is not installed and could not be installed: {why}")
    port = external.server_address[1]
    rules = (
        "--host-resolver-rules=MAP khabarovskadm.ru 127.0.0.1, MAP *.khabarovskadm.ru 127.0.0.1,"
        f" MAP * 127.0.0.1:{port}"
    )
    args = [a for a in LAUNCH_ARGS if not a.startswith("--host-resolver-rules")] + [rules]
    with api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=args, timeout=WAIT_MS)
        try:
            yield launched
        finally:
            launched.close()


BANNER_ON_TOP = """
() => {
  const banner = document.querySelector("khv-archive-notice");
  const box = banner.getBoundingClientRect();
  const style = getComputedStyle(banner);
  const y = box.top + box.height / 2;
  const points = [box.left + 2, box.left + box.width / 2, box.right - 2].map(x => {
    const hit = document.elementFromPoint(x, y);
    return hit !== null && banner.contains(hit);
  });
  const cover = document.querySelector(".top-line");
  const coverStyle = getComputedStyle(cover);
  const ownBanner = document.querySelector("[class*=banner]");
  return {
    box: [box.left, box.top, box.width, box.height],
    points,
    display: style.display,
    visibility: style.visibility,
    opacity: style.opacity,
    background: style.backgroundColor,
    cover: [coverStyle.position, coverStyle.zIndex, coverStyle.backgroundColor],
    ownBannerHidden: ownBanner === null || getComputedStyle(ownBanner).display === "none",
  };
}
"""


def _open(browser: Browser, width: int) -> tuple[Any, Page]:
    context = browser.new_context(
        viewport={"width": width, "height": VIEWPORTS[width]},
        locale="ru-RU",
        extra_http_headers={"Accept-Language": "ru-RU,ru;q=0.9"},
    )
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    return context, context.new_page()


@pytest.mark.parametrize("target", list(BROWSER_PAGES))
@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_an_archived_page_in_a_browser(
    browser: Browser,
    external: ExternalHosts,
    archive: OldSiteArchive,
    gunicorn_factory: StartServer,
    width: int,
    target: str,
) -> None:
    title, sentence, lang, notice = BROWSER_PAGES[target]
    server = gunicorn_factory(archive.maps["warc"])
    origin = f"http://{HOST}:{server.port}"
    with external.lock:
        external.hits.clear()
    context, page = _open(browser, width)
    try:
        finished: list[str] = []
        failed: list[tuple[str, str]] = []
        page.on("requestfinished", lambda r: finished.append(r.url))
        page.on("requestfailed", lambda r: failed.append((r.url, str(r.failure))))
        response = page.goto(origin + target, wait_until="load")
        assert response is not None and response.status == 200
        page.wait_for_load_state("networkidle")

        # No script ran: neither the inline one, nor core.js, nor the onload attribute.
        assert page.title() == title
        assert page.evaluate("document.documentElement.getAttribute('data-core-ran')") is None
        assert page.evaluate("document.documentElement.lang") == lang
        # The page's text and the notice, as a reader gets them.
        text = " ".join(page.inner_text("body").split())
        assert sentence in text
        assert notice in text
        assert text.startswith(NOTICE_RU if lang == "ru" else NOTICE_EN), text[:200]
        # The banner: at the very top, full width, shown, and what a click there reaches.
        state = page.evaluate(BANNER_ON_TOP)
        left, top, box_width, height = state["box"]
        assert (left, top) == (0, 0) and box_width == width and 0 < height < VIEWPORTS[width]
        assert state["points"] == [True, True, True], state
        assert (state["display"], state["visibility"], state["opacity"]) == (
            "block",
            "visible",
            "1",
        )
        assert state["background"] == "rgb(29, 79, 145)"
        # ...and that despite the hostile stylesheet, which did apply to the page itself.
        assert state["cover"] == ["fixed", "2147483647", "rgb(178, 34, 34)"]
        assert state["ownBannerHidden"] is True
        if target == DETAIL:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOTS / f"archived-{width}.png", full_page=True)
        # Nothing left the served hosts: what loaded came from the gateway, what the
        # page's markup or stylesheet asked of other hosts the CSP refused.
        assert finished and all(url.startswith(origin + "/") for url in finished), finished
        assert all(failure == "csp" for _, failure in failed), failed
        with external.lock:
            assert external.hits == []
    finally:
        context.close()


def test_the_external_listener_does_count(browser: Browser, external: ExternalHosts) -> None:
    # The control for the zero counts above: a host outside the domain does reach it.
    context, page = _open(browser, 390)
    try:
        with external.lock:
            external.hits.clear()
        page.goto("http://cdn.external.example/probe", wait_until="load")
        with external.lock:
            assert "GET cdn.external.example/probe" in external.hits
    finally:
        context.close()
