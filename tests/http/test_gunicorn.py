"""The gateway behind a real gunicorn, with request targets put on the wire byte for byte.

What only a real server shows: gunicorn's RAW_URI (so windows-1251 escapes reach the
canonical form undecoded), its own limits (414 for a huge request line), HEAD
handling, and the refusal to start on a broken map. Cost: about 3 s (the session's
bundled server, one server for the Cyrillic map, one refused start).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support import GunicornServer, Response, ServerStartError, StartServer, WriteMap

pytestmark = pytest.mark.http

REDIRECT_CACHE = "public, max-age=86400"


def assert_safe_location(response: Response) -> None:
    """Assert that a Location, if any, is an absolute https URL on the new site."""
    location = response.header("Location")
    if location is None:
        return
    assert location.startswith("https://khv27.ru/"), location
    assert urlsplit(location).hostname == "khv27.ru"
    assert not re.search(r"[\x00-\x20\x7f\\]", location), location


def assert_redirect(response: Response, status: int, location: str) -> None:
    assert (response.status, response.header("Location"), response.header("Cache-Control")) == (
        status,
        location,
        REDIRECT_CACHE,
    )
    assert_safe_location(response)


HOMES = [
    pytest.param("khabarovskadm.ru", "https://khv27.ru/", id="main"),
    pytest.param("www.khabarovskadm.ru", "https://khv27.ru/", id="www-alias"),
    pytest.param("int.khabarovskadm.ru", "https://khv27.ru/en/", id="int"),
    pytest.param("edu.khabarovskadm.ru", "https://khv27.ru/education/", id="edu"),
    pytest.param("dms.khabarovskadm.ru", "https://khv27.ru/municipal-property/", id="dms"),
]


@pytest.mark.parametrize(("host", "location"), HOMES)
def test_home_of_each_host(gunicorn_bundled: GunicornServer, host: str, location: str) -> None:
    response = gunicorn_bundled.request("/", host=host)
    assert_redirect(response, 301, location)
    assert f'href="{location}"'.encode() in response.body


@pytest.mark.parametrize(
    ("target", "location"),
    [
        pytest.param(
            "/press-center/news/detail.php?ID=12345&utm_source=yandex",
            "https://khv27.ru/news/12345/",
            id="detail-id",
        ),
        pytest.param(
            "/Press-Center/News/INDEX.PHP?element_id=4821",
            "https://khv27.ru/news/4821/",
            id="element-id-any-case",
        ),
        pytest.param("http://khabarovskadm.ru/", "https://khv27.ru/", id="absolute-form"),
    ],
)
def test_redirect(gunicorn_bundled: GunicornServer, target: str, location: str) -> None:
    assert_redirect(gunicorn_bundled.request(target), 301, location)


def test_head_redirect_has_no_body(gunicorn_bundled: GunicornServer) -> None:
    response = gunicorn_bundled.request("/", method="HEAD")
    assert_redirect(response, 301, "https://khv27.ru/")
    assert response.body == b""


def test_head_banner_has_no_body(gunicorn_bundled: GunicornServer) -> None:
    response = gunicorn_bundled.request("/upload/a.pdf", method="HEAD")
    assert (response.status, response.header("Cache-Control")) == (410, "public, max-age=3600")
    assert response.body == b""


def test_post_is_405(gunicorn_bundled: GunicornServer) -> None:
    response = gunicorn_bundled.request("/", method="POST")
    assert (response.status, response.header("Location"), response.header("Cache-Control")) == (
        405,
        None,
        "no-store",
    )
    assert response.header("Allow") == "GET, HEAD"


@pytest.mark.parametrize("host", ["evil.example", "khabarovskadm.ru.evil.example", None])
def test_unknown_or_missing_host(gunicorn_bundled: GunicornServer, host: str | None) -> None:
    response = gunicorn_bundled.request("/", host=host)
    assert (response.status, response.header("Location"), response.header("Cache-Control")) == (
        404,
        None,
        "no-store",
    )


def test_health_on_an_ip_host(gunicorn_bundled: GunicornServer) -> None:
    response = gunicorn_bundled.request("/-/health", host="127.0.0.1")
    assert (response.status, response.header("Cache-Control")) == (200, "no-store")
    assert b'"rules":20' in response.body


HOSTILE = [
    # (raw target, status)
    pytest.param("//evil.com/", 404, id="protocol-relative"),
    pytest.param("//evil.com/press-center/", 404, id="protocol-relative-with-known-path"),
    pytest.param("/\\evil.com", 404, id="backslash"),
    pytest.param("/%5Cevil.com", 404, id="escaped-backslash"),
    pytest.param("/%2F%2Fevil.com", 404, id="escaped-double-slash"),
    pytest.param("/@evil.com", 404, id="userinfo-like"),
    pytest.param("/%0d%0aSet-Cookie:x=1", 400, id="escaped-crlf"),
    pytest.param("/<script>alert(1)</script>", 404, id="script"),
    pytest.param("/x?<script>alert(1)</script>", 404, id="script-in-query"),
    pytest.param("/bitrix/redirect.php?goto=https://evil.com", 410, id="open-redirect-script"),
    pytest.param("/bitrix/rk.php?goto=%2F%2Fevil.com", 410, id="open-redirect-rk"),
    pytest.param("/search/?q=%0d%0aLocation:%20https://evil.com", 400, id="crlf-in-kept-query"),
    pytest.param("/search/?q=//evil.com&x=\\evil", 301, id="hostile-kept-query"),
    pytest.param("/%98", 400, id="cp1251-undefined-byte"),
    pytest.param("/" + "a" * 9000, 414, id="9000-byte-path"),
]


@pytest.mark.parametrize(("target", "status"), HOSTILE)
def test_hostile_target(gunicorn_bundled: GunicornServer, target: str, status: int) -> None:
    response = gunicorn_bundled.request(target)
    assert response.status == status
    assert response.status < 500
    assert_safe_location(response)
    assert b"<script" not in response.body.lower()
    assert "Set-Cookie" not in response.headers


def test_raw_non_ascii_bytes_are_refused_by_gunicorn(gunicorn_bundled: GunicornServer) -> None:
    # Browsers percent-encode; gunicorn answers raw UTF-8 in the request line itself.
    response = gunicorn_bundled.request("/Документы/".encode())
    assert (response.status, response.header("Location")) == (400, None)


def test_raw_crlf_in_target_is_refused_by_gunicorn(gunicorn_bundled: GunicornServer) -> None:
    response = gunicorn_bundled.request(b"/a\r\nSet-Cookie: x=1")
    assert 400 <= response.status < 500
    assert "Set-Cookie" not in response.headers


# --- windows-1251 through gunicorn's RAW_URI ----------------------------------------------

CYRILLIC_MAP = """
version: 1
site:
  new_site: https://khv27.ru
