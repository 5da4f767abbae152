"""The precedence of spec §4 (gateway.matcher) and the Locations it builds (spec §2, §5).

One map (``MAP``) holds rules that compete for the same requests; each table row
is a request and the ``to`` of the rule that must answer it, with an id naming the
part of §4 it pins down. Requests go through ``decide`` exactly as the server
sends them (method, Host header, raw target).
"""

from __future__ import annotations

import os
import textwrap
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.canonical import Param
from gateway.decide import decide
from gateway.mapfile import RedirectMap, load_map
from gateway.outcomes import Gone, NotFound, Outcome, Redirect
from gateway.rules import Target, parse_target

try:
    from ada_url import URL as WhatwgURL
except ImportError:  # optional: the WHATWG reading of each Location is checked when present
    WhatwgURL = None  # type: ignore[assignment,misc]

settings.register_profile(
    "gateway",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "200")),
    deadline=None,
)
PROPERTY = settings.get_profile("gateway")

MAP = """
version: 1
site:
  new_site: https://khv27.ru
  allow_targets: [khv27.ru, "*.khv27.ru"]
hosts:
  khabarovskadm.ru:
    aliases: [www.khabarovskadm.ru]
  int.khabarovskadm.ru: {}
archive:
  notice: {ru: Архив}
rules:
  # host-specific exact beats every-host exact, whatever their conditions
  - {from: /scope, to: /scope/every}
  - {from: "/scope?a=1", to: /scope/every-a}
  - {from: int.khabarovskadm.ru/scope, to: /scope/int}
  # within a scope: most conditions first, then the earlier rule
  - {from: "/cond?a=1", to: /cond/a}
  - {from: "/cond?b=2", to: /cond/b}
  - {from: "/cond?b=2&a=1", to: /cond/ab}
  - {from: /cond, to: /cond/none}
  # query captures, and int versus any text at equal counts
  - {from: "/detail.php?ID=<int:id>", to: "/news/{id}/"}
  - {from: "/detail.php?ID=<slug>", to: "/news/by-slug/{slug}/"}
  # exact beats pattern, even when the pattern comes first
  - {from: "/mix/<x>", to: "/mix/pattern/{x}"}
  - {from: /mix/exact, to: /mix/exact}
  # patterns: the first in file order wins, even if a later one is more specific
  - {from: "/pat/<path:rest>", to: "/pat/first/{rest}"}
  - {from: "/pat/special/<x>", to: /pat/never}
  # host patterns come before every-host patterns, even when later in the file
  - {from: "int.khabarovskadm.ru/pat/<path:rest>", to: "/pat/int/{rest}"}
  # every-host exact beats host pattern
  - {from: /pat/exact, to: /pat/exact}
  # converters, partial segments and the <path:> tail
  - {from: "/news-<int:id>.html", to: "/news/{id}/"}
  - {from: "/en/<path:rest>", to: "/en/{rest}"}
  - {from: "/seg/<name>/end", to: "/seg/{name}"}
  - {from: "/q/<x>?kind=<int:k>", to: "/q/{x}/{k}"}
  # captures in path and query places
  - {from: "/esc/<path:rest>", to: "/p/{rest}?r={rest}"}
  - {from: "/one/<x>", to: "/p/{x}?r={x}"}
  # keep_query
  - {from: "/search?q=<q>", to: "/find?q={q}&lang=ru", keep_query: true}
  - {from: /keep, to: /kept, keep_query: true}
  - {from: /drop, to: /dropped}
  - {from: /gone, status: 410}
  - {from: /bare-host, to: "https://khv27.ru?from=old"}
  # several placeholders in one segment: greedy from the left, as a regex would be
  - {from: "/multi/<a>-<b>.html", to: "/m/{a}/{b}"}
  - {from: "/dated/<int:y>-<int:m>-<slug>", to: "/d/{y}/{m}/{slug}"}
"""

HOST = "khabarovskadm.ru"


@pytest.fixture(scope="module")
def redirect_map(tmp_path_factory: pytest.TempPathFactory) -> RedirectMap:
    path = tmp_path_factory.mktemp("matcher") / "redirects.yaml"
    path.write_text(textwrap.dedent(MAP).lstrip("\n"), encoding="utf-8")
    return load_map(path)


def ask(redirect_map: RedirectMap, target: str, host: str = HOST) -> Outcome:
    return decide(redirect_map, "GET", host, target)


