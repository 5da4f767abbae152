"""The performance shortcuts (issue 5) give exactly the answers of the plain code they skip.

Each shortcut is checked against the general path it bypasses, on generated inputs:
the general path is the same function run with ``gateway.fastpaths`` off (the ASCII
parse of ``parse_split``, the placeholder-free ``from``, the plain target, the
matcher's literal-condition index, the CSV row). The escape-run decoder is checked
against ``unquote_to_bytes``, and the pattern index against trying every rule.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.genmap import generate
from gateway import fastpaths
from gateway.canonical import (
    LegacyURL,
    Malformed,
    decode,
    ignore_matcher,
    parse_split,
)
from gateway.mapfile import MapError, Site, compile_csv, load_map
from gateway.matcher import Matcher
from gateway.rules import FromParts, Rule, RuleError, parse_from, parse_target

IGNORED = ignore_matcher(["utm_*", "print"])
# Characters that exercise every branch: separators, dots, escapes, '+', controls, case.
ASCII_PIECES = st.sampled_from(
    [
        "/",
        "//",
        ".",
        "..",
        "a",
        "B",
        "index.php",
        "%",
        "%41",
        "%2e",
        "%2F",
        "&",
        ";",
        "=",
        "+",
        "\x01",
        "\x7f",
        " ",
        "utm_x",
        "Print",
        "ID",
        "x y",
        "?",
        "é",
        "<",
        ">",
        "%3C",
    ]
)
TEXT = st.lists(ASCII_PIECES, max_size=12).map("".join)


def slow_parse(host: str, raw_path: str, raw_query: str, case_sensitive: bool) -> LegacyURL:
    """parse_split with its fast path off: every part through bytes and decode()."""
    with fastpaths.disabled():
        return parse_split(
            host, raw_path, raw_query, case_sensitive=case_sensitive, is_ignored=IGNORED
        )


def outcome(fn: object, *args: object) -> object:
    try:
        return fn(*args)  # type: ignore[operator]
    except Malformed as exc:
        return ("Malformed", str(exc))


@settings(max_examples=250, deadline=None)
@given(path=TEXT, query=TEXT, case_sensitive=st.booleans())
def test_parse_split_fast_path_equals_decoding_every_part(
    path: str, query: str, case_sensitive: bool
) -> None:
    raw_path = "/" + path
    fast = outcome(
        lambda: parse_split("h", raw_path, query, case_sensitive=case_sensitive, is_ignored=IGNORED)
    )
    slow = outcome(lambda: slow_parse("h", raw_path, query, case_sensitive))
    assert fast == slow


def old_decode(raw: bytes) -> str:
    """decode() as it was before escape runs: unquote_to_bytes one escape at a time."""
    if b"%" in raw:
        if re.search(rb"%(?![0-9A-Fa-f]{2})", raw):
            raise Malformed("an escape that is not %XX")
        raw = unquote_to_bytes(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = raw.decode("cp1251")
        except UnicodeDecodeError:
            raise Malformed("bytes that are neither UTF-8 nor windows-1251") from None
    if re.search("[\x00-\x1f\x7f]", text):
        raise Malformed("a control character")
    return text if text.isascii() else unicodedata.normalize("NFC", text)


HEX_ESCAPES = st.lists(
    st.sampled_from(
        ["%D0%B4", "%d0%BE", "%E2%84%96", "%2F", "%25", "%", "%4", "%G1", "a", "/", "\xd0"]
    ),
    max_size=10,
).map(lambda parts: "".join(parts).encode("latin-1"))


@settings(max_examples=250, deadline=None)
@given(st.binary(max_size=24) | HEX_ESCAPES)
def test_escape_runs_decode_like_unquote_to_bytes(raw: bytes) -> None:
    assert outcome(decode, raw) == outcome(old_decode, raw)


def _rules(specs: list[tuple[str, int]]) -> list[Rule]:
    rules = []
    for order, (text, _) in enumerate(specs):
        parts = parse_from(
            text, case_sensitive=False, is_ignored=IGNORED, canonical_host=lambda h: h
        )
        rules.append(
            Rule(
                source=f"m:{order + 1}",
                order=order,
                host=parts.host,
                from_text=text,
                path=parts.path,
                steps=parts.steps,
                conditions=parts.conditions,
                status=410,
                target=None,
                see=None,
                captures=parts.captures,
            )
        )
    return rules


CONDITION = st.sampled_from(
    ["ID=1", "ID=2", "id=1", "ID=<int:n>", "SECTION=news", "section=NEWS", "lang=en", "ID=x"]
)
RULE_TEXT = st.tuples(
    st.sampled_from(["/detail.php", "/a", "h.test/detail.php"]),
    st.lists(CONDITION, max_size=3, unique_by=lambda c: c.split("=")[0].lower()),
).map(lambda t: t[0] + ("?" + "&".join(t[1]) if t[1] else ""))
REQUEST_QUERY = st.lists(
    st.sampled_from(["ID=1", "ID=2", "id=X", "section=news", "SECTION=News", "lang=EN", "z=1"]),
    max_size=4,
).map("&".join)


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(RULE_TEXT, min_size=1, max_size=30, unique=True),
    path=st.sampled_from(["/detail.php", "/a", "/b"]),
    query=REQUEST_QUERY,
    host=st.sampled_from(["h.test", "other.test"]),
)
def test_literal_index_answers_like_a_scan(
    texts: list[str], path: str, query: str, host: str
) -> None:
    rules = _rules([(t, 0) for t in texts])
    # Same scope, path and conditions would be a load-time duplicate: keep the first only.
    seen, unique = set(), []
    for r in rules:
        key = r.identity
        if key not in seen:
            seen.add(key)
            unique.append(r)
    url = parse_split(host, path, query, case_sensitive=False, is_ignored=IGNORED)
    assert _matcher(unique, fast=False).match(url, host) == _matcher(unique, fast=True).match(
        url, host
    )


def _matcher(rules: list[Rule], *, fast: bool) -> Matcher:
    """Build a matcher that indexes every path (fast), or none (fast paths off)."""
    if fast:
        return Matcher(rules, case_sensitive=False, index_from=0)
    with fastpaths.disabled():
        return Matcher(rules, case_sensitive=False)


TARGET_PIECES = st.sampled_from(
    [
        "/",
        "//",
        "news",
        "123",
        "-",
        "_",
        ".",
        "~",
        "'",
        "(",
        "*",
        ",",
        ";",
        "=",
        ":",
        "@",
        "!",
        "$",
        "&",
        "+",
        "?",
        "#",
        "%",
        "%20",
        "{id}",
        "{",
        " ",
        "\t",
        "é",
        "\\",
        "https://",
        "x.y",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    text=st.lists(TARGET_PIECES, max_size=8).map("".join),
    new_site=st.sampled_from(
        [
            "https://khv27.ru",
            "https://khv27.ru:8443",
            "https://khv27.ru:99999",
            "https://a_b.ru",
            "https://khv27.ru/",
            "https://other.ru",
        ]
    ),
)
def test_plain_target_fast_path_equals_the_general_path(text: str, new_site: str) -> None:
    def allowed(host: str) -> bool:
        return host in ("khv27.ru", "a_b.ru", "x.y")

    def compile_with(fast: bool) -> object:
        try:
            if fast:
                return parse_target(
                    text, new_site=new_site, host_allowed=allowed, captures={"id": None}
                )
            with fastpaths.disabled():
                return parse_target(
                    text, new_site=new_site, host_allowed=allowed, captures={"id": None}
                )
        except RuleError as exc:
            return ("RuleError", str(exc))

    assert compile_with(True) == compile_with(False)


def old_parse_from(text: str, case_sensitive: bool) -> FromParts:
    """parse_from with its no-placeholder fast path off: every segment compiled."""
    with fastpaths.disabled():
        return parse_from(
            text, case_sensitive=case_sensitive, is_ignored=IGNORED, canonical_host=str
        )


FROM_PIECES = st.sampled_from(
    [
        "/",
        "//",
        "News",
        "index.php",
        ".",
        "..",
        "%2F",
        "%D0%94",
        "Д",
        "ΟΔΟΣ",
        "<id>",
        "<int:n>",
        ">",
        "?",
        "ID=1",
        "&",
        "x=<v>",
        "%",
        "\x01",
        "-",
        "İ",
        # Spec §2 corrections: escaped brackets are literal, an empty query name is dropped.
        "%3C",
        "%3e",
        "%3Cid%3E",
        "<",
        "=2",
        "&=",
    ]
)


@settings(max_examples=300, deadline=None)
@given(body=st.lists(FROM_PIECES, max_size=8).map("".join), case_sensitive=st.booleans())
def test_from_without_placeholder_parses_as_before(body: str, case_sensitive: bool) -> None:
    text = "/" + body

    def parse_with(fn: object) -> object:
        try:
            if fn is parse_from:
                return parse_from(
                    text, case_sensitive=case_sensitive, is_ignored=IGNORED, canonical_host=str
                )
            return old_parse_from(text, case_sensitive)
        except RuleError as exc:
            return ("RuleError", str(exc))

    assert parse_with(parse_from) == parse_with(old_parse_from)


SEGMENT_PIECES = st.sampled_from(
    [
        "doc",
        "DOC",
        "_v1.pdf",
        "_V1.PDF",
        "_v2.pdf",
        ".pdf",
        "x",
        "k",
        "K",
        "ſ",  # noqa: RUF001
        "s",
        "İ",
        "i",
        "ß",
        "é",
        "-",
        "news",
    ]
)
PLACEHOLDER_PIECES = st.sampled_from(["<a>", "<int:a>"])
# Heads stay ASCII: the head index (older than the tail index) compares lower() forms,
# which differ from the regex's case rule for a few letters (a head of long s, U+017F,
# and a request "S").
ASCII_HEADS = st.sampled_from(["doc", "DOC", "x", "k", "K", "s", "i", "-", "news"])
PATTERN_SEGMENT = st.tuples(
    st.lists(ASCII_HEADS, max_size=2).map("".join),
    PLACEHOLDER_PIECES,
    st.lists(SEGMENT_PIECES, max_size=3).map("".join),
).map("".join)
REQUEST_SEGMENT = st.lists(
    SEGMENT_PIECES | st.sampled_from(["1", "22", "a"]), min_size=1, max_size=5
).map("".join)


def oracle(rules: list[Rule], url: LegacyURL) -> Rule | None:
    """The first pattern rule in map order whose steps match, tried one by one (spec §4.2)."""
    keys = url.path.split("/")[1:] if url.path != "/" else []
    texts = url.path_text.split("/")[1:] if url.path != "/" else []
    if len(keys) != len(texts):
        keys = texts
    for rule in rules:
        steps = rule.steps or ()
        if len(steps) != len(keys):
            continue
        if all(
            keys[i] == s if isinstance(s, str) else s.match(texts[i]) is not None
            for i, s in enumerate(steps)
        ):
            return rule
    return None


@settings(max_examples=300, deadline=None)
@given(
    segments=st.lists(PATTERN_SEGMENT, min_size=1, max_size=12, unique=True),
    random_request=REQUEST_SEGMENT,
    case_sensitive=st.booleans(),
    data=st.data(),
)
def test_pattern_index_by_head_and_tail_answers_like_trying_every_rule(
    segments: list[str],
    random_request: str,
    case_sensitive: bool,
    data: st.DataObject,
) -> None:
    # Half the requests are a rule's own segment filled in, in either case: near misses
    # and hits that differ from the rule only in letter case.
    chosen = data.draw(st.sampled_from(segments))
    filled = re.sub("<[^>]*>", data.draw(st.sampled_from(["1", "22", "x"])), chosen)
    request = data.draw(
        st.sampled_from([random_request, filled, filled.upper(), filled.lower(), filled.swapcase()])
    )
    rules = []
    for order, segment in enumerate(segments):
        parts = parse_from(
            f"/files/{segment}",
            case_sensitive=case_sensitive,
            is_ignored=IGNORED,
            canonical_host=lambda h: h,
        )
        rules.append(
            Rule(
                source=f"m:{order + 1}",
                order=order,
                host=None,
                from_text=segment,
                path=parts.path,
                steps=parts.steps,
                conditions=(),
                status=410,
                target=None,
                see=None,
            )
        )
    url = parse_split(
        "h", f"/files/{request}", "", case_sensitive=case_sensitive, is_ignored=IGNORED
    )
    found = Matcher(rules, case_sensitive=case_sensitive).match(url, "h")
    assert (found.rule if found else None) == oracle(rules, url)


# --- the CSV row fast path of the loader ----------------------------------------------


def _load_both(folder: Path) -> tuple[object, object]:
    """Load a map with the CSV fast path and without it: rules (every field) or problems."""

    def load() -> object:
        try:
            loaded = load_map(folder / "redirects.yaml")
        except MapError as exc:
            return ("MapError", [str(p) for p in exc.problems])
        return [(rule, rule.captures) for rule in loaded.rules]

    fast = load()
    with fastpaths.disabled():
        slow = load()
    return fast, slow


def test_csv_fast_path_builds_the_rules_of_the_general_path(
    tmp_path: Path,
) -> None:
    generate(tmp_path, n_exact=3000, n_patterns=10, n_urls=10, layout="csv")
    fast, slow = _load_both(tmp_path)
    assert isinstance(fast, list) and len(fast) > 3000
    assert fast == slow


CSV_FROM = st.lists(
    st.sampled_from(
        [
            "/",
            "/a",
            "/B",
            "/index.php",
            "/..",
            "/.",
            "//",
            "%41",
            "%",
            "%D0%B4",
            "д",
            "?",
            "ID",
            "=",
            "x",
            "&",
            ";",
            "+",
            "<id>",
            "<int:n>",
            "#",
            " ",
            "utm_x",
            "Print",
            "-",
            ".",
            "\x01",
            "int.example.ru",
            "INT.Example.ru.",
            "other.ru",
            "http://",
            "int.example.ru:80",
            "?ID=Ab",
            "?Utm_x=1",
            "?a.b-C_d=E.f",
            "%3C",
            "%3E",
            "%3Cid%3E",
            "<",
            "?=2",
            "&=3",
            "/b//../..",
        ]
    ),
    max_size=8,
).map("".join)
CSV_TO = st.sampled_from(
    ["", "/", "/news/1/", "/a b", "//x", "/a?b=1", "/{id}", "/%41", "/д", "https://khv27.ru/x"]
)
CSV_STATUS = st.sampled_from(["", "301", "302", "307", "308", "410", "0301", "x", "200", " 410"])
CSV_NOTE = st.sampled_from(["", "a note", " spaced "])


CSV_SITE = Site(new_site="https://khv27.ru", allow_targets=("khv27.ru",))
CSV_HOSTS = {"khabarovskadm.ru": "khabarovskadm.ru", "int.example.ru": "int.example.ru"}


def _csv_both(text: str, case_sensitive: bool) -> tuple[object, object]:
    """Compile a CSV table row by row with the fast path and without: rules and problems."""
    site = dataclasses.replace(CSV_SITE, case_sensitive=case_sensitive)
    results = []
    for fast in (True, False):
        with contextlib.nullcontext() if fast else fastpaths.disabled():
            rules, problems = compile_csv(site, CSV_HOSTS, "t.csv", text)
            results.append(([(r, r.captures) for r in rules], problems))
    return results[0], results[1]


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["/", ""]), CSV_FROM, CSV_TO, CSV_STATUS, CSV_NOTE), max_size=6
    ),
    case_sensitive=st.booleans(),
)
def test_csv_fast_path_equals_the_general_path_on_any_row(
    rows: list[tuple[str, str, str, str, str]], case_sensitive: bool
) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["from", "to", "status", "note"])
    writer.writerows((slash + path, to, status, note) for slash, path, to, status, note in rows)
    fast, slow = _csv_both(out.getvalue(), case_sensitive)
    assert fast == slow


@pytest.mark.parametrize(
    "row",
    [
        "/a?ID=Ab,/news/1/,,",
        "/A/index.php?ID=1,/news/1/,410,",
        "/a?utm_source=1,/x/,,",
        "/a?ID=1,/x/,410,gone",
        "/a,,410, note ",
        "/a,,,",
        "/a%41,/x/,302,",
        "/д/№-1/,/x/,,",
        "INT.example.ru/a?ID=1,/x/,,",
        "other.ru/a,/x/,,",
        "https://int.example.ru/a,/x/,,",
        "int.example.ru?ID=1,/x/,,",
        "/a%3Cid%3E,/x/,,",
        "/a%3cint:id%3e/,/x/,301,",
        "/this?=2,/x/,,",
        "/x?a=1&=2,/x/,,",
        "/a/b//../..,/x/,,",
    ],
    ids=[
        "query value keeps its letters only when case-sensitive",
        "410 with a target is refused by the general path",
        "an ignored query name is refused by the general path",
        "410 with a target and a query",
        "410 without target, note stripped",
        "a redirect with no target is refused",
        "an escape in the path",
        "a Cyrillic path",
        "a host in any case",
        "a host the map does not serve",
        "a full URL",
        "a host with no path",
        "escaped angle brackets are a literal path, not a placeholder",
        "an escaped converter is literal text",
        "an empty query name is dropped",
        "an empty query name beside a condition is dropped",
        "dot segments resolved with the empty segment of '//' counted",
    ],
)
@pytest.mark.parametrize("case_sensitive", [False, True], ids=["folded", "case-sensitive"])
def test_csv_fast_path_equals_the_general_path_on_chosen_rows(
    row: str, case_sensitive: bool
) -> None:
    fast, slow = _csv_both(f"from,to,status,note\n{row}\n", case_sensitive)
    assert fast == slow


@pytest.mark.parametrize(
    ("row", "path", "conditions"),
    [
        ("/a%3Cid%3E,/x/,,", "/a<id>", ()),
        ("/a%3Cint:id%3E,,410,", "/a<int:id>", ()),
        ("/this?=2,/x/,,", "/this", ()),
        ("/x?a=1&=2,/x/,,", "/x", (("a", "1"),)),
        ("/a/b//../..,/x/,,", "/a", ()),
    ],
    ids=[
        "escaped-brackets-compile-to-an-exact-rule-not-a-placeholder",
        "an-escaped-converter-is-an-exact-rule",
        "empty-query-name-dropped-not-refused",
        "empty-query-name-dropped-beside-a-condition",
        "dot-dot-removes-the-empty-segment-of-double-slash",
    ],
)
@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "general-path"])
def test_csv_rows_of_the_spec_corrections_compile_to(
    row: str, path: str, conditions: tuple[tuple[str, str], ...], fast: bool
) -> None:
    """Spec §2/§3 corrections: the CSV row compiles the same on either path, without a problem."""
    text = f"from,to,status,note\n{row}\n"
    with contextlib.nullcontext() if fast else fastpaths.disabled():
        rules, problems = compile_csv(CSV_SITE, CSV_HOSTS, "t.csv", text)
    assert problems == []
    assert [
        (r.is_exact, r.path, tuple((c.key, c.literal) for c in r.conditions)) for r in rules
    ] == [(True, path, conditions)]
