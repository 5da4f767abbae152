"""The compiled exact-rule table (gateway.table) answers every request as the in-memory map does.

A differential test: the same map decided through its ``Matcher`` and through a
``TableMatcher`` over the table built from it, on many URLs (every rule's own
URL, near misses, other hosts, repeated and extra parameters), for maps with
every rule kind: exact, literal and capture query conditions, a path indexed
by its literal conditions, patterns, host-scoped rules, 410 with ``see``,
keep_query, long and Cyrillic paths; case-insensitive and case-sensitive; and
a ``bench/genmap.py`` map with its URL lists.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway import table
from gateway.decide import decide
from gateway.mapfile import RedirectMap, load_map
from tests.test_matcher import MAP as MATCHER_MAP

HOSTS = ("khabarovskadm.ru", "www.khabarovskadm.ru", "int.khabarovskadm.ru", "other.example")
LONG = "/" + "/".join(f"segment-{i:03d}" for i in range(60))

EXTRA = f"""
  # a path indexed by its literal conditions, with capture and plain rules beside them
  - {{from: "/idx.php?ID=<int:id>", to: "/idx/int/{{id}}"}}
  - {{from: /idx.php, to: /idx/none}}
  - {{from: "/idx.php?ID=7&lang=en", to: /idx/7/en}}
  - {{from: "int.khabarovskadm.ru/idx.php?ID=3", to: /idx/int-host/3}}
  - {{from: "/idx.php?ID=3", status: 410, see: /idx/see/3}}
  - {{from: "/idx.php?lang=ru", to: /idx/ru}}
  - {{from: "/idx.php?ID=Abc", to: /idx/abc, keep_query: true}}
  - {{from: "/новости/статья?раздел=Город", to: /news/city, note: кириллица}}
  - {{from: "{LONG}", to: /long}}
  - {{from: "{LONG}?x=1", to: /long/x}}
  - {{from: "int.khabarovskadm.ru/gone-here", status: 410}}
  - {{from: "/Case/Path", to: /case, examples: [/Case/Path, /case/path]}}
"""


def _map_text(case_sensitive: bool) -> str:
    literal_rules = "".join(
        f'  - {{from: "/idx.php?ID={n}", to: /idx/{n}}}\n' for n in range(1, 40) if n != 3
    )
    extra = EXTRA.lstrip("\n").replace(
        "  - {from: /idx.php, to: /idx/none}\n",
        literal_rules + "  - {from: /idx.php, to: /idx/none}\n",
    )
    text = textwrap.dedent(MATCHER_MAP).lstrip("\n").rstrip("\n") + "\n" + extra
    if case_sensitive:
        text = text.replace("site:\n", "site:\n  case_sensitive: true\n", 1)
    return text


def _urls(redirect_map: RedirectMap, rng: random.Random) -> list[tuple[str, str]]:
    """Return (host, target) pairs: each rule's own URL and its variations."""
    targets: set[str] = {"/", "/nothing", "/idx.php", "/idx.php?id=3", "/idx.php?ID=3&ID=4"}
    for rule in redirect_map.rules:
        written = rule.from_text
        if not written.startswith("/"):
            written = "/" + written.partition("/")[2]
        for text in (written, *rule.examples):
            for filled in (
                text.replace("<int:id>", "42").replace("<int:k>", "7"),
                text.replace("<int:id>", "x"),
            ):
                for name in ("slug", "x", "rest", "q", "name", "a", "b", "m", "y"):
                    filled = filled.replace(f"<{name}>", "ab").replace(f"<path:{name}>", "a/b")
                filled = filled.replace("<int:y>", "2020").replace("<int:m>", "05")
                targets |= {filled, filled.upper(), filled.lower(), filled + "x", filled + "/"}
                joiner = "&" if "?" in filled else "?"
                targets |= {f"{filled}{joiner}lang=en", f"{filled}{joiner}utm_source=z"}
                targets.add(f"{filled}{joiner}ID={rng.randint(0, 45)}")
    return [(host, t) for t in sorted(targets) for host in HOSTS]


def _compare(redirect_map: RedirectMap, tmp_path: Path, urls: list[tuple[str, str]]) -> int:
    path = table.ensure_table(redirect_map, tmp_path)
    compiled = table.open_table(path, version=redirect_map.version)
    wrong = [
        (host, target, expected, got)
        for host, target in urls
        if (expected := decide(redirect_map, "GET", host, target))
        != (got := decide(compiled, "GET", host, target))
    ]
    assert not wrong, wrong[:5]
    # The map stands alone: every section, every rule, the counts, from the table only.
    for name in _SECTIONS:
        assert getattr(compiled, name) == getattr(redirect_map, name), name
    assert len(compiled.rules) == len(redirect_map.rules)
    assert sorted(r.source for r in compiled.rules) == sorted(r.source for r in redirect_map.rules)
    assert compiled.rules_by_kind == redirect_map.rules_by_kind
    assert sorted(r.source for r in compiled.matcher.exact_rules()) == sorted(
        r.source for r in redirect_map.matcher.exact_rules()
    )
    assert isinstance(compiled.matcher, table.TableMatcher)
    return len(urls)