def location(redirect_map: RedirectMap, target: str, host: str = HOST) -> str | None:
    outcome = ask(redirect_map, target, host)
    assert isinstance(outcome, Redirect | NotFound), outcome
    return outcome.location if isinstance(outcome, Redirect) else None


K = "https://khv27.ru"

PRECEDENCE = [
    # (host, target, Location or None for the 404 banner)
    pytest.param(HOST, "/scope", f"{K}/scope/every", id="every-host-exact"),
    pytest.param(
        "int.khabarovskadm.ru", "/scope?a=1", f"{K}/scope/int", id="host-exact-beats-every-host"
    ),
    pytest.param(
        "int.khabarovskadm.ru", "/scope", f"{K}/scope/int", id="host-exact-beats-every-host-plain"
    ),
    pytest.param(HOST, "/scope?a=1", f"{K}/scope/every-a", id="condition-on-every-host"),
    pytest.param(HOST, "/cond?a=1&b=2", f"{K}/cond/ab", id="more-conditions-win"),
    pytest.param(HOST, "/cond?b=2&a=1&c=3", f"{K}/cond/ab", id="more-conditions-any-order"),
    pytest.param(HOST, "/cond?a=1&b=3", f"{K}/cond/a", id="one-condition-holds"),
    pytest.param(HOST, "/cond?b=2", f"{K}/cond/b", id="other-single-condition"),
    pytest.param(HOST, "/cond?a=1&b=2x", f"{K}/cond/a", id="condition-value-must-be-equal"),
    pytest.param(HOST, "/cond?a=1;b=2", f"{K}/cond/ab", id="semicolon-separated-conditions"),
    pytest.param(HOST, "/cond", f"{K}/cond/none", id="no-condition-rule-is-fallback"),
    pytest.param(HOST, "/cond?A=1", f"{K}/cond/a", id="condition-names-ignore-case"),
    pytest.param(HOST, "/cond?a=1&utm_source=x", f"{K}/cond/a", id="ignored-params-ignored"),
    pytest.param(HOST, "/detail.php?ID=5", f"{K}/news/5/", id="query-capture-int"),
    pytest.param(
        HOST, "/detail.php?id=5&ID=7", f"{K}/news/7/", id="repeated-name-last-value-wins-as-in-php"
    ),
    pytest.param(
        HOST,
        "/detail.php?ID=7&ID=x",
        f"{K}/news/by-slug/x/",
        id="repeated-name-last-value-decides-the-converter",
    ),
    pytest.param(
        HOST, "/detail.php?ID=7&ID=", None, id="repeated-name-empty-last-value-captures-nothing"
    ),
    pytest.param(HOST, "/detail.php?ID=12a", f"{K}/news/by-slug/12a/", id="int-rejects-letters"),
    pytest.param(
        HOST,
        "/detail.php?ID=%D9%A1%D9%A2",
        f"{K}/news/by-slug/%D9%A1%D9%A2/",
        id="int-rejects-non-ascii-digits",
    ),
    pytest.param(HOST, "/detail.php?ID=%C2%B2", f"{K}/news/by-slug/%C2%B2/", id="int-rejects-2"),
    pytest.param(HOST, "/detail.php?ID=", None, id="empty-value-captures-nothing"),
    pytest.param(HOST, "/detail.php", None, id="missing-param-no-match"),
    pytest.param(HOST, "/mix/exact", f"{K}/mix/exact", id="exact-beats-earlier-pattern"),
    pytest.param(HOST, "/mix/other", f"{K}/mix/pattern/other", id="pattern-when-no-exact"),
    pytest.param(HOST, "/pat/special/x", f"{K}/pat/first/special/x", id="first-pattern-wins"),
    pytest.param(
        "int.khabarovskadm.ru",
        "/pat/special/x",
        f"{K}/pat/int/special/x",
        id="host-pattern-before-every-host-pattern",
    ),
    pytest.param(
        "int.khabarovskadm.ru",
        "/pat/exact",
        f"{K}/pat/exact",
        id="every-host-exact-beats-host-pattern",
    ),
    pytest.param(HOST, "/news-12.html", f"{K}/news/12/", id="partial-segment"),
    pytest.param(HOST, "/NEWS-12.HTML", f"{K}/news/12/", id="partial-segment-any-case"),
    pytest.param(HOST, "/news-.html", None, id="partial-segment-needs-a-digit"),
    pytest.param(HOST, "/news-1x.html", None, id="partial-segment-int-rejects-letters"),
    pytest.param(HOST, "/news-%D9%A1.html", None, id="partial-segment-non-ascii-digit"),
    pytest.param(HOST, "/news-12.htm", None, id="partial-segment-literal-tail"),
    pytest.param(HOST, "/xnews-12.html", None, id="partial-segment-literal-head"),
    pytest.param(HOST, "/en/Foo/", f"{K}/en/Foo", id="path-capture"),
    pytest.param(HOST, "/EN/Foo/Bar/index.php", f"{K}/en/Foo/Bar", id="captures-keep-letters"),
    pytest.param(HOST, "/en/", None, id="path-capture-needs-one-char"),
    pytest.param(HOST, "/en", None, id="path-capture-needs-a-segment"),
    pytest.param(HOST, "/seg/a/end", f"{K}/seg/a", id="segment-capture"),
    pytest.param(HOST, "/seg/a/b/end", None, id="segment-capture-is-one-segment"),
    pytest.param(HOST, "/seg//end", None, id="segment-capture-not-empty"),
    pytest.param(HOST, "/q/x?kind=3", f"{K}/q/x/3", id="pattern-with-query-condition"),
    pytest.param(HOST, "/q/x?kind=z", None, id="pattern-query-condition-fails"),
    pytest.param("www.khabarovskadm.ru", "/scope", f"{K}/scope/every", id="alias-host"),
    pytest.param(HOST, "/bare-host", f"{K}/?from=old", id="origin-with-query-gets-a-slash"),
    pytest.param(HOST, "/multi/x-y.html", f"{K}/m/x/y", id="two-placeholders"),
    pytest.param(HOST, "/multi/x-y-z.html", f"{K}/m/x-y/z", id="two-placeholders-greedy"),
    pytest.param(HOST, "/multi/-y.html", None, id="two-placeholders-first-empty"),
    pytest.param(HOST, "/multi/x-.html", None, id="two-placeholders-second-empty"),
    pytest.param(HOST, "/MULTI/A-B.HTML", f"{K}/m/A/B", id="two-placeholders-any-case"),
    pytest.param(HOST, "/dated/2020-05-my-news", f"{K}/d/2020/05/my-news", id="three-placeholders"),
    pytest.param(HOST, "/dated/2020-x-5", None, id="three-placeholders-int-fails"),
    pytest.param(HOST, "/dated/2020-05-", None, id="three-placeholders-last-empty"),
    pytest.param(HOST, "/dated/" + "-" * 3000, None, id="many-dashes-no-match"),
]


