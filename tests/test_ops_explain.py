"""Tests of gateway.ops.explain: the steps shown, and that the answer is the server's.

The bundled map's rules are named by FILE:LINE; the lines are found in redirects.yaml
by their `from` text, not taken from explain's output.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from gateway.cli import main
from gateway.mapfile import RedirectMap
from gateway.ops.explain import explain, render, to_json
from tests.support import BUNDLED_MAP

if TYPE_CHECKING:
    from click.testing import CliRunner
    from flask.testing import FlaskClient


def rule_line(from_text: str) -> str:
    """Return FILE:LINE of the bundled rule whose `from:` is exactly this text."""
    lines = BUNDLED_MAP.read_text(encoding="utf-8").splitlines()
    found = [i for i, line in enumerate(lines, 1) if line.strip() == f"- from: {from_text}"]
    assert len(found) == 1, from_text
    return f"{BUNDLED_MAP}:{found[0]}"


CASES = [
    pytest.param(
        "https://www.khabarovskadm.ru/Contacts/index.php",
        "/contacts/",
        301,
        "https://khv27.ru/contacts/",
        id="exact-via-alias-case-and-index-file",
    ),
    pytest.param(
        "/press-center/news/detail.php?ID=12345&utm_source=vk",
        "/press-center/news/detail.php?ID=<int:id>",
        301,
        "https://khv27.ru/news/12345/",
        id="query-condition-capture-utm-ignored",
    ),
    pytest.param(
        "/upload/iblock/3f2/file.pdf",
        "/upload/<path:rest>",
        410,
        None,
        id="pattern-gone-with-see",
    ),
    pytest.param("/no/such/page", None, 404, None, id="unmatched-banner"),
]


@pytest.mark.parametrize(("url", "from_text", "status", "location"), CASES)
def test_rule_and_response(
    bundled: RedirectMap, url: str, from_text: str | None, status: int, location: str | None
) -> None:
    e = explain(bundled, url)
    assert (e.rule.source if e.rule else None) == (rule_line(from_text) if from_text else None)
    assert (e.response.status, e.response.location) == (status, location)


@pytest.mark.parametrize(("url", "from_text", "status", "location"), CASES)
def test_explain_agrees_with_the_server(
    client: FlaskClient,
    bundled: RedirectMap,
    url: str,
    from_text: str | None,
    status: int,
    location: str | None,
) -> None:
    e = explain(bundled, url)
    response = client.get(url, headers={"Host": "khabarovskadm.ru"})
    assert response.status_code == e.response.status
    assert response.headers.get("Location") == e.response.location
    assert response.headers.get("Cache-Control") == e.response.cache_control


@pytest.mark.parametrize(("url", "from_text", "status", "location"), CASES)
def test_the_command_shows_this_explanation(
    runner: CliRunner,
    bundled: RedirectMap,
    url: str,
    from_text: str | None,
    status: int,
    location: str | None,
) -> None:
    # `gateway explain` prints what explain() says of the map it loads, as text and JSON.
    args = ["explain", "--map", str(BUNDLED_MAP), url]
    text = runner.invoke(main, args)
    assert (text.exit_code, text.stdout) == (0, render(explain(bundled, url)) + "\n")
    as_json = runner.invoke(main, [*args, "--json"])
    assert as_json.exit_code == 0
    (data,) = json.loads(as_json.stdout)
    assert data == to_json(explain(bundled, url))
    assert (data["response"]["status"], data["response"]["location"]) == (status, location)


def test_text_shows_every_step_for_a_query_rule(bundled: RedirectMap) -> None:
    text = render(
        explain(
            bundled, "http://WWW.khabarovskadm.ru/Press-Center/news/detail.php?ID=7&utm_source=x"
        )
    )
    assert text.splitlines() == [
        "http://WWW.khabarovskadm.ru/Press-Center/news/detail.php?ID=7&utm_source=x",
        "  host       WWW.khabarovskadm.ru -> khabarovskadm.ru (alias)",
        "  path       /Press-Center/news/detail.php",
        "    decoded    /Press-Center/news/detail.php",
        "    segments   Press-Center | news | detail.php",
        "    canonical  /press-center/news/detail.php",
        "  query      ID=7&utm_source=x",
        "    significant ID=7",
        "    ignored    utm_source",
        f"  rule       {rule_line('/press-center/news/detail.php?ID=<int:id>')}  (query)",
        "    from       /press-center/news/detail.php?ID=<int:id>",
        "    to         /news/{id}/",
        "    captures   id=7",
        "  response   301 Moved Permanently",
        "    Location: https://khv27.ru/news/7/",
        "    Cache-Control: public, max-age=86400",
    ]


def test_text_for_an_unmatched_windows_1251_path(bundled: RedirectMap) -> None:
    text = render(explain(bundled, "/%CF%F0%E8%EC%E5%F0/../a//b/"))
    assert "    decoded    /Пример/../a//b/   (windows-1251)" in text
    assert "    segments   a | b" in text
    assert "    canonical  /a/b" in text
    assert "  rule       none matches" in text
    assert "  response   404 Not Found: archive banner (ru), no rule matches" in text


def test_pattern_gone_shows_see_and_archive(bundled: RedirectMap) -> None:
    text = render(explain(bundled, "/upload/a/b.pdf"))
    assert "    captures   rest=a/b.pdf" in text
    assert "    suggested page: https://khv27.ru/documents/" in text
    assert (
        "    archived copy:  https://web.archive.org/web/20210228000000/"
        "http://khabarovskadm.ru/upload/a/b.pdf"
    ) in text


@pytest.mark.parametrize(
    ("url", "host", "shown_host", "status"),
    [
        pytest.param(
            "/",
            None,
            "khabarovskadm.ru  (no host given: the first under hosts:)",
            301,
            id="default-host",
        ),
        pytest.param(
            "/", "edu.khabarovskadm.ru", "edu.khabarovskadm.ru  (--host)", 301, id="host-option"
        ),
        pytest.param(
            "int.khabarovskadm.ru/", None, "int.khabarovskadm.ru", 301, id="host-slash-path"
        ),
        pytest.param(
            "http://evil.example/", None, "evil.example -> not under hosts:", 404, id="unknown-host"
        ),
    ],
)
def test_where_the_host_comes_from(
    bundled: RedirectMap, url: str, host: str | None, shown_host: str, status: int
) -> None:
    e = explain(bundled, url, host)
    assert f"  host       {shown_host}" in render(e)
    assert e.response.status == status


def test_malformed_and_service_urls(bundled: RedirectMap) -> None:
    bad = explain(bundled, "/a%zz")
    assert (bad.response.status, bad.response.reason) == (400, "an escape that is not %XX")
    assert "    malformed  an escape that is not %XX" in render(bad)
    service = explain(bundled, "/-/health")
    assert service.response.kind == "service"


def test_controls_and_bidi_marks_are_escaped_in_text(bundled: RedirectMap) -> None:
    text = render(explain(bundled, "/a%E2%80%AEb"))
    assert "\u202e" not in text
    assert "/a\\u202eb" in text


def test_json_has_steps_rule_and_response(bundled: RedirectMap) -> None:
    data = to_json(explain(bundled, "/search/?q=%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82&print=Y"))
    assert data["host"] == {
        "given": "khabarovskadm.ru",
        "canonical": "khabarovskadm.ru",
        "served": "khabarovskadm.ru",
    }
    assert data["path"]["canonical"] == "/search"
    assert data["query"]["significant"] == [{"name": "q", "value": "бюджет"}]
    assert data["query"]["ignored"] == ["print"]
    assert data["rule"]["source"] == rule_line("/search/")
    assert data["rule"]["keep_query"] is True
    assert data["response"]["location"] == (
        "https://khv27.ru/search/?q=%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82"
    )


def test_typed_cyrillic_is_sent_as_utf8(bundled: RedirectMap) -> None:
    # What a person types is what a browser sends: UTF-8, percent-encoded.
    typed = explain(bundled, "/search/?q=бюджет")
    escaped = explain(bundled, "/search/?q=%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82")
    assert typed.response == escaped.response


@pytest.mark.parametrize(
    ("url", "lines"),
    [
        pytest.param(
            "/press-center/news/detail.php?ID=5&utm_source=x&ID=7",
            [
                "    significant ID=7",
                "    ignored    utm_source",
                "    captures   id=7",
                "    Location: https://khv27.ru/news/7/",
            ],
            id="repeated-name-shows-its-last-value-as-the-server-counts-it",
        ),
        pytest.param(
            "/search/?q=a&x=1&Q=b",
            ["    significant Q=b&x=1", "    Location: https://khv27.ru/search/?Q=b&x=1"],
            id="repeated-name-once-at-its-first-place-as-keep-query-passes-it",
        ),
        pytest.param(
            "/press-center/news/x//../..",
            [
                "    decoded    /press-center/news/x//../..",
                "    segments   press-center | news",
                "    canonical  /press-center/news",
            ],
            id="dot-segments-resolved-before-slashes-collapse-as-the-server",
        ),
    ],
)
def test_steps_follow_the_spec_corrections(
    bundled: RedirectMap, url: str, lines: list[str]
) -> None:
    explanation = explain(bundled, url)
    text = render(explanation).splitlines()
    for line in lines:
        assert line in text
    # The steps shown are the ones the server decided on.
    outcome = explanation.outcome
    assert outcome is not None and hasattr(outcome, "url")
    assert explanation.path is not None and explanation.path.canonical == outcome.url.path
    shown = explanation.query.significant if explanation.query else ()
    assert shown == tuple((p.name, p.value) for p in outcome.url.last_params())