_SECTIONS = (
    "path",
    "site",
    "hosts",
    "archive",
    "files",
    "version",
    "include_patterns",
    "archive_files",
    "archive_patterns",
    "archive_names",
    "files_version",
)


@pytest.mark.parametrize("case_sensitive", [False, True], ids=["folded", "case-sensitive"])
def test_the_table_answers_as_the_in_memory_map(tmp_path: Path, case_sensitive: bool) -> None:
    source = tmp_path / "map" / "redirects.yaml"
    source.parent.mkdir()
    source.write_text(_map_text(case_sensitive), encoding="utf-8")
    redirect_map = load_map(source)
    kinds = {r.report_kind for r in redirect_map.rules}
    assert kinds == {"exact", "query", "pattern", "gone"}
    assert any(r.host for r in redirect_map.rules)
    urls = _urls(redirect_map, random.Random(14))
    assert _compare(redirect_map, tmp_path / "state", urls) > 1000


def test_the_table_answers_as_the_in_memory_map_on_a_generated_map(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run(
        [
            sys.executable,
            "bench/genmap.py",
            str(out),
            "--exact",
            "5000",
            "--patterns",
            "200",
            "--urls",
            "1500",
        ],
        check=True,
        capture_output=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    redirect_map = load_map(out / "redirects.yaml")
    urls: list[tuple[str, str]] = []
    for name in ("urls-exact.tsv", "urls-pattern.tsv", "urls-miss.tsv"):
        for line in (out / name).read_text(encoding="utf-8").splitlines():
            host, target = line.split("\t")[:2]
            urls += [(host, target), (host, target + "&x=1" if "?" in target else target + "?x=1")]
    _compare(redirect_map, tmp_path / "state", urls)


def test_an_unchanged_map_is_not_compiled_again_and_a_stale_table_is_rebuilt(
    tmp_path: Path,
) -> None:
    source = tmp_path / "redirects.yaml"
    source.write_text(_map_text(False), encoding="utf-8")
    redirect_map = load_map(source)
    path = table.ensure_table(redirect_map, tmp_path / "state")
    built = path.stat().st_mtime_ns
    os.utime(path, ns=(built - 10**9, built - 10**9))
    assert table.ensure_table(redirect_map, tmp_path / "state") == path
    assert path.stat().st_mtime_ns == built - 10**9  # opened, not written again
    with pytest.raises(table.TableError):
        table.open_table(path, version="another")
    # A table of another version under this name (or a torn one) is rebuilt.
    # Renamed over it, as every table is written: one changed in place under a reader
    # that has it mapped is what no store read by mmap survives (SIGBUS).
    (tmp_path / "junk").write_bytes(b"not a table")
    os.replace(tmp_path / "junk", path)
    assert table.ensure_table(redirect_map, tmp_path / "state") == path
    reopened = table.open_table(path, version=redirect_map.version)
    assert isinstance(reopened.matcher, table.TableMatcher)
    assert [p.name for p in (tmp_path / "state").iterdir()] == [path.name]  # no temp left


def test_a_failed_build_leaves_the_served_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "redirects.yaml"
    source.write_text(_map_text(False), encoding="utf-8")
    redirect_map = load_map(source)
    path = table.ensure_table(redirect_map, tmp_path / "state")
    before = path.read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(table.os, "replace", broken)
    with pytest.raises(table.TableError):
        table.build_table(redirect_map, path)
    assert path.read_bytes() == before
    assert [p.name for p in (tmp_path / "state").iterdir()] == [path.name]


def test_a_compiled_map_serves_its_captures_from_the_table(tmp_path: Path) -> None:
    """Spec §8 from the table: the same captures, the same answers, no index in the worker."""
    from gateway.archive.table import TableCaptures
    from tests.archives import OLD_SITE, archive_map, write_warc

    write_warc(tmp_path / "site.warc.gz", OLD_SITE)
    source = archive_map(tmp_path, ["site.warc.gz"], ["{from: /ruled/, to: /new/}"])
    redirect_map = load_map(source, index_dir=str(tmp_path / "index"))
    assert len(redirect_map.captures) > 5
    path = table.ensure_table(redirect_map, tmp_path / "state")
    compiled = table.open_table(path, version=redirect_map.version)
    assert isinstance(compiled.captures.captures, TableCaptures)
    assert dict(compiled.captures.captures) == dict(redirect_map.captures.captures)
    assert list(compiled.captures.captures.values()) == [
        compiled.captures.captures[k] for k in compiled.captures.captures
    ]
    assert len(compiled.captures) == len(redirect_map.captures)
    urls = [c.url for c in redirect_map.captures.captures.values()]
    urls += [u + "?x=1" for u in urls] + ["http://khabarovskadm.ru/nothing/", PAGE_OUTSIDE]
    for url in urls:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.hostname or ""
        assert decide(compiled, "GET", host, target) == decide(redirect_map, "GET", host, target), (
            url
        )
    # Exact rules are not confused with the captures stored beside them.
    assert sorted(r.source for r in compiled.rules) == sorted(r.source for r in redirect_map.rules)


PAGE_OUTSIDE = "http://elsewhere.example/page/"