@pytest.mark.parametrize(("host", "target", "expected"), PRECEDENCE)
def test_precedence(
    redirect_map: RedirectMap, host: str, target: str, expected: str | None
) -> None:
    assert location(redirect_map, target, host) == expected


def test_410_rule_is_gone(redirect_map: RedirectMap) -> None:
    outcome = ask(redirect_map, "/gone?utm_source=x")
    assert isinstance(outcome, Gone)
    assert outcome.rule.from_text == "/gone"


KEEP_QUERY = [
    pytest.param("/keep?a=1&b=2", f"{K}/kept?a=1&b=2", id="significant-params-kept"),
    pytest.param("/keep?utm_source=x&a=1&PAGEN_2=3", f"{K}/kept?a=1", id="ignored-params-dropped"),
    pytest.param("/keep", f"{K}/kept", id="no-params-no-query"),
    pytest.param("/drop?a=1", f"{K}/dropped", id="no-keep_query-drops-params"),
    pytest.param(
        "/search?q=x&lang=en&page=2", f"{K}/find?q=x&lang=ru&page=2", id="params-in-to-win"
    ),
    pytest.param(
        "/search?q=x&Q=y", f"{K}/find?q=y&lang=ru", id="consumed-param-last-value-not-appended"
    ),
    pytest.param(
        "/keep?a=1&b=2&a=3",
        f"{K}/kept?a=3&b=2",
        id="repeated-kept-param-once-last-value-at-first-place-as-in-php",
    ),
    pytest.param(
        "/search?page=1&q=x&page=2&q=y",
        f"{K}/find?q=y&lang=ru&page=2",
        id="repeated-capture-and-kept-param-last-values",
    ),
    pytest.param(
        "/search?q=%E1%FE%E4%E6%E5%F2",
        f"{K}/find?q=%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82&lang=ru",
        id="cp1251-capture-reencoded-utf8",
    ),
    pytest.param(
        "/keep?%E3%EE%F0%EE%E4=%D5%E0%E1%E0%F0%EE%E2%F1%EA",
        f"{K}/kept?%D0%B3%D0%BE%D1%80%D0%BE%D0%B4=%D0%A5%D0%B0%D0%B1%D0%B0%D1%80%D0%BE%D0%B2%D1%81%D0%BA",
        id="cp1251-kept-param-reencoded-utf8",
    ),
    pytest.param("/keep?a=x+y&b=%26%3D", f"{K}/kept?a=x%20y&b=%26%3D", id="kept-values-escaped"),
]


