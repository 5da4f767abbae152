"""The whole retired domain through a real gunicorn: every host, wildcards, robots and sitemaps."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import pytest

from tests.support import GunicornServer
from tests.test_hosts import KNOWN_HOSTS, full

pytestmark = pytest.mark.http

BANNER_CACHE = "public, max-age=3600"
SITEMAP_LOC = re.compile(r"<loc>([^<]+)</loc>")


@pytest.mark.parametrize(
    "host",
    [pytest.param(full(h), id=full(h)) for h in KNOWN_HOSTS]
    + [pytest.param("never-declared.khabarovskadm.ru", id="unknown-subdomain")],
)
def test_every_host_of_the_domain_gets_the_banner(
    gunicorn_bundled: GunicornServer, host: str
) -> None:
    response = gunicorn_bundled.request("/no/such/page/", host=host)
    assert (response.status, response.header("Location"), response.header("Cache-Control")) == (
        404,
        None,
        BANNER_CACHE,
    )
    assert response.header("Content-Type") == "text/html; charset=utf-8"
    assert "<title>" in response.text and "khabarovskadm.ru" in response.text


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("evil.example", id="outside-the-domain"),
        pytest.param("khabarovskadm.ru.evil.example", id="suffix-trick-after"),
        pytest.param("xkhabarovskadm.ru", id="suffix-trick-glued"),
        pytest.param("*.khabarovskadm.ru", id="the-wildcard-itself"),
    ],
)
def test_a_host_outside_the_domain_gets_the_plain_refusal(
    gunicorn_bundled: GunicornServer, host: str
) -> None:
    response = gunicorn_bundled.request("/", host=host)
    assert (response.status, response.header("Location"), response.header("Cache-Control")) == (
        404,
        None,
        "no-store",
    )
    assert (response.header("Content-Type") or "").startswith("text/plain")


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("duma.khabarovskadm.ru", id="declared-host"),
        pytest.param("old-portal.khabarovskadm.ru", id="wildcard-host"),
    ],
)
def test_robots_and_sitemap(gunicorn_bundled: GunicornServer, host: str) -> None:
    robots = gunicorn_bundled.request("/robots.txt", host=host)
    assert (robots.status, robots.header("Location"), robots.header("Cache-Control")) == (
        200,
        None,
        BANNER_CACHE,
    )
    assert f"Sitemap: http://{host}/sitemap.xml" in robots.text
    assert "Clean-param: utm_source&utm_medium" in robots.text
    sitemap = gunicorn_bundled.request("/sitemap.xml", host=host)
    assert (sitemap.status, sitemap.header("Location"), sitemap.header("Cache-Control")) == (
        200,
        None,
        BANNER_CACHE,
    )
    ET.fromstring(sitemap.body)  # well-formed XML
    urls = SITEMAP_LOC.findall(sitemap.text)
    assert urls, "every host has the every-host exact redirects"
    for url in urls:
        parts = urlsplit(url)
        assert parts.netloc == host
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        answer = gunicorn_bundled.request(target, host=host)
        assert answer.status in (200, 301), (url, answer.status)
