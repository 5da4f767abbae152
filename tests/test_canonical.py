"""The canonical form of spec §3 (gateway.canonical): tables of cases, then properties.

Each table row's id states the rule of §3 it pins down. Requests are given as the
raw request target gunicorn passes (a latin-1 ``str``: one code point per byte).
"""

from __future__ import annotations

import os
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.canonical import (
    LegacyURL,
    Malformed,
    Param,
    canonical_host,
    ignore_matcher,
    parse_request,
)
from gateway.mapfile import DEFAULT_IGNORE_QUERY
from gateway.rules import parse_from

# `make fuzz` raises the number of examples through the environment.
settings.register_profile(
    "gateway",
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "200")),
    deadline=None,
)
PROPERTY = settings.get_profile("gateway")

IS_IGNORED = ignore_matcher(DEFAULT_IGNORE_QUERY)
HOST = "khabarovskadm.ru"


def parse(target: str, *, case_sensitive: bool = False) -> LegacyURL:
    return parse_request(HOST, target, case_sensitive=case_sensitive, is_ignored=IS_IGNORED)


def wire(text: str) -> str:
    """Return how a UTF-8 text arrives in RAW_URI when sent unescaped (one char per byte)."""
    return text.encode("utf-8").decode("latin-1")


def rule_path(from_text: str) -> str:
    """Return the canonical path a rule's ``from`` is filed under."""
    return parse_from(
        from_text,
        case_sensitive=False,
        is_ignored=IS_IGNORED,
        canonical_host=lambda name: name,
    ).path


# --- path ---------------------------------------------------------------------------------

DOCS_CP1251 = "/%C4%EE%EA%F3%EC%E5%ED%F2%FB"  # "Документы" in windows-1251
DOCS_UTF8 = "/%D0%94%D0%BE%D0%BA%D1%83%D0%BC%D0%B5%D0%BD%D1%82%D1%8B"

PATHS = [
    # (raw target, canonical path, path text with the request's letters)
    pytest.param("/", "/", "/", id="root-stays-root"),
    pytest.param(
        "/Press-Center/NEWS/", "/press-center/news", "/Press-Center/NEWS", id="case-folded"
    ),
    pytest.param("/ДОКУМЕНТЫ", "/документы", "/ДОКУМЕНТЫ", id="cyrillic-case-folded"),
    pytest.param("/a%2fb", "/a/b", "/a/b", id="lowercase-%2f-is-a-separator"),
    pytest.param("/a%2Fb/", "/a/b", "/a/b", id="uppercase-%2F-is-a-separator"),
    pytest.param("/%2F%2Fa", "/a", "/a", id="escaped-double-slash-collapses"),
    pytest.param(DOCS_UTF8, "/документы", "/Документы", id="utf8-cyrillic-escapes"),
    pytest.param(DOCS_CP1251, "/документы", "/Документы", id="cp1251-cyrillic-escapes"),
    pytest.param(DOCS_CP1251.lower(), "/документы", "/Документы", id="cp1251-lowercase-hex"),
    pytest.param(wire("/Документы"), "/документы", "/Документы", id="raw-utf8-bytes-on-the-wire"),
    pytest.param("/%C3%A9t%C3%A9", "/été", "/été", id="nfc-input-stays-nfc"),
    pytest.param("/e%CC%81te%CC%81", "/été", "/été", id="nfd-input-becomes-nfc"),
    pytest.param("/%D0%B8%CC%86", "/й", "/й", id="nfd-cyrillic-short-i-becomes-nfc"),
    pytest.param("//a//b///c//", "/a/b/c", "/a/b/c", id="double-slashes-collapse"),
    pytest.param("//", "/", "/", id="only-slashes-is-root"),
    pytest.param("/a/./b/../c", "/a/c", "/a/c", id="dot-segments-resolved"),
    pytest.param("/a/%2e%2e/b", "/b", "/b", id="escaped-dot-dot-is-a-dot-segment"),
    pytest.param("/a/%2E/b", "/a/b", "/a/b", id="escaped-dot-is-a-dot-segment"),
    pytest.param("/../../a", "/a", "/a", id="dot-dot-never-above-root"),
    # Spec §3: dot segments resolved as a browser does (RFC 3986 §5.2.4), then '//' collapsed.
    pytest.param("/a/b//../..", "/a", "/a", id="dot-dot-removes-the-empty-segment-of-double-slash"),
    pytest.param("/a/b//..", "/a/b", "/a/b", id="one-dot-dot-removes-only-the-empty-segment"),
    pytest.param("/a/b/..//c", "/a/c", "/a/c", id="double-slash-after-dot-dot-collapses-after"),
    pytest.param("/a//../b", "/a/b", "/a/b", id="dot-dot-after-double-slash-stays-in-folder"),
    pytest.param("/a/%2F/../b", "/a/b", "/a/b", id="escaped-double-slash-empty-segment-counts"),
    pytest.param("/a/%2e%2e//b", "/b", "/b", id="escaped-dot-dot-then-double-slash"),
    pytest.param("//..//../a", "/a", "/a", id="empty-segments-never-above-root"),
    pytest.param("/a/.//b", "/a/b", "/a/b", id="dot-before-double-slash"),
    pytest.param("/a/b//../index.php", "/a/b", "/a/b", id="dot-dot-then-index-file-dropped"),
    pytest.param("/%2e%2e%2f%2e%2e%2fetc", "/etc", "/etc", id="escaped-traversal-stays-in-root"),
    pytest.param("/a..b/...", "/a..b/...", "/a..b/...", id="dots-inside-a-segment-kept"),
    pytest.param("/a/index.php", "/a", "/a", id="index.php-dropped"),
    pytest.param("/a/INDEX.PHP/", "/a", "/a", id="index.php-any-case-trailing-slash"),
    pytest.param("/A/Index.Html", "/a", "/A", id="index.html-any-case"),
    pytest.param("/a/index.htm/", "/a", "/a", id="index.htm-trailing-slash"),
    pytest.param("/index.php", "/", "/", id="root-index-is-root"),
    pytest.param("/index.php/index.html", "/", "/", id="index-files-dropped-to-fixed-point"),
    pytest.param("/a/index.php/b", "/a/index.php/b", "/a/index.php/b", id="index-not-last-kept"),
    pytest.param("/a/myindex.php", "/a/myindex.php", "/a/myindex.php", id="not-an-index-file"),
    pytest.param("/a/index.phps", "/a/index.phps", "/a/index.phps", id="index-prefix-only-kept"),
    pytest.param("/a/", "/a", "/a", id="trailing-slash-dropped"),
    pytest.param("/a/b?x=1#frag", "/a/b", "/a/b", id="fragment-dropped"),
]