@pytest.mark.parametrize(("target", "expected"), KEEP_QUERY)
def test_keep_query(redirect_map: RedirectMap, target: str, expected: str) -> None:
    assert location(redirect_map, target) == expected


ESCAPING = [
    # /esc/<path:rest> -> /p/{rest}?r={rest};  /one/<x> -> /p/{x}?r={x}
    pytest.param("/esc/a/b", f"{K}/p/a/b?r=a%2Fb", id="path-capture-slash-kept-in-path-only"),
    pytest.param("/esc/a%3Fb", f"{K}/p/a%3Fb?r=a%3Fb", id="question-mark"),
    pytest.param("/esc/a%23b", f"{K}/p/a%23b?r=a%23b", id="hash"),
    pytest.param("/esc/100%25", f"{K}/p/100%25?r=100%25", id="percent"),
    pytest.param("/esc/a%20b", f"{K}/p/a%20b?r=a%20b", id="space"),
    pytest.param("/esc/a+b", f"{K}/p/a%2Bb?r=a%2Bb", id="plus-in-path-is-plus"),
    pytest.param("/esc/%D0%94", f"{K}/p/%D0%94?r=%D0%94", id="cyrillic-utf8"),
    pytest.param("/esc/%C4", f"{K}/p/%D0%94?r=%D0%94", id="cyrillic-cp1251-to-utf8"),
    pytest.param("/esc/a%5Cb", f"{K}/p/a%5Cb?r=a%5Cb", id="backslash"),
    pytest.param("/esc/a&b=c", f"{K}/p/a%26b%3Dc?r=a%26b%3Dc", id="ampersand-equals"),
    pytest.param("/esc/%22%3C%3E", f"{K}/p/%22%3C%3E?r=%22%3C%3E", id="quote-angle-brackets"),
    pytest.param("/one/a%2Fb", None, id="escaped-slash-is-a-separator"),
    pytest.param("/one/a%3Fb%23c", f"{K}/p/a%3Fb%23c?r=a%3Fb%23c", id="segment-capture"),
]


@pytest.mark.parametrize(("target", "expected"), ESCAPING)
def test_capture_escaping(redirect_map: RedirectMap, target: str, expected: str | None) -> None:
    assert location(redirect_map, target) == expected


def test_origin_target_gets_a_path() -> None:
    # Regression: "https://khv27.ru?x=1" used to become "https://khv27.ru?x=1/".
    target = parse_target(
        "https://khv27.ru?x=1#top",
        new_site=K,
        host_allowed=lambda host: host == "khv27.ru",
        captures={},
    )
    assert target.constant == f"{K}/?x=1#top"


# --- every Location is https on an allowed host ---------------------------------------------

ALLOWED = ("khv27.ru", ".khv27.ru")


def assert_safe_location(location: str) -> None:
    """Assert an absolute https URL on an allowed host, read the same by two parsers."""
    assert not any(ch in location for ch in "\\ \t\r\n\x00\x7f"), location
    assert all(0x20 < ord(ch) < 0x7F for ch in location), location
    split = urlsplit(location)
    assert split.scheme == "https"
    assert split.username is None and split.password is None
    host = split.hostname or ""
    assert host == ALLOWED[0] or host.endswith(ALLOWED[1]), location
    if WhatwgURL is not None:
        parsed = WhatwgURL(location)
        assert parsed.protocol == "https:"
        assert parsed.hostname == host, location
        assert parsed.username == "" and parsed.password == ""


# Targets covering every place a capture can go.
TARGETS = [
    "/p/{rest}",
    "/{rest}",
    "/{x}",
    "/a/{x}/{rest}?q={x}&r={rest}#frag",
    "https://docs.khv27.ru/{x}?r={rest}",
    "https://khv27.ru?x={x}",
]
CAPTURES = {"rest": "path", "x": None}


