"""Properties of the whole request path under arbitrary input (hypothesis).

For any request target (bytes a scanner could put on the wire), method and Host:
no 5xx, every Location safe (tests/safety.py), no request markup in a banner.
Canonicalisation is total (a LegacyURL or Malformed, nothing else) and idempotent.
The map loader answers any bytes with a map or FILE:LINE problems.

Examples per property: env HYPOTHESIS_MAX_EXAMPLES (200 by default, 10000 in `make fuzz`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.canonical import Malformed, parse_request, wire_bytes
from gateway.decide import decide
from gateway.mapfile import MapError, RedirectMap, load_map
from gateway.outcomes import Redirect
from tests.safety import (
    PROPERTY_SETTINGS,
    Shape,
    baseline_shapes,
    location_problems,
    response_problems,
)
from tests.support import BUNDLED_MAP

# Pieces scanners and crafted links are made of: separators, escapes (single, double,
# overlong, invalid), markup, CRLF, Cyrillic as UTF-8 and windows-1251, the bundled
# map's own paths (so that redirects with captures and keep_query are reached).
ATOMS: tuple[bytes, ...] = (
    b"/", b"//", b"\\", b"%5C", b"%5c", b"%2F", b"%2f", b".", b"..", b"%2e", b"%2E%2E",
    b"%252e", b"%c0%ae", b"%C0%AF", b"%e0%80%ae", b"%ff", b"%fe", b"%98", b"%", b"%z",
    b"%0", b"%00", b"%09", b"%0d%0a", b"%0D%0ASet-Cookie:x=1", b"@", b":", b"?", b"#",
    b"&", b";", b"=", b"+", b"<", b">", b"\"", b"'", b"`", b"%3C", b"%3E", b"%22", b"%27",
    b"<script>alert(1)</script>", b"\"><svg onload=x>", b"javascript:", b"evil.example",
    b"https://evil.example", b"//evil.example", b"@evil.example", b"\xd0\xbd\xd0\xbe",
    b"\xcf\xf0\xe8", b"%D0%BD%D0%BE", b"%CF%F0%E8", b"\xe2\x80\xae", b"%E2%80%AE",
    b"\xef\xbb\xbf", b"\xc3", b"\x98", b"index.php", b"INDEX.HTM", b"en", b"eng",
    b"press-center", b"news", b"detail.php?ID=", b"index.php?ELEMENT_ID=", b"search",
    b"?q=", b"&q=", b"upload", b"bitrix", b"redirect.php?goto=", b"rk.php?url=",
    b"utm_source=", b"PAGEN_1=", b"12345", b"-", b"*", b" ", b"~",
)  # fmt: skip

targets = st.builds(
    lambda parts: b"/" + b"".join(parts),
    st.lists(st.one_of(st.sampled_from(ATOMS), st.binary(min_size=1, max_size=4)), max_size=12),
)
methods = st.sampled_from(["GET", "HEAD", "POST", "TRACE", "PROPFIND", "get", "OPTIONS"])
hosts = st.sampled_from(
    [
        "khabarovskadm.ru",
        "WWW.KHABAROVSKADM.RU.",
        "int.khabarovskadm.ru:8080",
        "edu.khabarovskadm.ru",
        "dms.khabarovskadm.ru",
        "evil.example",
        "khv27.ru",
        "",
        "127.0.0.1",
        "khabarovskadm.ru@evil.example",
        "xn--80ak6aa92e.com",
    ]
)
languages = st.sampled_from(["", "en", "ru", "en;q=0.9, ru;q=0.8", "*", "en-US,en;q=0.5"])


@pytest.fixture(scope="module")
def module_app() -> Flask:
    return create_app({"TESTING": True, "MAP_PATH": str(BUNDLED_MAP)})


@pytest.fixture(scope="module")
def module_client(module_app: Flask) -> Iterator[FlaskClient]:
    yield module_app.test_client()


def _get(
    client: FlaskClient,
    target: str,
    *,
    method: str = "GET",
    host: str = "khabarovskadm.ru",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    # RAW_URI carries the target as gunicorn would give it: the wire bytes as latin-1.
    response = client.open(
        "/",
        method=method,
        headers={"Host": host, **(headers or {})},
        environ_overrides={"RAW_URI": target},
    )
    return response.status_code, dict(response.headers), response.get_data()


@pytest.fixture(scope="module")
def shapes(module_client: FlaskClient) -> frozenset[Shape]:
    def render(target: str, language: str) -> str:
        status, _, body = _get(module_client, target, headers={"Accept-Language": language})
        assert status in (404, 410)
        return body.decode()

    return baseline_shapes(render)


@PROPERTY_SETTINGS
@given(target=targets, method=methods, host=hosts, language=languages)
def test_any_request_is_answered_safely(
    module_client: FlaskClient,
    bundled: RedirectMap,
    shapes: frozenset[Shape],
    target: bytes,
    method: str,
    host: str,
    language: str,
) -> None:
    """No 5xx, no unsafe Location, no request markup in a banner, whatever is sent."""
    status, headers, body = _get(
        module_client,
        target.decode("latin-1"),
        method=method,
        host=host,
        headers={"Accept-Language": language, "X-Forwarded-Host": "evil.example"},
    )
    problems = response_problems(
        status,
        headers,
        body,
        host_allowed=bundled.site.host_allowed,
        known_shapes=shapes,
        method=method,
    )
    assert problems == []


@PROPERTY_SETTINGS
@given(
    prefix=st.sampled_from(["/search/?q=", "/search/?x=1&q=", "/press-center/news/detail.php?ID="]),
    value=st.text(min_size=1, max_size=40),
    extra=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), max_size=3),
)
def test_redirects_built_from_request_text_stay_on_the_new_site(
    bundled: RedirectMap, prefix: str, value: str, extra: dict[str, str]
) -> None:
    """Arbitrary Unicode in kept or captured parameters never leaves the allowed hosts."""
    from urllib.parse import quote

    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in extra.items())
    target = prefix + quote(value) + (f"&{query}" if query else "")
    outcome = decide(bundled, "GET", "khabarovskadm.ru", wire_bytes(target).decode("latin-1"))
    if isinstance(outcome, Redirect):
        assert location_problems(outcome.location, bundled.site.host_allowed) == []


@PROPERTY_SETTINGS
@given(
    method=st.text(max_size=10),
    host=st.text(max_size=40),
    target=st.text(max_size=60),
)
def test_deciding_is_total(bundled: RedirectMap, method: str, host: str, target: str) -> None:
    """decide() returns an outcome for any method, Host header and target text: it never raises."""
    decide(bundled, method, host, target)
    decide(bundled, "GET", host, "/" + target)


@PROPERTY_SETTINGS
@given(
    path=targets,
    query=st.one_of(
        st.none(), st.binary(max_size=30), st.lists(st.sampled_from(ATOMS)).map(b"".join)
    ),
    case_sensitive=st.booleans(),
)
def test_canonical_form_is_total_and_idempotent(
    bundled: RedirectMap, path: bytes, query: bytes | None, case_sensitive: bool
) -> None:
    """Canonicalising gives a URL or Malformed; canonicalising its rebuilt target gives it back."""
    raw = path.split(b"?")[0].split(b"#")[0] + (b"?" + query if query is not None else b"")
    try:
        url = parse_request(
            "khabarovskadm.ru",
            raw.decode("latin-1"),
            case_sensitive=case_sensitive,
            is_ignored=bundled.site.is_ignored,
        )
    except Malformed:
        return
    again = parse_request(
        "khabarovskadm.ru",
        url.to_target(),
        case_sensitive=case_sensitive,
        is_ignored=bundled.site.is_ignored,
    )
    assert (again.path, again.path_text, again.params) == (url.path, url.path_text, url.params)
    # Canonical text is canonical: no empty, dot or trailing segment survives.
    assert not {".", ".."} & set(url.path_text.split("/"))
    assert url.path.startswith("/")
    assert "//" not in url.path
    assert url.path == "/" or not url.path.endswith("/")


_PROBLEM_LINE = re.compile(r"\A[^\n]+:\d+: error: [^\n]+\Z")
_MAP_HEAD = BUNDLED_MAP.read_bytes()


@PROPERTY_SETTINGS
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        # The bundled map with lines dropped, duplicated or garbled.
        st.lists(
            st.tuples(
                st.integers(0, 400),
                st.sampled_from(["drop", "dup", "junk"]),
                st.binary(max_size=20),
            ),
            min_size=1,
            max_size=5,
        ).map(lambda edits: _mutate(_MAP_HEAD, edits)),
    )
)
def test_any_bytes_load_as_a_map_or_file_line_problems(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    """The loader answers any bytes with a RedirectMap or MapError problems, never a traceback."""
    path = tmp_path_factory.getbasetemp() / "property-map.yaml"
    path.write_bytes(data)
    try:
        loaded = load_map(path)
    except MapError as exc:
        assert exc.problems, "a MapError with no problem in it"
        for problem in exc.problems:
            assert _PROBLEM_LINE.match(str(problem)), str(problem)
            assert problem.file == str(path)
    else:
        assert loaded.rules is not None


def _mutate(text: bytes, edits: list[tuple[int, str, bytes]]) -> bytes:
    lines = text.split(b"\n")
    for index, kind, junk in edits:
        at = index % len(lines)
        if kind == "drop":
            del lines[at]
        elif kind == "dup":
            lines.insert(at, lines[at])
        else:
            lines[at] = lines[at][: len(junk)] + junk
    return b"\n".join(lines)


def test_property_settings_follow_the_environment() -> None:
    """HYPOTHESIS_MAX_EXAMPLES sets the examples per property (make fuzz: 10000)."""
    import os

    from tests.safety import MAX_EXAMPLES

    assert int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "200")) == MAX_EXAMPLES


# Segments with placeholders as ops write them: literal pieces from a small alphabet
# (so that they collide with the text), converters mixed.
_pieces = st.text(alphabet="-._aA1", max_size=3)
_placeholder = st.sampled_from(["<{}>", "<int:{}>"])


@st.composite
def segment_patterns(draw: st.DrawFn) -> str:
    count = draw(st.integers(2, 4))
    out = draw(_pieces)
    for i in range(count):
        out += draw(_placeholder).format(f"p{i}") + draw(_pieces)
    if draw(st.booleans()):
        out += f"<path:p{count}>"
    return out


@PROPERTY_SETTINGS
@given(
    pattern=segment_patterns(),
    text=st.text(alphabet="-._aAbB12/", max_size=24),
    case_sensitive=st.booleans(),
)
def test_multi_placeholder_segments_capture_as_the_regex_would(
    pattern: str, text: str, case_sensitive: bool
) -> None:
    """The backtracking-free matcher gives the regex's captures (greedy, leftmost)."""
    from gateway.rules import SegmentPattern, _compile_segment
    from gateway.segments import from_segments

    ((texts, holders),) = from_segments("/" + pattern)
    step = _compile_segment(texts, holders, case_sensitive, {}, True)
    assert isinstance(step, SegmentPattern)
    if not step.is_tail:
        assume("/" not in text)  # a segment never holds a slash; only a tail does
    expected = step.regex.match(text)
    assert step.match(text) == (expected.groups() if expected else None)