@pytest.mark.parametrize(("target", "path", "text"), PATHS)
def test_canonical_path(target: str, path: str, text: str) -> None:
    url = parse(target)
    assert (url.path, url.path_text) == (path, text)


def test_case_sensitive_map_keeps_case() -> None:
    url = parse("/Press-Center/ДОКУМЕНТЫ/Index.PHP", case_sensitive=True)
    assert (url.path, url.path_text) == ("/Press-Center/ДОКУМЕНТЫ", "/Press-Center/ДОКУМЕНТЫ")


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(DOCS_CP1251, id="cp1251-escapes"),
        pytest.param(DOCS_UTF8, id="utf8-escapes"),
        pytest.param(wire("/Документы/"), id="raw-utf8-trailing-slash"),
        pytest.param("/%E4%EE%EA%F3%EC%E5%ED%F2%FB/index.php", id="cp1251-lowercase-index"),
    ],
)
@pytest.mark.parametrize(
    "rule", ["/Документы", "/документы/", "/ДОКУМЕНТЫ/index.php"], ids=["title", "lower", "upper"]
)
def test_cyrillic_request_matches_literal_rule_text(target: str, rule: str) -> None:
    assert parse(target).path == rule_path(rule) == "/документы"


# --- query --------------------------------------------------------------------------------


def P(name: str, value: str) -> Param:
    return Param(name.lower(), name, value)


