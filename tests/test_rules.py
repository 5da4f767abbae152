"""The rule vocabulary (gateway.rules, gateway.segments): what a compiled rule says about itself.

Tables of cases whose ids state the reason: a rule's kind and report kind, its
identity (what makes two rules answer the same URLs), its file and line, the
converter table, the errors of ``from`` and ``to``, and how a target is built.
"""

from __future__ import annotations

import pytest

from gateway.canonical import Param, ignore_matcher
from gateway.rules import Rule, RuleError, SegmentPattern, Target, parse_from, parse_target
from gateway.segments import CONVERTERS

IS_IGNORED = ignore_matcher(["utm_*"])
HOSTS = {"khabarovskadm.ru": "khabarovskadm.ru", "www.khabarovskadm.ru": "khabarovskadm.ru"}
NEW_SITE = "https://khv27.ru"


def allowed(host: str) -> bool:
    return host in ("khv27.ru", "docs.khv27.ru")


def rule(from_text: str, status: int = 301, source: str = "m.yaml:1") -> Rule:
    """Compile ``from`` into a rule, as the loader would (host names from HOSTS)."""
    parts = parse_from(
        from_text, case_sensitive=False, is_ignored=IS_IGNORED, canonical_host=HOSTS.get
    )
    return Rule(
        source=source,
        order=0,
        host=parts.host,
        from_text=from_text,
        path=parts.path,
        steps=parts.steps,
        conditions=parts.conditions,
        status=status,
        target=None,
        see=None,
        captures=parts.captures,
    )


def target(text: str, captures: dict[str, str | None] | None = None) -> Target:
    return parse_target(text, new_site=NEW_SITE, host_allowed=allowed, captures=captures or {})


# --- kind and report kind ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_text", "status", "kind", "report_kind"),
    [
        ("/about/", 301, "exact", "exact"),
        ("/detail.php?ID=5", 301, "query", "query"),
        ("/detail.php?ID=<int:id>", 302, "query", "query"),
        ("/news/<int:id>/", 301, "pattern", "pattern"),
        ("/eng/<path:rest>?lang=en", 308, "pattern", "pattern"),
        ("/old/", 410, "exact", "gone"),
        ("/old.php?ID=1", 410, "query", "gone"),
        ("/old/<path:rest>", 410, "pattern", "gone"),
    ],
    ids=[
        "a path alone is exact",
        "an exact path with a literal condition is a query rule",
        "a capture in the query still leaves the path exact: a query rule",
        "a placeholder in the path makes a pattern",
        "a pattern stays a pattern with a condition",
        "a 410 exact rule keeps kind exact but reports as gone",
        "a 410 query rule reports as gone",
        "a 410 pattern reports as gone",
    ],
)
def test_kind_and_report_kind(from_text: str, status: int, kind: str, report_kind: str) -> None:
    compiled = rule(from_text, status)
    assert compiled.kind == kind
    assert compiled.report_kind == report_kind


# --- identity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("/about/", "/ABOUT", True),
        ("/%D0%B4", "/д", True),
        ("/a/index.php", "/a/", True),
        ("/a?x=1&y=2", "/a?y=2&x=1", True),
        ("/a?ID=Ab", "/a?id=aB", True),
        ("/n/<int:id>", "/n/<int:n>", True),
        ("www.khabarovskadm.ru/a", "khabarovskadm.ru/a", True),
        ("khabarovskadm.ru/a", "/a", False),
        ("/a?x=1", "/a", False),
        ("/a?x=1", "/a?x=2", False),
        ("/a?x=1", "/a?x=<v>", False),
        ("/a?x=<v>", "/a?x=<int:v>", False),
        ("/n/<id>", "/n/<int:id>", False),
        ("/n/<id>", "/n/x<id>", False),
        ("/n/<path:p>", "/n/<p>", False),
    ],
    ids=[
        "case and a final slash fold away in a case-insensitive map",
        "an escape and its character are one path",
        "an index file is its folder",
        "the order of conditions does not matter",
        "condition names and literal values fold",
        "capture names do not change what a pattern matches",
        "an alias is its host",
        "a host's rule and an every-host rule differ",
        "a condition makes another rule",
        "another literal value makes another rule",
        "a literal value and a capture differ",
        "a plain and an int capture in the query differ",
        "a plain and an int placeholder differ",
        "literal text around a placeholder counts",
        "a tail and a one-segment placeholder differ",
    ],
)
def test_identity(a: str, b: str, same: bool) -> None:
    assert (rule(a).identity == rule(b).identity) is same


