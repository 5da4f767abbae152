"""The four corrections of spec §2 and §3, end to end through the Flask test client.

1. A repeated query name counts by its last value (PHP's ``$_GET``), for conditions,
   captures and the parameters ``keep_query`` passes on (once each, at the first place).
2. Dot segments are resolved as a browser resolves them (RFC 3986 §5.2.4: the empty
   segment of ``//`` counts), then repeated ``/`` collapse; never above the root.
3. An empty query name in ``from`` is dropped, as in a request, not refused.
4. Placeholders are recognised in ``from`` as written: ``%3C``/``%3E`` are the literal
   ``<``/``>``, so ``/a%3Cid%3E`` is an exact rule for the request ``/a%3Cid%3E``.

Each row asserts status, Location and Cache-Control together (spec §5). Requests carry
their raw target in ``RAW_URI``, as gunicorn passes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gateway.mapfile import load_map
from gateway.ops.explain import explain, render

HOST = "khabarovskadm.ru"
K = "https://khv27.ru"
REDIRECT_CACHE = "public, max-age=600"
BANNER_CACHE = "public, max-age=3600"

MAP = """\
version: 1
site:
  new_site: https://khv27.ru
  redirect_max_age: 600
hosts:
  khabarovskadm.ru: {}
archive:
  notice:
    ru: "Старый сайт закрыт."
rules:
  - {from: "/detail.php?ID=<int:id>", to: "/news/{id}/"}
  - {from: "/detail.php?ID=<slug>", to: "/news/by-slug/{slug}/"}
  - {from: "/cond?a=1", to: /cond/a1}
  - {from: "/cond?a=2", to: /cond/a2}
  - {from: "/keep", to: /kept, keep_query: true}
  - {from: "/search?q=<q>", to: "/find?q={q}&lang=ru", keep_query: true}
  - {from: /a, to: /got/a}
  - {from: /a/b, to: /got/a-b}
  - {from: /c, to: /got/c}
  - {from: "/this?=2", to: /this-page}
  - {from: "/x?a=1&=2", to: /x-a1}
  - {from: "/lt%3Cid%3E", to: /literal-lt-id-gt}
  - {from: "/p/<id>", to: "/pattern/{id}"}
  - {from: "/q%3C<int:n>%3E", to: "/q/{n}"}