QUERIES = [
    # (raw query, significant params in request order)
    pytest.param("x=1&y=2", (P("x", "1"), P("y", "2")), id="two-params"),
    pytest.param("x=1;y=2", (P("x", "1"), P("y", "2")), id="semicolon-separates"),
    pytest.param("q=a+b", (P("q", "a b"),), id="plus-is-space"),
    pytest.param("q=a%2Bb", (P("q", "a+b"),), id="escaped-plus-is-plus"),
    pytest.param("a+b=1", (P("a b", "1"),), id="plus-is-space-in-names"),
    pytest.param("utm_source=vk&x=1", (P("x", "1"),), id="utm-glob-ignored"),
    pytest.param("UTM_Medium=email&x=1", (P("x", "1"),), id="ignored-globs-any-case"),
    pytest.param("PAGEN_1=7&pagen_2=3&x=1", (P("x", "1"),), id="pagen-glob-ignored"),
    pytest.param("gclid=abc&print=Y&x=1", (P("x", "1"),), id="ignored-names"),
    pytest.param("=1&&x=1&", (P("x", "1"),), id="empty-names-dropped"),
    pytest.param("x", (P("x", ""),), id="name-without-value"),
    pytest.param("ID=5", (P("ID", "5"),), id="name-keeps-letters-key-folded"),
    pytest.param("q=%E1%FE%E4%E6%E5%F2", (P("q", "бюджет"),), id="cp1251-value-decoded"),
    pytest.param(
        "q=%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82", (P("q", "бюджет"),), id="utf8-value-decoded"
    ),
    pytest.param(
        "%E3%EE%F0%EE%E4=%D0%B4%D0%B0",
        (P("город", "да"),),
        id="cp1251-name-utf8-value-each-decoded",
    ),
]


@pytest.mark.parametrize(("query", "params"), QUERIES)
def test_canonical_query(query: str, params: tuple[Param, ...]) -> None:
    assert parse(f"/search/?{query}").params == params


@pytest.mark.parametrize(
    ("query_a", "query_b"),
    [
        pytest.param("a=1&b=2", "b=2&a=1", id="reordered"),
        pytest.param("a=1&b=2", "utm_source=x&b=2&PAGEN_3=4&a=1", id="reordered-with-ignored"),
        pytest.param("a=1;b=2", "b=2&a=1", id="semicolon-vs-ampersand"),
    ],
)
def test_order_of_params_does_not_matter(query_a: str, query_b: str) -> None:
    assert parse(f"/?{query_a}").last_values() == parse(f"/?{query_b}").last_values()


@pytest.mark.parametrize(
    ("query", "last"),
    [
        # Spec §2: when the request repeats a name its last value counts (PHP's $_GET).
        pytest.param("id=1&id=2", {"id": "2"}, id="repeated-name-last-value-wins-as-in-php"),
        pytest.param("ID=1&id=2", {"id": "2"}, id="names-compared-ignoring-case-last-value-wins"),
        pytest.param("utm_a=1&id=2&id=", {"id": ""}, id="empty-last-value-still-last-as-in-php"),
        pytest.param("id=&id=2", {"id": "2"}, id="empty-first-value-overridden-by-last"),
        pytest.param("id=1&utm_a=2&id=3;id=4", {"id": "4"}, id="semicolon-repeat-last-wins"),
    ],
)
def test_repeated_names_last_value_counts(query: str, last: dict[str, str]) -> None:
    assert parse(f"/?{query}").last_values() == last


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        pytest.param("a=1&b=2", "a=1&b=2", id="no-repeat-as-sent"),
        pytest.param("a=1&b=2&a=3", "a=3&b=2", id="repeat-once-last-value-at-first-place"),
        pytest.param("A=1&b=2&a=3", "a=3&b=2", id="repeat-ignoring-case-last-spelling"),
        pytest.param("a=1&a=2&a=3", "a=3", id="three-times-once"),
    ],
)
def test_last_params_once_per_name_in_request_order(query: str, kept: str) -> None:
    params = parse(f"/?{query}").last_params()
    assert "&".join(f"{p.name}={p.value}" for p in params) == kept


# --- malformed ----------------------------------------------------------------------------

MALFORMED = [
    pytest.param("/%zz", id="escape-not-hex"),
    pytest.param("/a%4", id="escape-one-digit-at-end"),
    pytest.param("/a%4/b", id="escape-one-digit"),
    pytest.param("/a%", id="lone-percent"),
    pytest.param("/%00", id="nul-in-path"),
    pytest.param("/a%0d%0aSet-Cookie:x=1", id="crlf-in-path"),
    pytest.param("/%7f", id="del-in-path"),
    pytest.param("/a\tb", id="raw-tab-in-path"),
    pytest.param("/%98", id="byte-cp1251-does-not-define"),
    pytest.param("/%C4%EE%98", id="cp1251-word-with-an-undefined-byte"),
    pytest.param("/?x=%zz", id="bad-escape-in-value"),
    pytest.param("/?%zz=1", id="bad-escape-in-name"),
    pytest.param("/?x=%00", id="nul-in-value"),
    pytest.param("/?x=%0d%0a", id="crlf-in-value"),
    pytest.param("/?utm_source=%00", id="nul-in-ignored-param"),
    pytest.param("/?utm_source=%0a", id="newline-in-ignored-param"),
    pytest.param("/?PAGEN_1=%7f", id="del-in-ignored-param"),
    pytest.param("/?x=%98", id="cp1251-hole-in-value"),
    pytest.param("", id="empty-target"),
    pytest.param("a/b", id="target-not-a-path"),
    pytest.param("*", id="asterisk-form"),
]


