"""Tests of gateway.ops.check: the loader's errors and the warnings `gateway check` adds.

Each problem kind is asserted at its exact FILE:LINE. Lines are found from marker
comments in the map text (`# <- name`), never from the checker's own output. A map
with a web archive (spec §8): each file's captures served and records skipped, by
reason, counted from the records written by ``tests.archives``; a file that does not
read is ``FILE: error: …`` and exit 1, never a traceback.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.mapfile import load_map
from gateway.ops.check import SUPERSEDED, ArchiveFile, check, covers, summary_line, to_json
from gateway.rules import parse_from
from tests.archives import OLD_SITE, Capture, archive_map, write_warc
from tests.support import BUNDLED_MAP, WriteMap

HEAD = """\
version: 1
site:
  new_site: https://khv27.ru
  allow_targets: [khv27.ru, "*.khv27.ru", www.khabarovskadm.ru]
  case_sensitive: {case}
hosts:
  khabarovskadm.ru:
    aliases: [www.khabarovskadm.ru]
  int.khabarovskadm.ru: {{}}
archive:
  notice:
    ru: "Архив."
rules:
"""

LINT_RULES = """\
  - from: /eng/<path:rest>                 # <- eng
    to: /en/{rest}
  - from: /eng/news/<int:id>               # <- shadowed
    to: /en/news/{id}/
  - from: /eng/about                       # <- redundant
    to: /en/about
  - from: /eng/contacts                    # <- not redundant: another target
    to: /en/kontakty/
  - from: /docs/<path:p>?lang=ru           # <- conditional: shadows nothing
    to: /ru/docs/{p}
  - from: /docs/<name>                     # <- not shadowed
    to: /docs/{name}
  - from: int.khabarovskadm.ru/eng/<x>     # <- host pattern: tried before every-host ones
    to: /en/{x}
  - from: /новости/<path:a>                # <- cyrillic
    status: 410
  - from: /%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/<path:b>   # <- encoded
    status: 410
  - from: /Archive/<path:a>                # <- Archive
    status: 410
  - from: /archive/<path:b>                # <- archive
    status: 410
  - from: /loop                            # <- loop
    to: https://www.khabarovskadm.ru/loop
  - from: /home
    to: /
    examples:
      - /home/index.php                    # answered by this rule
      - "https://www.khabarovskadm.ru/HOME/"
  - from: /examples                        # <- examples
    to: /x/
    examples:
      - /eng/examples
      - /nowhere
      - "http://evil.example/examples"
      - /examples/%zz