include: [more.csv]
"""

CSV = """\
from,to,status,note
/csv%3Cid%3E,/csv/literal/,,
/csv-empty?=2,/csv/empty-name/,,
/csv/a/b//../..,/csv/dots/,,
"""


@pytest.fixture(scope="module")
def map_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corrections")
    (folder / "more.csv").write_text(CSV, encoding="utf-8")
    path = folder / "redirects.yaml"
    path.write_text(MAP, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def app(map_path: Path) -> Flask:
    """One app for the module (conftest's ``client`` asks it): creating one takes 0.5 s."""
    from gateway.app import create_app

    return create_app({"TESTING": True, "MAP_PATH": str(map_path)})


def get(client: FlaskClient, target: str) -> TestResponse:
    """Send `target` as the raw request target (gunicorn's RAW_URI), byte for byte."""
    return client.get("/", headers={"Host": HOST}, environ_overrides={"RAW_URI": target})


def answer(client: FlaskClient, target: str) -> tuple[int, str | None, str | None]:
    response = get(client, target)
    return (
        response.status_code,
        response.headers.get("Location"),
        response.headers.get("Cache-Control"),
    )


def redirect(location: str) -> tuple[int, str, str]:
    return 301, K + location, REDIRECT_CACHE


NOT_FOUND = (404, None, BANNER_CACHE)

CASES = [
    # 1. §2: the last value of a repeated name.
    pytest.param(
        "/detail.php?ID=5&ID=7", redirect("/news/7/"), id="repeated-name-last-value-wins-as-in-php"
    ),
    pytest.param(
        "/detail.php?id=5&ID=7", redirect("/news/7/"), id="repeated-name-any-case-last-value-wins"
    ),
    pytest.param(
        "/detail.php?ID=7&ID=x",
        redirect("/news/by-slug/x/"),
        id="repeated-name-last-value-chooses-the-converter",
    ),
    pytest.param(
        "/detail.php?ID=7&ID=", NOT_FOUND, id="repeated-name-empty-last-value-captures-nothing"
    ),
    pytest.param("/cond?a=1&a=2", redirect("/cond/a2"), id="repeated-name-last-value-condition"),
    pytest.param("/cond?a=2;a=1", redirect("/cond/a1"), id="repeated-name-after-semicolon"),
    pytest.param(
        "/cond?a=2&utm_source=x&a=1", redirect("/cond/a1"), id="repeated-name-around-ignored"
    ),
    pytest.param(
        "/keep?a=1&b=2&a=3",
        redirect("/kept?a=3&b=2"),
        id="keep-query-repeated-name-once-last-value-first-place-as-in-php",
    ),
    pytest.param(
        "/search?page=1&q=x&page=2&q=y",
        redirect("/find?q=y&lang=ru&page=2"),
        id="keep-query-last-capture-and-last-kept-value",
    ),
    # 2. §3: dot segments as a browser resolves them, then '//' collapsed.
    pytest.param("/a/b//../..", redirect("/got/a"), id="dot-dot-removes-the-empty-segment"),
    pytest.param("/a/b//..", redirect("/got/a-b"), id="one-dot-dot-removes-only-the-empty-one"),
    pytest.param("/a//../b", redirect("/got/a-b"), id="dot-dot-after-double-slash-stays"),
    pytest.param("/a/b%2F/%2e%2e/%2E%2E", redirect("/got/a"), id="escaped-slash-and-dots-too"),
    pytest.param("//..//../c", redirect("/got/c"), id="never-above-the-root"),
    # 3. §2: an empty query name in 'from' is dropped, as in a request.
    pytest.param("/this", redirect("/this-page"), id="from-with-empty-name-matches-the-path"),
    pytest.param("/this?=2", redirect("/this-page"), id="request-empty-name-dropped-too"),
    pytest.param("/this?x=9", redirect("/this-page"), id="other-params-ignored-as-ever"),
    pytest.param("/x?a=1", redirect("/x-a1"), id="empty-name-beside-a-condition-dropped"),
    pytest.param("/x?a=1&=2", redirect("/x-a1"), id="empty-name-in-request-and-rule"),
    pytest.param("/x?a=2", NOT_FOUND, id="the-remaining-condition-still-counts"),
    # 4. §2: placeholders as written, %3C and %3E literal.
    pytest.param("/lt%3Cid%3E", redirect("/literal-lt-id-gt"), id="escaped-brackets-exact-rule"),
    pytest.param("/lt%3cid%3e", redirect("/literal-lt-id-gt"), id="lowercase-escapes-same-rule"),
    pytest.param("/lt<id>", redirect("/literal-lt-id-gt"), id="raw-brackets-same-canonical-path"),
    pytest.param("/LT%3CID%3E", redirect("/literal-lt-id-gt"), id="case-folded-as-any-path"),
    pytest.param("/lt42", NOT_FOUND, id="escaped-brackets-are-no-placeholder"),
    pytest.param("/p/%3Cb%3E", redirect("/pattern/%3Cb%3E"), id="request-brackets-captured"),
    pytest.param("/q%3C5%3E", redirect("/q/5"), id="escaped-brackets-around-a-placeholder"),
    pytest.param("/q5", NOT_FOUND, id="the-literal-brackets-are-required"),
    pytest.param("/csv%3Cid%3E", redirect("/csv/literal/"), id="csv-row-escaped-brackets-exact"),
    pytest.param("/csv-empty", redirect("/csv/empty-name/"), id="csv-row-empty-name-dropped"),
    pytest.param("/csv/a", redirect("/csv/dots/"), id="csv-row-dots-as-a-browser"),
]


@pytest.mark.parametrize(("target", "expected"), CASES)
def test_spec_corrections_end_to_end(
    client: FlaskClient, target: str, expected: tuple[int, str | None, str | None]
) -> None:
    assert answer(client, target) == expected


@pytest.mark.parametrize(
    ("target", "lines"),
    [
        pytest.param(
            "/detail.php?ID=5&ID=7",
            ["    significant ID=7", "    Location: https://khv27.ru/news/7/"],
            id="explain-shows-the-last-value-as-the-server",
        ),
        pytest.param(
            "/keep?a=1&b=2&a=3",
            ["    significant a=3&b=2", "    Location: https://khv27.ru/kept?a=3&b=2"],
            id="explain-shows-each-name-once-as-keep-query-passes-it",
        ),
        pytest.param(
            "/a/b//../..",
            ["    segments   a", "    canonical  /a", "    Location: https://khv27.ru/got/a"],
            id="explain-resolves-dots-before-slashes-as-the-server",
        ),
    ],
)
def test_explain_shows_what_the_server_does(
    map_path: Path, client: FlaskClient, target: str, lines: list[str]
) -> None:
    text = render(explain(load_map(map_path), target)).splitlines()
    for line in lines:
        assert line in text
    status, location, _ = answer(client, target)
    assert f"    Location: {location}" in text and status == 301