@pytest.mark.parametrize("target", MALFORMED)
def test_malformed(target: str) -> None:
    with pytest.raises(Malformed):
        parse(target)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/%C2%85", id="c1-control-is-text"),
        pytest.param("/%E2%80%AE", id="bidi-override-is-text"),
        pytest.param("/%A0", id="cp1251-nbsp-is-text"),
    ],
)
def test_other_characters_are_kept_as_text(target: str) -> None:
    assert len(parse(target).path) == 2


# --- host ---------------------------------------------------------------------------------

HOSTS = [
    pytest.param("khabarovskadm.ru", "khabarovskadm.ru", id="plain"),
    pytest.param("KhabarovskADM.RU", "khabarovskadm.ru", id="case-folded"),
    pytest.param("khabarovskadm.ru:8080", "khabarovskadm.ru", id="port-dropped"),
    pytest.param("khabarovskadm.ru.", "khabarovskadm.ru", id="trailing-dot-dropped"),
    pytest.param("khabarovskadm.ru.:80", "khabarovskadm.ru", id="trailing-dot-and-port"),
    pytest.param("хабаровск.рф", "xn--80aacf4bwnk3a.xn--p1ai", id="idn-to-punycode"),
    pytest.param("ХАБАРОВСК.РФ:443", "xn--80aacf4bwnk3a.xn--p1ai", id="idn-upper-case-port"),
    pytest.param("[::1]:8080", "[::1]", id="ipv6-literal-port-dropped"),
    pytest.param("[2001:DB8::1]", "[2001:db8::1]", id="ipv6-literal-lowercased"),
    pytest.param("127.0.0.1:80", "127.0.0.1", id="ipv4-port-dropped"),
    pytest.param("", None, id="empty"),
    pytest.param(":80", None, id="port-only"),
]


@pytest.mark.parametrize(("header", "host"), HOSTS)
def test_canonical_host(header: str, host: str | None) -> None:
    assert canonical_host(header) == host


# --- properties ---------------------------------------------------------------------------

# Pieces that exercise every rule of §3: separators, dots, index files, escapes of
# any byte (UTF-8, windows-1251, controls, bad escapes), Cyrillic, combining marks.
_PIECES = st.one_of(
    st.sampled_from(
        [
            "/",
            "//",
            ".",
            "..",
            "%2e",
            "%2E%2e",
            "%2f",
            "%2F",
            "index.php",
            "INDEX.HTM",
            "?",
            "&",
            ";",
            "=",
            "+",
            "#",
            "%",
            "%4",
            "%zz",
            "Д",
            "й",
            "\u0306",
            "e\u0301",
            "A",
            "utm_x",
            "pagen_1",
            "%C4%EE",
            "%D0%94",
            "%98",
            "%00",
            "http://",
            ":",
            "@",
            "\\",
        ]
    ),
    st.integers(0, 255).map(lambda b: f"%{b:02X}"),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.~", max_size=4),
    st.text(max_size=3),
)
TARGETS = st.lists(_PIECES, max_size=12).map(lambda pieces: "/" + "".join(pieces))


@PROPERTY
@given(target=TARGETS, case_sensitive=st.booleans())
def test_canonicalisation_is_idempotent(target: str, case_sensitive: bool) -> None:
    try:
        url = parse(target, case_sensitive=case_sensitive)
    except Malformed:
        return
    again = parse(url.to_target(), case_sensitive=case_sensitive)
    assert (again.path, again.path_text, again.params) == (url.path, url.path_text, url.params)


@PROPERTY
@given(target=st.one_of(TARGETS, st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_canonicalisation_is_total(target: str) -> None:
    # Anything a client can send either parses or is Malformed (a 400), nothing else.
    try:
        url = parse(target)
    except Malformed:
        return
    assert url.path.startswith("/")
    assert not any(ch in url.path_text for ch in "\x00\r\n\x7f")


@PROPERTY
@given(header=st.one_of(st.text(), st.text(alphabet="abcXYZ.:[]-0123456789\u0445\u0430\u0431")))
def test_canonical_host_is_total(header: str) -> None:
    host = canonical_host(header)
    assert host is None or (host.isascii() and host == host.lower() and not host.endswith("."))