"""


def line_of(text: str, marker: str) -> int:
    """Return the 1-based line of the text that carries `# <- marker`."""
    lines = [i for i, line in enumerate(text.splitlines(), 1) if f"# <- {marker}" in line]
    assert len(lines) == 1, marker
    return lines[0]


@pytest.fixture
def lint_map(write_map: WriteMap) -> tuple[Path, str]:
    text = HEAD.format(case="false") + LINT_RULES
    return write_map(text), text


# (marker, severity, words the message must contain)
EXPECTED = [
    pytest.param("examples", "error", "'/eng/examples' is answered by", id="example-other-rule"),
    pytest.param("examples", "error", "'/nowhere' is answered by no rule", id="example-no-rule"),
    pytest.param("examples", "error", "names a host that is not served", id="example-bad-host"),
    pytest.param("examples", "error", "is malformed", id="example-malformed"),
    pytest.param("shadowed", "warning", "can never answer", id="shadowed-by-path-tail"),
    pytest.param("redundant", "warning", "redundant: the pattern at", id="exact-same-as-pattern"),
    pytest.param("encoded", "warning", "only by encoding", id="pattern-encoding-variant"),
    pytest.param("archive", "warning", "only by letter case", id="pattern-case-variant"),
    pytest.param("loop", "warning", "a legacy host", id="target-on-legacy-host"),
]


@pytest.mark.parametrize(("marker", "severity", "words"), EXPECTED)
def test_each_problem_kind_at_its_line(
    lint_map: tuple[Path, str], marker: str, severity: str, words: str
) -> None:
    path, text = lint_map
    report = check(str(path))
    found = [p for p in report.problems if words in p.message]
    assert len(found) == 1, [str(p) for p in report.problems]
    assert (found[0].file, found[0].line, found[0].severity) == (
        str(path),
        line_of(text, marker),
        severity,
    )
    assert str(found[0]).startswith(f"{path}:{line_of(text, marker)}: {severity}: ")


def test_nothing_else_is_reported(lint_map: tuple[Path, str]) -> None:
    # The conditional pattern, the host pattern, /eng/contacts and /home raise nothing;
    # the encoding variant is one warning, not also a shadowing one.
    path, text = lint_map
    report = check(str(path))
    assert (report.errors, report.warnings) == (4, 5)
    quiet = ("conditional", "not shadowed", "host pattern", "not redundant", "cyrillic", "eng")
    assert not {p.line for p in report.problems} & {line_of(text, m) for m in quiet}
    assert report.failed() and report.failed(strict=True)


def test_summary_counts_rules_by_kind_hosts_errors_warnings(lint_map: tuple[Path, str]) -> None:
    path, _ = lint_map
    line = summary_line(check(str(path)))
    # 14 rules: exact /eng/about /eng/contacts /loop /home /examples; patterns eng, shadowed,
    # docs x2, host eng; 410: the four archive patterns.
    assert line == (
        f"{path}: 14 rules (5 exact, 0 query, 5 pattern, 4 gone), 2 hosts (+1 alias):"
        " 4 errors, 5 warnings"
    )


def test_case_variants_of_exact_rules_in_a_case_sensitive_map(write_map: WriteMap) -> None:
    text = HEAD.format(case="true") + (
        "  - from: /About              # <- About\n    to: /a\n"
        "  - from: /about              # <- about\n    to: /b\n"
    )
    path = write_map(text)
    report = check(str(path))
    assert [(p.line, p.severity) for p in report.problems] == [(line_of(text, "about"), "warning")]
    assert "only by letter case" in report.problems[0].message
    assert not report.failed() and report.failed(strict=True)


LOADER_ERRORS = [
    pytest.param(
        "  - from: /a\n    status: 410\n    see: https://evil.example/   # <- here\n",
        "not in allow_targets",
        id="see-off-allowed-hosts",
    ),
    pytest.param(
        "  - from: /a/\n    to: /x\n  - from: /A/index.php   # <- here\n    to: /y\n",
        "duplicate of the rule at",
        id="duplicate-exact-rule",
    ),
    pytest.param(
        "  - from: /a\n    to: /x/{nope}   # <- here\n",
        "which 'from' does not capture",
        id="unbound-insert",
    ),
]


@pytest.mark.parametrize(("rules", "words"), LOADER_ERRORS)
def test_loader_errors_are_reported_at_their_line(
    write_map: WriteMap, rules: str, words: str
) -> None:
    text = HEAD.format(case="false") + rules
    path = write_map(text)
    report = check(str(path))
    assert report.summary is None
    assert [(p.line, p.severity) for p in report.problems] == [(line_of(text, "here"), "error")]
    assert words in report.problems[0].message
    assert summary_line(report) == f"{path}: does not load: 1 error, 0 warnings"
    assert to_json(report)["ok"] is False


def test_the_bundled_map_is_clean() -> None:
    report = check(str(BUNDLED_MAP))
    assert report.problems == ()
    assert report.summary is not None and report.summary.rules == len(load_map(BUNDLED_MAP).rules)


def _steps(text: str) -> tuple[object, ...]:
    parts = parse_from(
        text, case_sensitive=False, is_ignored=lambda n: False, canonical_host=lambda h: h
    )
    assert parts.steps is not None
    return parts.steps


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        pytest.param("/a/<path:p>", "/a/b/<x>", True, id="tail-covers-deeper"),
        pytest.param("/a/<path:p>", "/a/<path:q>", True, id="tail-covers-tail"),
        pytest.param("/a/<x>", "/a/<int:y>", True, id="any-segment-covers-int"),
        pytest.param("/a/<x>", "/a/<path:q>", False, id="segment-does-not-cover-tail"),
        pytest.param("/a/<int:x>", "/a/<y>", False, id="int-does-not-cover-any"),
        pytest.param("/a/b<path:p>", "/a/bc/<x>", False, id="tail-with-head-not-judged"),
        pytest.param("/a/<x>/c", "/a/<y>", False, id="longer-does-not-cover-shorter"),
        pytest.param("/<x>/c/<path:p>", "/b/c/<int:i>", True, id="literal-under-any-segment"),
    ],
)
def test_covers_is_sound(earlier: str, later: str, expected: bool) -> None:
    assert covers(_steps(earlier), _steps(later)) is expected  # type: ignore[arg-type]


# --- web archives (spec §8) -----------------------------------------------------------------

# What OLD_SITE's WARC holds besides its 9 served captures (see tests/archives.py): the
# warcinfo record write_warc puts first, the DNS resource record, the captured 404, the
# page on a host the map does not serve, and /city/history/'s response, which its later
# revisit replaces.
OLD_SITE_SKIPPED = {
    "warcinfo record (not a response)": 1,
    "resource record (not a response)": 1,
    "HTTP status 404": 1,
    "host not served by the map": 1,
    SUPERSEDED: 1,
}

LATER = [
    # A newer capture of a page in site.warc.gz: served from here, superseded there.
    Capture("http://khabarovskadm.ru/en/news/", b"<p>newer</p>", date="2022-01-01T00:00:00Z"),
    Capture("http://khabarovskadm.ru/fresh/", b"<p>only here</p>"),
    # A revisit of a payload in no file of the map.
    Capture(
        "http://khabarovskadm.ru/lost/",
        kind="revisit",
        refers=("http://khabarovskadm.ru/nowhere/", "2020-01-01T00:00:00Z"),
    ),
    Capture("http://khabarovskadm.ru/moved/", status="302 Found", headers=()),  # no Location
]


@pytest.fixture
def two_archives(tmp_path: Path) -> Path:
    write_warc(tmp_path / "site.warc.gz", OLD_SITE)
    write_warc(tmp_path / "later.warc", LATER, gzip=False)
    return archive_map(tmp_path, ["site.warc.gz", "later.warc"], ["{from: /ruled/, to: /new/}"])


def test_each_archive_file_counts_captures_served_and_records_skipped_by_reason(
    two_archives: Path,
) -> None:
    report = check(str(two_archives))
    assert report.problems == () and not report.failed()
    folder = two_archives.parent
    site, later = report.archives
    assert site == ArchiveFile(str(folder / "site.warc.gz"), 8, {**OLD_SITE_SKIPPED, SUPERSEDED: 2})
    assert later == ArchiveFile(
        str(folder / "later.warc"),
        2,
        {
            "HTTP status 302": 1,
            "revisit of a payload not in the archive": 1,
            "warcinfo record (not a response)": 1,
        },
    )
    # Every record written is served or skipped, once: OLD_SITE and LATER, a warcinfo each.
    records = sum(a.captures + a.records_skipped for a in report.archives)
    assert records == len(OLD_SITE) + 1 + len(LATER) + 1
    assert sum(a.captures for a in report.archives) == len(load_map(two_archives).captures)


def test_check_prints_each_archive_file_then_the_summary(two_archives: Path) -> None:
    result = CliRunner().invoke(main, ["check", "--map", str(two_archives)])
    assert result.exit_code == 0, result.output
    folder = two_archives.parent
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{folder / 'site.warc.gz'}: 8 captures served, 6 records skipped (")
    assert "2 superseded by a later capture of the same URL" in lines[0]
    assert "1 HTTP status 404" in lines[0] and "1 host not served by the map" in lines[0]
    assert lines[1] == (
        f"{folder / 'later.warc'}: 2 captures served, 3 records skipped (1 HTTP status 302,"
        " 1 revisit of a payload not in the archive, 1 warcinfo record (not a response))"
    )
    assert lines[2] == (
        f"{two_archives}: 1 rules (1 exact, 0 query, 0 pattern, 0 gone), 3 hosts (+1 alias),"
        " 10 captures from 2 archive files: 0 errors, 0 warnings"
    )
    assert len(lines) == 3


def test_check_json_lists_the_archive_files(two_archives: Path) -> None:
    result = CliRunner().invoke(main, ["check", "--map", str(two_archives), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and data["loaded"] is True
    site = data["archives"][0]
    assert site["file"] == str(two_archives.parent / "site.warc.gz")
    assert (site["captures"], site["skipped"]) == (8, 6)
    assert site["skipped_by_reason"] == {**OLD_SITE_SKIPPED, SUPERSEDED: 2}
    assert [a["captures"] for a in data["archives"]] == [8, 2]


def test_a_map_without_archive_lists_none(lint_map: tuple[Path, str]) -> None:
    report = check(str(lint_map[0]))
    assert report.archives == () and to_json(report)["archives"] == []
    assert "captures" not in summary_line(report)


def _zip_not_wacz(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "not a web archive")


def _cut(path: Path) -> None:
    data = write_warc(path, OLD_SITE).read_bytes()
    path.write_bytes(data[:-40])


BROKEN: list[tuple[str, str, Callable[[Path], object], str]] = [
    ("empty", "bad.warc.gz", lambda p: p.write_bytes(b""), ": error: the file is empty"),
    ("cut-gzip", "bad.warc.gz", _cut, ": error: the record at byte "),
    ("zip-not-wacz", "bad.wacz", _zip_not_wacz, ": error: not a WACZ"),
    ("not-warc", "bad.warc", lambda p: p.write_text("<html>hello</html>\n"), ": error: not a WARC"),
    ("missing", "bad.warc", lambda p: None, ": error: cannot read"),
]


@pytest.mark.parametrize(
    ("name", "build", "words"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_a_broken_archive_file_is_an_error_naming_it_and_the_others_still_count(
    tmp_path: Path, name: str, build: Callable[[Path], object], words: str
) -> None:
    write_warc(tmp_path / "site.warc.gz", OLD_SITE)
    build(tmp_path / name)
    map_path = archive_map(tmp_path, ["site.warc.gz", name])
    result = CliRunner().invoke(main, ["check", "--map", str(map_path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    shown = str(tmp_path / name)
    assert lines[0].startswith(shown) and words in lines[0], lines
    assert re.fullmatch(rf"{re.escape(shown)}(:\d+)?: error: \S.*", lines[0]), lines[0]
    assert lines[1].startswith(f"{tmp_path / 'site.warc.gz'}: 9 captures served, 5 records")
    assert lines[2].startswith(f"{map_path}: does not load: ")
    assert lines[2].endswith(" 9 captures from 2 archive files: 1 error, 0 warnings")
    data = json.loads(CliRunner().invoke(main, ["check", "--map", str(map_path), "--json"]).output)
    assert (data["ok"], data["loaded"], data["errors"]) == (False, False, 1)
    assert data["problems"][0]["file"] == shown and data["problems"][0]["severity"] == "error"
    assert [a["file"] for a in data["archives"]] == [str(tmp_path / "site.warc.gz")]


def test_a_large_valid_archive_is_counted_whole(tmp_path: Path) -> None:
    # 5,000 gzipped records cross many of the reader's 16 KiB read blocks: a record whose
    # last bytes end a block (its gzip trailer not yet read) is no cut file.
    from bench.archive import write_pages

    write_pages(tmp_path / "big.warc.gz", 5000)
    report = check(str(archive_map(tmp_path, ["big.warc.gz"])))
    assert report.problems == ()
    assert report.archives == (
        ArchiveFile(str(tmp_path / "big.warc.gz"), 5000, {"warcinfo record (not a response)": 1}),
    )