def test_identity_ignores_status_and_target() -> None:
    assert rule("/a", 301).identity == rule("/a", 410).identity


# --- file and line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "file", "line"),
    [
        ("redirects.yaml:12", "redirects.yaml", 12),
        ("redirects.d/news.csv:3", "redirects.d/news.csv", 3),
        ("maps/a:b.yaml:7", "maps/a:b.yaml", 7),
        ("m.yaml:0", "m.yaml", 0),
    ],
    ids=[
        "the main file",
        "an included table keeps its folder",
        "a colon in the file name stays in the file",
        "line 0 concerns the whole file",
    ],
)
def test_file_and_line(source: str, file: str, line: int) -> None:
    compiled = rule("/a", source=source)
    assert (compiled.file, compiled.line) == (file, line)


# --- converters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "whole_match"),
    [
        (None, "news-1", True),
        (None, "a/b", False),
        ("int", "0042", True),
        ("int", "4a", False),
        ("int", "٣", False),
        ("path", "a/b/c", True),
        ("path", "a\nb", True),
    ],
    ids=[
        "a plain placeholder takes any segment text",
        "a plain placeholder stops at a slash",
        "int takes ASCII digits, leading zeros too",
        "int refuses a letter",
        "int refuses non-ASCII digits",
        "path takes slashes",
        "path takes a newline (the pattern is compiled with DOTALL)",
    ],
)
def test_converter_runs_match_their_pattern(name: str | None, text: str, whole_match: bool) -> None:
    converter = CONVERTERS[name]
    assert (converter.run.fullmatch(text) is not None) is whole_match


@pytest.mark.parametrize(
    ("name", "in_query", "spans_segments"),
    [(None, True, False), ("int", True, False), ("path", False, True)],
    ids=[
        "a plain capture may stand in a query value",
        "an int capture may stand in a query value",
        "only a path capture spans segments, and never in the query",
    ],
)
def test_converter_places(name: str | None, in_query: bool, spans_segments: bool) -> None:
    converter = CONVERTERS[name]
    assert (converter.name, converter.in_query, converter.spans_segments) == (
        name,
        in_query,
        spans_segments,
    )


@pytest.mark.parametrize(
    ("from_text", "whole_segment", "whole_tail"),
    [
        ("/n/<id>", True, False),
        ("/n/<int:id>", False, False),
        ("/n/x<id>", False, False),
        ("/n/<id>.html", False, False),
        ("/n/<path:rest>", False, True),
        ("/n/x<path:rest>", False, False),
    ],
    ids=[
        "a lone plain placeholder is any segment",
        "an int placeholder is not any segment",
        "text before the placeholder narrows it",
        "text after the placeholder narrows it",
        "a lone path placeholder is any tail",
        "text before a path placeholder narrows it",
    ],
)
def test_whole_segment_and_tail(from_text: str, whole_segment: bool, whole_tail: bool) -> None:
    steps = rule(from_text).steps
    assert steps is not None
    step = steps[-1]
    assert isinstance(step, SegmentPattern)
    assert (step.is_whole_segment, step.is_whole_tail) == (whole_segment, whole_tail)


# --- what ``from`` compiles to: spec corrections of §2 and §3 ---------------------------


