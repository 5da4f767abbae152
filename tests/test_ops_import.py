"""Tests of gateway.ops.importer: spreadsheets in, a clean rule table out.

The expected problems and the written table are worked out by hand from the rows
and the map below (each row says what should happen to it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.mapfile import load_map
from gateway.ops.explain import explain
from gateway.ops.importer import ImportFailed, plan_import, table_text, write_table
from gateway.ops.sheets import decode_table, sniff_delimiter
from tests.support import WriteMap

MAP = """\
version: 1
site:
  new_site: https://khv27.ru
hosts:
  khabarovskadm.ru:
    aliases: [www.khabarovskadm.ru]
  int.khabarovskadm.ru: {}
archive:
  notice:
    ru: "Архив."
rules:
  - from: /contacts/
    to: /contacts/
  - from: /upload/<path:rest>
    status: 410
  - from: /news/detail.php?ID=<int:id>
    to: /news/{id}/
  - from: /documents/
    to: /documents/
include: [redirects.d/*.csv]
"""
CONTACTS, UPLOAD, NEWS, DOCUMENTS = 12, 14, 16, 18  # the lines of the rules above

# Windows-1251, semicolons, a header, duplicates and conflicts: row by row.
ROWS = [
    "Старый адрес;Новый адрес;Статус;Примечание",  # 1 header
    "/o-nas/;/about/;;Про нас",  # 2 kept
    "/O-NAS/index.php;/about/;;",  # 3 same rule, same answer: warning, dropped
    "/o-nas;/about-us/;;",  # 4 same rule, other answer: error, line 2 wins
    "/contacts/;/kontakty/;;",  # 5 conflicts with the map: error
    "/Documents;/documents/;;",  # 6 already in the map: warning, dropped
    "/upload/old.pdf;/documents/old/;;",  # 7 overrides the /upload/ pattern: note, kept
    "/новости/;/news/;;",  # 8 Cyrillic: kept
    "/gone.html;/x/;410;Удалено",  # 9 410 with a new URL: warning, URL dropped, kept
    "http://evil.example/a;/b/;;",  # 10 host not served: error
    "/a;https://evil.example/;;",  # 11 target not allowed: error
    "/search/?q=Бюджет&utm_source=x;/search/budget/;;",  # 12 kept, utm dropped, value folded
    "/news/detail.php?ID=5;/news/five/;;",  # 13 the map's earlier rule answers first: error
]
EXPECTED_PROBLEMS = [
    (3, "warning", "same as line 2: dropped"),
    (4, "error", "conflicts with line 2 for '/o-nas'"),
    (5, "error", f"conflicts with {{map}}:{CONTACTS}"),
    (6, "warning", f"already in the map at {{map}}:{DOCUMENTS}: dropped"),
    (7, "note", f"overrides {{map}}:{UPLOAD}"),
    (9, "warning", "new_url '/x/' is dropped"),
    (10, "error", "host 'evil.example' is not under hosts:"),
    (11, "error", "'evil.example', which is not in allow_targets"),
    (13, "error", f"never answers: {{map}}:{NEWS}"),
]
EXPECTED_TABLE = """\
from,to,status,note
/o-nas,/about/,301,Про нас
/upload/old.pdf,/documents/old/,301,
/новости,/news/,301,
/gone.html,,410,Удалено
/search?q=бюджет,/search/budget/,301,
"""


@pytest.fixture
def map_file(write_map: WriteMap) -> Path:
    return write_map(MAP)


@pytest.fixture
def cp1251_csv(tmp_path: Path) -> Path:
    path = tmp_path / "old-site.csv"
    path.write_bytes(("\r\n".join(ROWS) + "\r\n").encode("cp1251"))
    return path


def test_windows_1251_semicolon_csv_problems_row_by_row(map_file: Path, cp1251_csv: Path) -> None:
    plan = plan_import(load_map(map_file), str(cp1251_csv))
    assert (plan.encoding, plan.delimiter, plan.header, plan.rows_read) == (
        "windows-1251",
        ";",
        True,
        12,
    )
    got = [(p.line, p.severity) for p in plan.problems]
    assert got == [(line, severity) for line, severity, _ in EXPECTED_PROBLEMS]
    for problem, (_, _, words) in zip(plan.problems, EXPECTED_PROBLEMS, strict=True):
        assert problem.file == str(cp1251_csv)
        assert words.format(map=map_file) in problem.message
    assert plan.bad_lines == (4, 5, 10, 11, 13)
    assert table_text(plan.rows) == EXPECTED_TABLE


def test_the_reason_for_line_13_is_the_precedence(map_file: Path, cp1251_csv: Path) -> None:
    plan = plan_import(load_map(map_file), str(cp1251_csv))
    (problem,) = [p for p in plan.problems if p.line == 13]
    assert "at equal conditions the earlier rule wins" in problem.message


def test_written_table_is_included_and_answers(map_file: Path, cp1251_csv: Path) -> None:
    redirect_map = load_map(map_file)
    plan = plan_import(redirect_map, str(cp1251_csv))
    result = write_table(redirect_map, plan)
    assert (result.included, result.rows, result.map_rules, result.problems) == (True, 5, 9, ())
    table = map_file.parent / "redirects.d" / "imported.csv"
    assert table.read_text(encoding="utf-8") == EXPECTED_TABLE
    reloaded = load_map(map_file)
    answered = explain(
        reloaded, "https://www.khabarovskadm.ru/%D0%9D%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/"
    )
    assert answered.rule is not None and answered.rule.source == f"{table}:4"
    assert answered.response.location == "https://khv27.ru/news/"


def test_reimport_into_the_same_table_replaces_it(map_file: Path, cp1251_csv: Path) -> None:
    # The table's own rules are not "the existing map": importing again finds no conflicts.
    first = load_map(map_file)
    write_table(first, plan_import(first, str(cp1251_csv)))
    again = plan_import(load_map(map_file), str(cp1251_csv))
    assert [(p.line, p.severity) for p in again.problems] == [
        (line, severity) for line, severity, _ in EXPECTED_PROBLEMS
    ]


def test_a_table_the_map_does_not_include(map_file: Path, cp1251_csv: Path) -> None:
    redirect_map = load_map(map_file)
    plan = plan_import(redirect_map, str(cp1251_csv), into="elsewhere/news.csv")
    result = write_table(redirect_map, plan)
    assert (result.included, result.map_rules) == (False, None)
    assert (map_file.parent / "elsewhere" / "news.csv").read_text(
        encoding="utf-8"
    ) == EXPECTED_TABLE


@pytest.mark.parametrize(
    ("data", "encoding", "delimiter"),
    [
        pytest.param(b"\xef\xbb\xbf/a,/b\n", "utf-8 (BOM)", ",", id="utf8-bom-comma"),
        pytest.param("/жук;/шум\n".encode(), "utf-8", ";", id="utf8-semicolon"),
        pytest.param("/жук;/шум\n".encode("cp1251"), "windows-1251", ";", id="cp1251"),
        pytest.param(b"/a?x=1;y=2,/b\n/c,/d\n", "utf-8", ",", id="semicolons-inside-urls"),
        pytest.param(b"/a\t/b\t301\n", "utf-8", "\t", id="tab"),
    ],
)
def test_encoding_and_delimiter_detection(data: bytes, encoding: str, delimiter: str) -> None:
    text, found = decode_table(data)
    assert found == encoding
    assert sniff_delimiter(text) == delimiter


def test_undecodable_bytes_are_refused() -> None:
    with pytest.raises(ImportFailed, match="line 2: neither UTF-8 nor windows-1251"):
        decode_table(b"/a,/b\n/\x98,/c\n")


def test_no_header_absolute_urls_and_host_option(map_file: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(
        "https://int.khabarovskadm.ru/Events/,/en/events/\n/docs/,/documents/,302,moved\n",
        encoding="utf-8",
    )
    plan = plan_import(load_map(map_file), str(csv_file), host="www.khabarovskadm.ru")
    assert (plan.header, plan.problems) == (False, ())
    assert table_text(plan.rows) == (
        "from,to,status,note\n"
        "int.khabarovskadm.ru/events,/en/events/,301,\n"
        "khabarovskadm.ru/docs,/documents/,302,moved\n"
    )


def test_header_names_choose_the_columns(map_file: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("note,new_url,old_url\nwhy,/b/,/a/\n", encoding="utf-8")
    plan = plan_import(load_map(map_file), str(csv_file))
    assert table_text(plan.rows) == "from,to,status,note\n/a,/b/,301,why\n"


def test_progress_is_told_every_row(map_file: Path, cp1251_csv: Path) -> None:
    seen: list[int] = []
    plan_import(load_map(map_file), str(cp1251_csv), progress=seen.append)
    assert sum(seen) == 12


def test_unknown_host_option_is_refused(map_file: Path, cp1251_csv: Path) -> None:
    with pytest.raises(ImportFailed, match=r"--host 'evil\.example' is not under hosts:"):
        plan_import(load_map(map_file), str(cp1251_csv), host="evil.example")


def test_a_row_that_takes_an_example_of_another_rule(write_map: WriteMap, tmp_path: Path) -> None:
    map_file = write_map(MAP)
    text = MAP.replace(
        "include: [redirects.d/*.csv]\n",
        "  - from: /search/\n    to: /search/\n    keep_query: true\n"
        "    examples: [/search/?q=Budget]\n"
        "include: [redirects.d/*.csv]\n",
    )
    map_file.write_text(text, encoding="utf-8")
    csv_file = tmp_path / "in.csv"
    csv_file.write_text("/search/?q=budget,/budget/\n/search/?q=other,/other/\n", encoding="utf-8")
    plan = plan_import(load_map(map_file), str(csv_file))
    assert [(p.line, p.severity) for p in plan.problems] == [(1, "error"), (2, "note")]
    assert plan.problems[0].message.startswith(
        f"answers '/search/?q=Budget', an example of {map_file}:20 ('/search/')"
    )
    assert table_text(plan.rows) == "from,to,status,note\n/search?q=other,/other/,301,\n"