def _rfc3986_remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 as written: the oracle for resolve_segments (spec §3)."""
    inp, out = path, ""
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./"):
            inp = inp[2:]
        elif inp.startswith("/./"):
            inp = "/" + inp[3:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../") or inp == "/..":
            inp = "/" + inp[4:]
            out = out[: max(out.rfind("/"), 0)]
        elif inp in (".", ".."):
            inp = ""
        else:
            cut = inp.find("/", 1)
            cut = len(inp) if cut < 0 else cut
            out, inp = out + inp[:cut], inp[cut:]
    return out


@PROPERTY_SETTINGS
@given(
    segments=st.lists(
        st.sampled_from(["", ".", "..", "a", "b", "...", ".a", "index.php"]), max_size=10
    )
)
def test_dot_segments_resolve_as_rfc_3986_then_slashes_collapse(segments: list[str]) -> None:
    """Spec §3: resolve_segments is RFC 3986's remove_dot_segments, then '//' collapsed."""
    from gateway.canonical import INDEX_FILES, resolve_segments

    path = "/" + "/".join(segments)
    expected = [s for s in _rfc3986_remove_dot_segments(path).split("/") if s]
    while expected and expected[-1] in INDEX_FILES:
        expected.pop()
    assert resolve_segments(path) == expected