@pytest.mark.parametrize(
    ("from_text", "path", "conditions"),
    [
        ("/a%3Cid%3E", "/a<id>", ()),
        ("/a%3cid%3e", "/a<id>", ()),
        ("/a%3Cint:id%3E/", "/a<int:id>", ()),
        ("/x?a=%3Cid%3E", "/x", (("a", "<id>"),)),
        ("/this?=2", "/this", ()),
        ("/x?a=1&=2", "/x", (("a", "1"),)),
        ("/x?=<id>&a=1", "/x", (("a", "1"),)),
        ("/x?=", "/x", ()),
        ("/a/b//../..", "/a", ()),
        ("/a/b//..", "/a/b", ()),
        ("/a//..", "/a", ()),
        ("/a/%2F/../b", "/a/b", ()),
        ("//../../a", "/a", ()),
        ("/a/./b/../c", "/a/c", ()),
    ],
    ids=[
        "escaped-angle-brackets-are-literal-not-a-placeholder",
        "lowercase-escapes-too-are-literal",
        "an-escaped-converter-is-literal-text-too",
        "an-escaped-placeholder-in-a-query-value-is-a-literal-value",
        "empty-query-name-dropped-as-in-a-request",
        "empty-query-name-dropped-beside-a-condition",
        "empty-query-name-with-a-placeholder-dropped-capture-unbound",
        "empty-name-and-value-dropped",
        "dot-dot-removes-the-empty-segment-between-slashes-as-a-browser",
        "one-dot-dot-removes-only-the-empty-segment",
        "dot-dot-after-double-slash-stays-in-the-folder",
        "an-escaped-slash-makes-an-empty-segment-that-dot-dot-removes",
        "never-above-the-root",
        "plain-dot-segments-still-resolved",
    ],
)
def test_from_compiles_to(from_text: str, path: str, conditions: tuple[tuple[str, str]]) -> None:
    compiled = rule(from_text)
    assert compiled.is_exact
    assert compiled.path == path
    assert tuple((c.key, c.literal) for c in compiled.conditions) == conditions
    assert compiled.captures == {}


@pytest.mark.parametrize(
    ("from_text", "literals", "converters"),
    [
        ("/a%3C<id>", ("a<", ""), (None,)),
        ("/n/<int:id>%3E.html", ("", ">.html"), ("int",)),
        ("/n/%3Cb%3E%2F<x>%3C", ("", "<"), (None,)),
        ("/n/x//../<id>", ("", ""), (None,)),
    ],
    ids=[
        "an-escaped-bracket-beside-a-real-placeholder-is-literal-text",
        "an-escaped-closing-bracket-after-a-placeholder-is-literal-text",
        "an-escaped-slash-in-literal-text-is-a-separator-once-decoded",
        "dot-segments-resolved-around-placeholders-as-in-a-request",
    ],
)
def test_placeholders_found_as_written(
    from_text: str, literals: tuple[str, ...], converters: tuple[str | None, ...]
) -> None:
    steps = rule(from_text).steps
    assert steps is not None
    step = steps[-1]
    assert isinstance(step, SegmentPattern)
    assert (step.literals, step.converters) == (literals, converters)


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("from_text", "words"),
    [
        ("", "non-empty"),
        ("/a#top", "fragment"),
        ("other.ru/a", "not declared under 'hosts:'"),
        ("https://", "needs a host"),
        ("/n/<float:x>", "unknown converter 'float'"),
        ("/n/<path:p>/x", "only be the last element"),
        ("/n/<a>/<a>", "used twice"),
        ("/n/<a", "malformed placeholder"),
        ("/a?x", "must be NAME=VALUE"),
        ("/a?=%zz", "query value:"),
        ("/a?utm_source=1", "ignores"),
        ("/a?x=1&X=2", "two conditions"),
        ("/a?<n>=1", "cannot stand in a query name"),
        ("/a?x=<path:p>", "not allowed in a query value"),
        ("/a?x=<float:p>", "not allowed in a query value"),
        ("/a?x=a<n>", "must be the whole value"),
        ("/a%", "path:"),
        ("/a<id%3E", "malformed placeholder"),
        ("/a%3Cid>", "malformed placeholder"),
    ],
    ids=[
        "from must not be empty",
        "browsers never send a fragment",
        "a host must be served by the map",
        "a full URL needs a host",
        "only the three converters exist",
        "a path placeholder ends the path",
        "a capture name is used once",
        "an unclosed placeholder",
        "a condition needs a value",
        "a dropped empty name's value must still decode",
        "an ignored name can never be significant",
        "one condition per name, in any case",
        "query names are literal",
        "a path capture has no place in a query",
        "an unknown converter in a query",
        "a query placeholder is the whole value",
        "a bad escape in the path",
        "'%3E' never closes a placeholder: '<id%3E' is an unclosed one",
        "a raw '>' after an escaped '<' is a stray bracket, not a placeholder",
    ],
)
def test_parse_from_errors(from_text: str, words: str) -> None:
    with pytest.raises(RuleError) as caught:
        rule(from_text)
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("to", "words"),
    [
        ("", "non-empty"),
        ("/a b", "space or control"),
        ("//evil.ru/", "protocol-relative"),
        ("http://khv27.ru/", "must be https"),
        ("news/", "must be a path"),
        ("https://evil.ru/", "not in allow_targets"),
        ("https://user@khv27.ru/", "userinfo"),
        ("https://{id}.khv27.ru/", "into the host"),
        ("/n/{missing}", "does not capture"),
        ("/n/#{id}", "into the fragment"),
        ("/n/{", "brace"),
        ("/n/%zz", "not a %XX escape"),
        ("https://khv27.ru:99999/", "not a valid URL"),
    ],
    ids=[
        "to must not be empty",
        "spaces must be escaped",
        "no protocol-relative URL",
        "only https",
        "a relative path is refused",
        "the host must be allowed",
        "no userinfo",
        "no capture in the host",
        "only captures from 'from'",
        "no capture in the fragment",
        "a lone brace",
        "a bad escape",
        "a bad port",
    ],
)
def test_parse_target_errors(to: str, words: str) -> None:
    with pytest.raises(RuleError) as caught:
        target(to, {"id": "int"})
    assert words in str(caught.value)


