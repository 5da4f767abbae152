"""The map loader (gateway.mapfile): every error kind at its FILE:LINE, then good loads.

Error cases are one table: the files written, and each problem expected as (file,
line, a fragment of the message). Unless a case says otherwise its main file is
``HEAD`` (a valid map of HEAD_LINES lines) followed by the case's text, so line
numbers in the table are written as ``HEAD_LINES + n``: line n of the case's text.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from gateway.mapfile import DEFAULT_IGNORE_QUERY, MapError, Problem, RedirectMap, Site, load_map
from tests.support import BUNDLED_MAP, WriteMap

HEAD = """\
version: 1
site:
  new_site: https://khv27.ru
hosts:
  khabarovskadm.ru:
    aliases: [www.khabarovskadm.ru]
  int.khabarovskadm.ru: {}
archive:
  notice:
    ru: Архив
"""
HEAD_LINES = HEAD.count("\n")
H = HEAD_LINES  # short for the tables: line n of a case's text is H + n
MAIN = "redirects.yaml"

# A complete valid map in flow style, for cases about the required sections.
SITE = "site: {new_site: https://khv27.ru}\n"
HOSTS = "hosts: {khabarovskadm.ru: {}}\n"
ARCHIVE = "archive: {notice: {ru: Архив}}\n"


@dataclass(frozen=True)
class Case:
    """A map (main text, more files) and the problems it must report, in order."""

    main: str
    expected: list[tuple[str, int, str]]
    files: dict[str, str | bytes] = field(default_factory=dict)
    head: bool = True  # prefix the main text with HEAD


def write_case(write_map: WriteMap, case: Case) -> Path:
    for name, text in case.files.items():
        write_map(text, name)
    main = textwrap.dedent(case.main).lstrip("\n")
    return write_map(HEAD + main if case.head else main, MAIN)


def load_problems(path: Path) -> list[Problem]:
    with pytest.raises(MapError) as caught:
        load_map(path)
    return list(caught.value.problems)


def where(problem: Problem, base: Path) -> tuple[str, int]:
    return (Path(problem.file).relative_to(base).as_posix(), problem.line)


# A 9-level "billion laughs": composed naively it would build 9**9 strings.
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)

ERRORS = [
    # --- YAML itself -----------------------------------------------------------------
    pytest.param(
        Case("colour: red\n", [(MAIN, H + 1, "unknown key 'colour' in the map")]),
        id="unknown-top-level-key",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: /a
                to: /b
                colour: red
            """,
            [(MAIN, H + 4, "unknown key 'colour' in a rule")],
        ),
        id="unknown-rule-key",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: /a
                to: /b
                status: abc
            """,
            [(MAIN, H + 4, "'status' must be a whole number, not str 'abc'")],
        ),
        id="status-not-a-number",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: /a
                to: /b
                keep_query: "yes"
            """,
            [(MAIN, H + 4, "'keep_query' must be true or false")],
        ),
        id="keep_query-quoted-text-not-a-boolean",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: /a
                to: /b
                status: 999
            """,
            [(MAIN, H + 4, "status must be one of 301, 302, 307, 308, 410")],
        ),
        id="status-not-allowed",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: /a
                to: /b
                to: /c
            """,
            [(MAIN, H + 4, "duplicate key 'to' (first at line 13)")],
        ),
        id="duplicate-yaml-key",
    ),
    pytest.param(
        Case(
            "colour:\n  - red\n",
            [(MAIN, H + 1, "unknown key 'colour' in the map")],
        ),
        id="unknown-key-with-a-block-value-at-the-key-line",
    ),
    pytest.param(
        Case(
            "rules: []\nrules:\n  - from: /a\n    to: /b\n",
            [(MAIN, H + 2, f"duplicate key 'rules' (first at line {H + 1})")],
        ),
        id="duplicate-key-with-a-block-value-at-the-key-line",
    ),
    pytest.param(
        Case(
            """
            rules:
              - &rule
                from: /a
                to: /b
            """,
            [(MAIN, H + 2, "YAML anchors (&rule) are not allowed")],
        ),
        id="anchor",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: /a
                to: *target
            """,
            [(MAIN, H + 3, "YAML aliases (*name) are not allowed")],
        ),
        id="alias",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: !!str /a
                to: /b
            """,
            [(MAIN, H + 2, "YAML tags")],
        ),
        id="tag",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: !!python/object:os.system /a
                to: /b
            """,
            [(MAIN, H + 2, "YAML tags")],
        ),
        id="python-tag",
    ),
    pytest.param(
        Case("", [(MAIN, 1, "the file is empty")], head=False),
        id="empty-file",
    ),
    pytest.param(
        Case("  \n\n\t\n   \n", [(MAIN, 1, "the file is empty")], head=False),
        id="whitespace-only-file",
    ),
    pytest.param(
        Case("# only a comment\n", [(MAIN, 1, "the file is empty")], head=False),
        id="comment-only-file",
    ),
    pytest.param(
        Case(
            "---\n" + SITE + HOSTS + ARCHIVE + "---\n" + SITE,
            [(MAIN, 5, "only one YAML document")],
            head=False,
        ),
        id="multiple-documents",
    ),
    pytest.param(
        Case(
            "version: 2\n" + SITE + HOSTS + ARCHIVE,
            [(MAIN, 1, "version must be 1, not 2")],
            head=False,
        ),
        id="version-2",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: [/b\n",
            [(MAIN, H + 4, "YAML syntax")],
        ),
        id="yaml-syntax-error",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: /b\n    examples: " + "[" * 20 + "]" * 20 + "\n",
            [(MAIN, H + 4, "nesting deeper than 16 levels")],
        ),
        id="nesting-depth",
    ),
    pytest.param(
        Case(ALIAS_BOMB, [(MAIN, 1, "YAML anchors (&a) are not allowed")], head=False),
        id="alias-bomb-refused-at-first-anchor",
    ),
    # --- required sections -----------------------------------------------------------
    pytest.param(
        Case(
            "site:\n  redirect_max_age: 60\n" + HOSTS + ARCHIVE,
            [(MAIN, 2, "site.new_site is required")],
            head=False,
        ),
        id="missing-new_site",
    ),
    pytest.param(
        Case(
            "site:\n  new_site: https://khv27.ru/news\n" + HOSTS + ARCHIVE,
            [(MAIN, 2, "site.new_site must be an https origin")],
            head=False,
        ),
        id="new_site-with-a-path",
    ),
    pytest.param(
        Case(
            "site:\n  new_site: http://khv27.ru\n" + HOSTS + ARCHIVE,
            [(MAIN, 2, "site.new_site must be an https origin")],
            head=False,
        ),
        id="new_site-http",
    ),
    pytest.param(
        Case(SITE + "hosts: {}\n" + ARCHIVE, [(MAIN, 2, "'hosts:' is required")], head=False),
        id="no-hosts",
    ),
    pytest.param(
        Case(SITE + ARCHIVE, [(MAIN, 1, "'hosts:' is required")], head=False),
        id="hosts-section-missing",
    ),
    pytest.param(
        Case(
            SITE + HOSTS + "archive:\n  notice:\n    en: Archive\n",
            [(MAIN, 5, "archive.notice.ru is required")],
            head=False,
        ),
        id="no-archive-notice-ru",
    ),
    pytest.param(
        Case(SITE + HOSTS, [(MAIN, 1, "'archive:' is required")], head=False),
        id="no-archive-section",
    ),
    # --- rules ------------------------------------------------------------------------
    pytest.param(
        Case(
            "rules:\n  - from: evil.example/a\n    to: /b\n",
            [(MAIN, H + 2, "host 'evil.example' in 'from' is not declared")],
        ),
        id="from-host-not-declared",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: https://evil.example/\n",
            [(MAIN, H + 3, "'to' points at 'evil.example', which is not in allow_targets")],
        ),
        id="to-off-allow_targets",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: https://khv27.ru.evil.example/\n",
            [(MAIN, H + 3, "not in allow_targets")],
        ),
        id="to-allowed-host-as-prefix-of-another",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: https://khv27.ru@evil.example/\n",
            [(MAIN, H + 3, "userinfo")],
        ),
        id="to-userinfo-before-evil-host",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    status: 410\n    see: https://evil.example/x\n",
            [(MAIN, H + 4, "'see' points at 'evil.example', which is not in allow_targets")],
        ),
        id="see-off-allow_targets",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: http://khv27.ru/\n",
            [(MAIN, H + 3, "'to' must be https://, not http://")],
        ),
        id="http-target",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: //evil.example/\n",
            [(MAIN, H + 3, "'to' is protocol-relative")],
        ),
        id="protocol-relative-target",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: /b/{name}\n",
            [(MAIN, H + 3, "'to' uses {name}, which 'from' does not capture")],
        ),
        id="name-not-bound",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /<sub>\n    to: https://{sub}.khv27.ru/\n",
            [(MAIN, H + 3, "may not insert a capture into the host")],
        ),
        id="name-in-the-host",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    status: 410\n    to: /b\n",
            [(MAIN, H + 4, "a 410 rule has no 'to'")],
        ),
        id="410-with-to",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: /b\n    see: /c\n",
            [(MAIN, H + 4, "'see' is only for 410 rules")],
        ),
        id="see-on-a-redirect",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    status: 410\n    keep_query: true\n",
            [(MAIN, H + 4, "keep_query is only for redirects")],
        ),
        id="keep_query-on-a-410",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    note: no target\n",
            [(MAIN, H + 2, "a redirect needs 'to'")],
        ),
        id="redirect-without-to",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a?utm_source=vk\n    to: /b\n",
            [(MAIN, H + 2, "condition on 'utm_source', a query name the map ignores")],
        ),
        id="condition-on-an-ignored-name-glob",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /news?PAGEN_1=<int:page>\n    to: /b\n",
            [(MAIN, H + 2, "a query name the map ignores")],
        ),
        id="capture-on-an-ignored-name",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /news?<name>=1\n    to: /b\n",
            [(MAIN, H + 2, "a placeholder cannot stand in a query name")],
        ),
        id="placeholder-in-a-query-name",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a/<path:rest>/b\n    to: /b\n",
            [(MAIN, H + 2, "<path:...> may only be the last element")],
        ),
        id="path-placeholder-not-last",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a/<path:rest>.html\n    to: /b\n",
            [(MAIN, H + 2, "<path:...> may only be the last element")],
        ),
        id="path-placeholder-with-text-after",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a/<x>/<x>\n    to: /b\n",
            [(MAIN, H + 2, "capture <x> is used twice")],
        ),
        id="capture-used-twice",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a/<float:x>\n    to: /b\n",
            [(MAIN, H + 2, "unknown converter 'float'")],
        ),
        id="unknown-converter",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: /a/
                to: /b
              - from: /A/index.php
                to: /c
            """,
            [(MAIN, H + 4, f"duplicate of the rule at {{base}}/{MAIN}:{H + 2}")],
        ),
        id="duplicate-exact-same-canonical-path",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: /a?x=1&y=<int:i>
                to: /b
              - from: /a/?Y=<int:j>&X=1
                to: /c
            """,
            [(MAIN, H + 4, f"duplicate of the rule at {{base}}/{MAIN}:{H + 2}")],
        ),
        id="duplicate-same-conditions-in-another-order",
    ),
    pytest.param(
        Case(
            """
            rules:
              - from: khabarovskadm.ru/a
                to: /b
              - from: http://WWW.khabarovskadm.ru/a/
                to: /c
            """,
            [(MAIN, H + 4, "duplicate of the rule at")],
        ),
        id="duplicate-through-a-host-alias",
    ),
    # --- includes ---------------------------------------------------------------------
    pytest.param(
        Case("include: [more/missing.yaml]\n", [(MAIN, H + 1, "no such file")]),
        id="include-of-a-missing-file",
    ),
    pytest.param(
        Case(
            "include: [more.yaml]\n",
            [("more.yaml", 1, "unknown key 'site' in an included file")],
            files={"more.yaml": "site:\n  new_site: https://khv27.ru\nrules: []\n"},
        ),
        id="include-yaml-with-a-non-rules-key",
    ),
    pytest.param(
        Case(
            "include: [more.yaml]\n",
            [("more.yaml", 1, "unknown key 'include' in an included file")],
            files={"more.yaml": "include: [other.yaml]\nrules: []\n"},
        ),
        id="includes-do-not-nest",
    ),
    pytest.param(
        Case(
            "include: [table.csv]\n",
            [("table.csv", 1, "the header must be from,to,status,note")],
            files={"table.csv": "source,target\n/a,/b\n"},
        ),
        id="csv-bad-header",
    ),
    pytest.param(
        Case(
            "include: [table.csv]\n",
            [
                ("table.csv", 5, "'to' points at 'evil.example'"),
                ("table.csv", 6, "status must be a number, not 'abc'"),
                ("table.csv", 8, "5 columns where the header has 4"),
                ("table.csv", 9, "a 410 rule has no 'to'"),
            ],
            files={
                "table.csv": (
                    "from,to,status,note\n"
                    '/a,/b,,"a note\nover three\nlines"\n'
                    "/c,https://evil.example/,,\n"
                    "/d,/e,abc,\n"
                    "\n"
                    "/f,/g,301,note,extra\n"
                    "/h,/i,410,\n"
                )
            },
        ),
        id="csv-row-errors-at-their-lines-after-a-multiline-cell",
    ),
    pytest.param(
        Case(
            "include: [table.csv]\n",
            [("table.csv", 3, "duplicate of the rule at {base}/table.csv:2")],
            files={"table.csv": "from,to\n/a/,/b\n/A/index.html,/c\n"},
        ),
        id="csv-duplicate-rows",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: /b\ninclude: [table.csv]\n",
            [("table.csv", 2, f"duplicate of the rule at {{base}}/{MAIN}:{H + 2}")],
            files={"table.csv": "from,to\n/a/,/c\n"},
        ),
        id="duplicate-across-files",
    ),
    pytest.param(
        Case(
            "include: [table.csv]\n",
            [("table.csv", 2, "not UTF-8")],
            files={"table.csv": "from,to\n/документы,/docs\n".encode("cp1251")},
        ),
        id="csv-not-utf8-at-the-line-of-the-bad-byte",
    ),
    # --- every problem, not just the first ---------------------------------------------
    pytest.param(
        Case(
            """
            colour: red
            rules:
              - from: /a
                to: http://khv27.ru/
              - from: /b
                status: 999
            """,
            [
                (MAIN, H + 1, "unknown key 'colour'"),
                (MAIN, H + 4, "must be https://"),
                (MAIN, H + 6, "status must be one of"),
            ],
        ),
        id="three-different-errors-all-reported",
    ),
    pytest.param(
        Case(
            "rules:\n  - from: /a\n    to: https://evil.example/\ninclude: [t.csv]\n",
            [(MAIN, H + 3, "not in allow_targets"), ("t.csv", 2, "not in allow_targets")],
            files={"t.csv": "from,to\n/b,https://evil.example/\n"},
        ),
        id="errors-in-main-and-included-file-all-reported",
    ),
]


@pytest.mark.parametrize("case", ERRORS)
def test_map_error(write_map: WriteMap, tmp_path: Path, case: Case) -> None:
    problems = load_problems(write_case(write_map, case))
    assert [where(p, tmp_path) for p in problems] == [(f, line) for f, line, _ in case.expected]
    for problem, (_, _, fragment) in zip(problems, case.expected, strict=True):
        assert fragment.replace("{base}", str(tmp_path)) in problem.message
        assert problem.severity == "error"


def test_problem_prints_as_file_line(write_map: WriteMap) -> None:
    path = write_map(HEAD + "colour: red\n")
    (problem,) = load_problems(path)
    assert str(problem).startswith(f"{path}:{H + 1}: error: unknown key 'colour'")


def test_conditions_that_differ_are_not_duplicates(write_map: WriteMap) -> None:
    path = write_map(
        HEAD
        + textwrap.dedent(
            """
            rules:
              - from: /a
                to: /plain
              - from: /a?x=1
                to: /one
              - from: /a?x=2
                to: /two
              - from: /a?x=<int:n>
                to: /int/{n}
              - from: /a?x=<v>
                to: /any/{v}
              - from: /a?x=1&y=1
                to: /both
              - from: int.khabarovskadm.ru/a?x=1
                to: /int-host
              - from: /a/<p>
                to: /pattern
              - from: /a/<q>
                to: /same-pattern-is-no-duplicate
            """
        )
    )
    assert len(load_map(path).rules) == 9


# --- successful loads ---------------------------------------------------------------------


def load(write_map: WriteMap, text: str) -> RedirectMap:
    return load_map(write_map(HEAD + textwrap.dedent(text).lstrip("\n")))


def test_defaults(write_map: WriteMap) -> None:
    loaded = load(write_map, "")
    site = loaded.site
    assert site.new_site == "https://khv27.ru"
    assert site.allow_targets == ("khv27.ru",)
    assert (site.redirect_max_age, site.case_sensitive) == (86400, False)
    assert site.ignore_query == DEFAULT_IGNORE_QUERY
    assert loaded.archive.notice_en == loaded.archive.notice_ru == "Архив"
    assert loaded.archive.wayback is None
    assert loaded.rules == ()
    assert loaded.default_host == "khabarovskadm.ru"


@pytest.mark.parametrize(
    ("ignore_query", "name", "ignored"),
    [
        (DEFAULT_IGNORE_QUERY, "utm_source", True),
        (DEFAULT_IGNORE_QUERY, "UTM_Source", True),
        (DEFAULT_IGNORE_QUERY, "ID", False),
        (("sid",), "utm_source", False),
        (("sid",), "SID", True),
        ((), "utm_source", False),
    ],
    ids=[
        "a default glob ignores its names",
        "names are compared ignoring case",
        "a name no glob matches is significant",
        "a site's own list replaces the defaults",
        "a plain name in the list matches in any case",
        "an empty list ignores nothing",
    ],
)
def test_site_is_ignored_follows_ignore_query(
    ignore_query: tuple[str, ...], name: str, ignored: bool
) -> None:
    site = Site(new_site="https://khv27.ru", allow_targets=("khv27.ru",), ignore_query=ignore_query)
    assert site.is_ignored(name) is ignored
    assert replace(site, ignore_query=("utm_*",)).is_ignored("utm_x")


def test_sites_compare_by_their_fields_not_their_matcher() -> None:
    a = Site(new_site="https://khv27.ru", allow_targets=("khv27.ru",))
    b = Site(new_site="https://khv27.ru", allow_targets=("khv27.ru",))
    assert a == b and hash(a) == hash(b)
    assert a != replace(a, ignore_query=())


def test_allow_targets_and_english_notice_when_given(write_map: WriteMap) -> None:
    path = write_map(
        """
        site:
          new_site: https://khv27.ru/
          allow_targets: [khv27.ru, "*.khv27.ru"]
        hosts: {khabarovskadm.ru: {}}
        archive:
          notice: {ru: Архив, en: Archive}
          wayback: https://web.archive.org/web/2021/
        rules:
          - from: /a
            to: https://docs.khv27.ru/a
        """
    )
    loaded = load_map(path)
    assert loaded.site.new_site == "https://khv27.ru"
    assert loaded.site.host_allowed("docs.khv27.ru")
    assert not loaded.site.host_allowed("evilkhv27.ru")
    assert (loaded.archive.notice_ru, loaded.archive.notice_en) == ("Архив", "Archive")
    assert loaded.archive.wayback == "https://web.archive.org/web/2021/"


def test_host_aliases_resolve(write_map: WriteMap) -> None:
    loaded = load(
        write_map,
        """
        rules:
          - from: www.khabarovskadm.ru/a
            to: /b
          - from: https://INT.khabarovskadm.ru./c
            to: /d
        """,
    )
    assert [r.host for r in loaded.rules] == ["khabarovskadm.ru", "int.khabarovskadm.ru"]
    assert loaded.host_of("WWW.Khabarovskadm.RU:80") == "khabarovskadm.ru"
    assert loaded.host_of("int.khabarovskadm.ru.") == "int.khabarovskadm.ru"
    assert loaded.host_of("evil.example") is None


def test_includes_in_order(write_map: WriteMap, tmp_path: Path) -> None:
    write_map("rules:\n  - from: /z\n    to: /z\n", "z.yaml")
    write_map("rules:\n  - from: /d-b\n    to: /b\n", "more/b.yaml")
    write_map("rules:\n  - from: /d-a\n    to: /a\n", "more/a.yaml")
    write_map("from,to\n/t1,/t1\n/t2,/t2\n", "table.csv")
    loaded = load(
        write_map,
        """
        include: [z.yaml, more/*.yaml, table.csv]
        rules:
          - from: /main
            to: /main
        """,
    )
    assert [r.from_text for r in loaded.rules] == ["/main", "/z", "/d-a", "/d-b", "/t1", "/t2"]
    assert [r.order for r in loaded.rules] == list(range(6))
    sources = [Path(r.source).relative_to(tmp_path).as_posix() for r in loaded.rules]
    assert sources == [
        f"{MAIN}:{H + 3}",
        "z.yaml:2",
        "more/a.yaml:2",
        "more/b.yaml:2",
        "table.csv:2",
        "table.csv:3",
    ]
    assert [Path(f).relative_to(tmp_path).as_posix() for f in loaded.files] == [
        MAIN,
        "z.yaml",
        "more/a.yaml",
        "more/b.yaml",
        "table.csv",
    ]


def test_csv_with_empty_status_and_note(write_map: WriteMap) -> None:
    write_map('from,to,status,note\n/a,/b,,\n/c,,410,"gone, see ops"\n/d,/e\n/f,/g,302,\n', "t.csv")
    loaded = load(write_map, "include: [t.csv]\n")
    assert [(r.from_text, r.status, r.note) for r in loaded.rules] == [
        ("/a", 301, ""),
        ("/c", 410, "gone, see ops"),
        ("/d", 301, ""),
        ("/f", 302, ""),
    ]
    assert loaded.rules[1].target is None


def test_csv_header_without_optional_columns_and_with_bom(write_map: WriteMap) -> None:
    write_map("\ufefffrom,to\n/документы/,/documents/\n", "t.csv")
    loaded = load(write_map, "include: [t.csv]\n")
    (rule,) = loaded.rules
    assert (rule.path, rule.status) == ("/документы", 301)


def test_version_hash_changes_when_an_included_file_changes(write_map: WriteMap) -> None:
    write_map("from,to\n/a,/b\n", "t.csv")
    main = write_map(HEAD + "include: [t.csv]\n")
    first = load_map(main).version
    assert load_map(main).version == first
    write_map("from,to\n/a,/c\n", "t.csv")
    second = load_map(main).version
    assert second != first
    main.write_text(main.read_text(encoding="utf-8") + "# a comment\n", encoding="utf-8")
    assert load_map(main).version not in (first, second)


def test_map_of_includes_only(write_map: WriteMap) -> None:
    write_map("rules:\n  - from: /a\n    to: /b\n", "more.yaml")
    assert len(load(write_map, "include: [more.yaml]\n").rules) == 1


def test_bundled_map_loads() -> None:
    loaded = load_map(BUNDLED_MAP)
    assert len(loaded.rules) == 20
    # The four old subsites, the domain's other hosts by name, then the wildcard (§1a).
    assert loaded.named_hosts == (
        "khabarovskadm.ru",
        "int.khabarovskadm.ru",
        "edu.khabarovskadm.ru",
        "dms.khabarovskadm.ru",
        *(
            f"{name}.khabarovskadm.ru"
            for name in (
                "archive",
                "dasiz",
                "duma",
                "eaist",
                "geoportal",
                "health",
                "ksp",
                "mail",
                "nko",
                "owa",
                "pmp",
                "services",
                "youth",
            )
        ),
    )
    assert set(loaded.hosts.values()) == {*loaded.named_hosts, "*.khabarovskadm.ru"}
    assert loaded.host_of("www.khabarovskadm.ru") == "khabarovskadm.ru"