hosts:
  khabarovskadm.ru: {}
archive:
  notice: {ru: Архив}
rules:
  - from: /Документы/
    to: /documents/
  - from: /search/?q=<q>
    to: /search/?q={q}
"""


@pytest.fixture(scope="module")
def cyrillic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    folder = tmp_path_factory.mktemp("cyrillic")
    map_path = folder / "redirects.yaml"
    map_path.write_text(CYRILLIC_MAP.lstrip("\n"), encoding="utf-8")
    with GunicornServer(log_path=folder / "gunicorn.log").start(map_path) as server:
        yield server


@pytest.mark.parametrize(
    ("target", "location"),
    [
        pytest.param("/%C4%EE%EA%F3%EC%E5%ED%F2%FB/", "https://khv27.ru/documents/", id="cp1251"),
        pytest.param("/%e4%ee%ea%f3%ec%e5%ed%f2%fb", "https://khv27.ru/documents/", id="cp1251-lc"),
        pytest.param(
            "/%D0%94%D0%BE%D0%BA%D1%83%D0%BC%D0%B5%D0%BD%D1%82%D1%8B/index.php",
            "https://khv27.ru/documents/",
            id="utf8",
        ),
        pytest.param(
            "/search/?q=%E1%FE%E4%E6%E5%F2",
            "https://khv27.ru/search/?q=%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82",
            id="cp1251-query-value-reencoded",
        ),
    ],
)
def test_cyrillic_request(
    cyrillic_server: GunicornServer, target: str | bytes, location: str
) -> None:
    assert_redirect(cyrillic_server.request(target), 301, location)


# --- a map that does not load ---------------------------------------------------------------


def test_bad_map_stops_gunicorn_with_file_line_list(
    gunicorn_factory: StartServer, write_map: WriteMap, tmp_path: Path
) -> None:
    bad = write_map(
        """
        version: 1
        site:
          new_site: https://khv27.ru
        hosts:
          khabarovskadm.ru: {}
        archive:
          notice: {ru: Архив}
        rules:
          - from: /a
            to: https://evil.example/
          - from: /b
            status: 410
            to: /c
        """
    )
    with pytest.raises(ServerStartError) as refused:
        gunicorn_factory(bad)
    error = refused.value
    assert error.returncode not in (0, None)
    assert f"{bad}:10: error: 'to' points at 'evil.example'" in error.log
    assert f"{bad}:13: error: a 410 rule has no 'to'" in error.log
    assert "Traceback" not in error.log
    assert "Booting worker" not in error.log
