"""The banner in headless Chromium: an unknown subdomain at 390 and 1280 px, ru and en (issue 11).

Debian's chromium (installed here with apt-get when missing, see tests/browser.py) is
driven by Playwright and asks the session's gunicorn for a page of a subdomain that
no map rule knows, by its real Host: every name resolves to 127.0.0.1. Each case
checks what a reader sees (one visible heading in the right language, the notice
and its link, the home button, the URL as requested, no sideways scrolling) and
what the page does (nothing fetched but the page itself, no console errors), and
saves a full-page screenshot to docs/screenshots/banner-{lang}-{width}.png.
Cost: about 3 s besides a one-time `apt-get install chromium` (about 30 s).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import LAUNCH_ARGS, find_or_install_chromium
from tests.support import GunicornServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [pytest.mark.http, pytest.mark.timeout(900)]  # 900 s: a first apt-get install

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is a dev extra: pip install -e .[dev]"
)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HOST = "old-portal.khabarovskadm.ru"  # the wildcard host: no rule of the bundled map matches
PATH = "/some/old/page/"
HOME = "https://khv27.ru/"
WAIT_MS = 10_000  # every Playwright wait: launch, navigation, locators, screenshots

LANGUAGES = {
    "ru": {
        "locale": "ru-RU",
        "heading": "Страница не найдена",
        "notice": "Старая версия сайта khabarovskadm.ru является архивной",
    },
    "en": {"locale": "en-US", "heading": "Page not found", "notice": "is an archive"},
}
VIEWPORTS = {390: 844, 1280: 800}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module; every case opens a context of its own."""
    chromium, why = find_or_install_chromium()
    if chromium is None:
        pytest.skip(f"chromium is not installed and could not be installed: {why}")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=list(LAUNCH_ARGS), timeout=WAIT_MS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.mark.parametrize("width", list(VIEWPORTS))
@pytest.mark.parametrize("lang", list(LANGUAGES))
def test_banner_of_an_unknown_subdomain(
    browser: Browser, gunicorn_bundled: GunicornServer, lang: str, width: int
) -> None:
    words = LANGUAGES[lang]
    context = browser.new_context(
        viewport={"width": width, "height": VIEWPORTS[width]},
        locale=words["locale"],
        extra_http_headers={"Accept-Language": words["locale"]},
    )
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    try:
        page = context.new_page()
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on(
            "console",
            lambda msg: (
                errors.append(f"{msg.location['url']}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

        url = f"http://{HOST}:{gunicorn_bundled.port}{PATH}"
        response = page.goto(url, wait_until="load")
        assert response is not None
        assert response.status == 404
        assert page.evaluate("document.documentElement.lang") == lang

        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll_width <= inner_width, f"scrolls sideways: {scroll_width} > {inner_width}"

        heading = page.locator("h1")
        assert heading.count() == 1
        assert heading.is_visible()
        assert heading.inner_text().strip() == words["heading"]

        notice = page.locator("p.notice")
        assert notice.count() == 1
        assert words["notice"] in " ".join(notice.inner_text().split())
        assert notice.locator(f'a[href="{HOME}"]').count() >= 1

        button = page.locator("a.button")
        assert button.count() == 1
        assert button.is_visible()
        assert button.get_attribute("href") == HOME
        assert button.get_attribute("hreflang") == "ru"

        requested = page.locator("p.requested code")
        assert f"{HOST}{PATH}" in requested.inner_text()

        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=SCREENSHOTS / f"banner-{lang}-{width}.png", full_page=True)

        # Checked after the screenshot, so that anything it set off (a late favicon) counts.
        assert requests == [url], "the page asked for more than itself (its CSP forbids that)"
        # Chromium logs the document's own 404 as "Failed to load resource": that is the
        # status asserted above, not a fault. Any other error (a CSP refusal) fails.
        own_status = f"{url}: Failed to load resource: the server responded with a status of 404"
        assert [e for e in errors if not e.startswith(own_status)] == []
    finally:
        context.close()