# --- building a target -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "captures", "values", "extra", "url"),
    [
        ("/news/", {}, {}, (), "https://khv27.ru/news/"),
        ("/news/{id}/", {"id": "int"}, {"id": "42"}, (), "https://khv27.ru/news/42/"),
        ("/s/{q}", {"q": None}, {"q": "a/b c"}, (), "https://khv27.ru/s/a%2Fb%20c"),
        ("/en/{rest}", {"rest": "path"}, {"rest": "a/b c"}, (), "https://khv27.ru/en/a/b%20c"),
        ("/s?q={rest}", {"rest": "path"}, {"rest": "a/b"}, (), "https://khv27.ru/s?q=a%2Fb"),
        (
            "/news/",
            {},
            {},
            (Param("page", "Page", "2 3"),),
            "https://khv27.ru/news/?Page=2%203",
        ),
        (
            "/news/?lang=ru#top",
            {},
            {},
            (Param("page", "page", "2"),),
            "https://khv27.ru/news/?lang=ru&page=2#top",
        ),
        (
            "/news/?lang=ru",
            {},
            {},
            (Param("lang", "LANG", "en"),),
            "https://khv27.ru/news/?lang=ru",
        ),
        ("https://docs.khv27.ru", {}, {}, (), "https://docs.khv27.ru/"),
    ],
    ids=[
        "a constant target is the URL on new_site",
        "a capture is inserted",
        "a plain capture escapes its slash",
        "a path capture keeps its slashes in the path",
        "a path capture escapes its slashes in the query",
        "kept parameters are appended with their own names, escaped",
        "kept parameters join the target's query, before the fragment",
        "a parameter the target names itself is not repeated",
        "an origin alone gets the path /",
    ],
)
def test_target_build(
    to: str,
    captures: dict[str, str | None],
    values: dict[str, str],
    extra: tuple[Param, ...],
    url: str,
) -> None:
    assert target(to, captures).build(values, extra) == url