@pytest.fixture(scope="module")
def built_targets() -> list[Target]:
    return [
        parse_target(
            t,
            new_site=K,
            host_allowed=lambda h: h == "khv27.ru" or h.endswith(".khv27.ru"),
            captures=CAPTURES,
        )
        for t in TARGETS
    ]


CAPTURE_TEXT = st.text(min_size=1) | st.sampled_from(
    ["//evil.com", "\\evil.com", "@evil.com", "..", "../..", "%2e%2e", "?#", "\r\n", "\x00", " "]
)


@PROPERTY
@given(
    rest=CAPTURE_TEXT,
    x=CAPTURE_TEXT,
    extra=st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=3),
)
def test_every_built_location_is_safe(
    built_targets: list[Target], rest: str, x: str, extra: list[tuple[str, str]]
) -> None:
    params = [Param(name.lower(), name, value) for name, value in extra]
    for target in built_targets:
        assert_safe_location(target.build({"rest": rest, "x": x}, params))


@PROPERTY
@given(
    path=st.text(min_size=1).map(lambda t: t.encode("utf-8").decode("latin-1")),
    query=st.text().map(lambda t: t.encode("utf-8").decode("latin-1")),
)
def test_every_location_for_a_request_is_safe(
    redirect_map: RedirectMap, path: str, query: str
) -> None:
    for prefix in ("/esc/", "/one/", "/en/", "/search?q=x&"):
        target = f"{prefix}{path}" if "?" not in prefix else f"{prefix}{query}"
        outcome = ask(redirect_map, target)
        if isinstance(outcome, Redirect):
            assert_safe_location(outcome.location)


# --- many rules on one path: the same precedence ----------------------------------------------

# More than a handful of exact rules share the path /d (as detail.php?ID=N tables do),
# so that a matcher which indexes a big bucket is held to the same §4 order.
MANY = (
    "rules:\n"
    + "".join(f'  - {{from: "/d?ID={i}", to: "/lit/{i}"}}\n' for i in range(1, 11))
    + """\
  - {from: "/d?ID=<int:id>", to: "/int/{id}"}
  - {from: "/d?ID=3&x=1", to: /lit3x}
  - {from: "/d?x=1&y=2", to: /xy}
  - {from: "/d?y=2&ID=<id>&x=1", to: "/three/{id}"}
  - {from: "/d?ID=Ab", to: /ab}
  - {from: /d, to: /plain}
  - {from: "int.khabarovskadm.ru/d?ID=5", to: /int-host-5}
"""
)


@pytest.fixture(scope="module")
def many_map(tmp_path_factory: pytest.TempPathFactory) -> RedirectMap:
    head = textwrap.dedent(MAP).lstrip("\n").partition("rules:\n")[0]
    path = tmp_path_factory.mktemp("many") / "redirects.yaml"
    path.write_text(head + MANY, encoding="utf-8")
    return load_map(path)


@pytest.mark.parametrize(
    ("host", "target", "expected"),
    [
        pytest.param(HOST, "/d?ID=3", "/lit/3", id="literal-before-int-capture"),
        pytest.param(HOST, "/d?ID=11", "/int/11", id="int-capture-when-no-literal"),
        pytest.param(HOST, "/d?ID=3&x=1", "/lit3x", id="two-conditions-beat-one"),
        pytest.param(HOST, "/d?x=1&ID=3", "/lit3x", id="two-conditions-any-order"),
        pytest.param(HOST, "/d?ID=3&x=1&y=2", "/three/3", id="three-conditions-win"),
        pytest.param(HOST, "/d?x=1&y=2", "/xy", id="no-indexed-condition"),
        pytest.param(HOST, "/d?ID=aB", "/ab", id="literal-ignores-case"),
        pytest.param(HOST, "/d?id=2&ID=3", "/lit/3", id="repeated-name-last-value-wins-as-in-php"),
        pytest.param(HOST, "/d?ID=3&ID=11", "/int/11", id="last-value-wins-in-the-literal-index"),
        pytest.param(HOST, "/d?ID=zz", "/plain", id="no-condition-holds"),
        pytest.param(HOST, "/d", "/plain", id="no-params"),
        pytest.param("int.khabarovskadm.ru", "/d?ID=5", "/int-host-5", id="host-scope-first"),
        pytest.param("int.khabarovskadm.ru", "/d?ID=6", "/lit/6", id="then-every-host"),
    ],
)
def test_precedence_with_many_rules_on_one_path(
    many_map: RedirectMap, host: str, target: str, expected: str
) -> None:
    assert location(many_map, target, host) == K + expected
