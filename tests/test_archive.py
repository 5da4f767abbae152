"""The map's web archives (spec §8): reading WARC and WACZ files, the index, its cache, reload.

Archives are written in each test with warcio's WARCWriter (tests/archives.py), so
every case is a real WARC record; broken files are cut or edited from good ones.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from gateway.archive import index as index_module
from gateway.canonical import parse_request
from gateway.mapfile import MapError, RedirectMap, load_map
from gateway.maps import LastGood, MapHolder
from tests.archives import OLD_SITE, PDF, Capture, archive_map, write_wacz, write_warc


@pytest.fixture
def index_dir(tmp_path: Path) -> str:
    return str(tmp_path / "index")


@pytest.fixture
def site(tmp_path: Path, index_dir: str) -> RedirectMap:
    (tmp_path / "archive").mkdir()
    write_warc(tmp_path / "archive" / "site.warc.gz", OLD_SITE)
    return load_map(archive_map(tmp_path, ["archive/*.warc.gz"]), index_dir=index_dir)


def lookup(redirect_map: RedirectMap, host: str, target: str) -> str | None:
    """Return 'URL STATUS KIND' of the capture a request finds, or None."""
    canonical = redirect_map.host_of(host)
    assert canonical is not None
    site = redirect_map.site
    url = parse_request(
        canonical, target, case_sensitive=site.case_sensitive, is_ignored=site.is_ignored
    )
    found = redirect_map.captures.lookup(url, site.case_sensitive)
    return None if found is None else f"{found.url} {found.status} {found.kind}"


NEWS = "http://khabarovskadm.ru/press-center/news/detail.php?ID=7"
HISTORY = "http://khabarovskadm.ru/city/history/"
DOCS = "http://khabarovskadm.ru/%D0%B4%D0%BE%D0%BA%D1%83%D0%BC%D0%B5%D0%BD%D1%82%D1%8B/"
SEARCH = "http://khabarovskadm.ru/search/?q=1&page=2"

LOOKUPS = [
    ("news-exact", "khabarovskadm.ru", "/press-center/news/detail.php?ID=7", f"{NEWS} 200 response"),  # noqa: E501
    ("case-folded", "khabarovskadm.ru", "/Press-Center/News/Detail.php?id=7", f"{NEWS} 200 response"),  # noqa: E501
    ("alias-host", "www.khabarovskadm.ru", "/press-center/news/detail.php?ID=7", f"{NEWS} 200 response"),  # noqa: E501
    ("ignored-param", "khabarovskadm.ru", "/press-center/news/detail.php?ID=7&utm_source=x", f"{NEWS} 200 response"),  # noqa: E501
    ("query-set-differs", "khabarovskadm.ru", "/press-center/news/detail.php?ID=7&X=1", None),
    ("query-missing", "khabarovskadm.ru", "/press-center/news/detail.php", None),
    ("query-order", "khabarovskadm.ru", "/search/?page=2&q=1", f"{SEARCH} 200 response"),
    ("index-file", "khabarovskadm.ru", "/city/history/index.php", f"{HISTORY} 200 revisit"),
    ("revisit-latest", "khabarovskadm.ru", "/city/history", f"{HISTORY} 200 revisit"),
    ("pdf", "khabarovskadm.ru", "/docs/report.pdf", "http://khabarovskadm.ru/docs/report.pdf 200 response"),  # noqa: E501
    ("captured-301", "khabarovskadm.ru", "/old-page/", "http://khabarovskadm.ru/old-page/ 301 response"),  # noqa: E501
    ("captured-404-not-served", "khabarovskadm.ru", "/missing/", None),
    ("second-host", "int.khabarovskadm.ru", "/about/", "http://int.khabarovskadm.ru/about/ 200 response"),  # noqa: E501
    ("second-host-other-path", "int.khabarovskadm.ru", "/city/history/", None),
    ("cyrillic-utf8", "khabarovskadm.ru", "/%D0%94%D0%BE%D0%BA%D1%83%D0%BC%D0%B5%D0%BD%D1%82%D1%8B", f"{DOCS} 200 response"),  # noqa: E501
    ("cyrillic-cp1251", "khabarovskadm.ru", "/%E4%EE%EA%F3%EC%E5%ED%F2%FB/", f"{DOCS} 200 response"),  # noqa: E501
    ("not-captured", "khabarovskadm.ru", "/nothing/", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("host", "target", "expected"), [c[1:] for c in LOOKUPS], ids=[c[0] for c in LOOKUPS]
)
def test_a_request_finds_the_capture_of_its_canonical_url(
    site: RedirectMap, host: str, target: str, expected: str | None
) -> None:
    assert lookup(site, host, target) == expected


def test_skipped_records_are_counted_by_reason(site: RedirectMap) -> None:
    (file_index,) = site.captures.files
    assert file_index.skipped == {
        "warcinfo record (not a response)": 1,
        "resource record (not a response)": 1,
        "HTTP status 404": 1,
        "host not served by the map": 1,
    }
    # news, history (its revisit wins), nocharset, en, pdf, 301, int., documents, search
    assert len(site.captures) == 9
    assert site.captures.served_by(file_index.file) == 9


def test_the_revisit_is_served_with_the_payload_it_repeats(site: RedirectMap) -> None:
    found = site.captures.captures["khabarovskadm.ru/city/history"]
    original = next(r for _, r in site.captures.files[0].records if r.url == HISTORY)
    assert (found.kind, found.date, found.offset, found.length) == (
        "revisit",
        "2021-02-25T10:00:00Z",
        original.offset,
        original.length,
    )
    assert found.payload_length == original.payload_length > 0


def page(url: str, date: str, text: str) -> Capture:
    return Capture(url, f"<p>{text}</p>".encode(), date=date)


LATEST = [
    # (first file, second file, the text served)
    ("later-date-wins", [("2021-01-01T00:00:00Z", "old"), ("2021-02-01T00:00:00Z", "new")], [], "new"),  # noqa: E501
    ("later-date-first", [("2021-02-01T00:00:00Z", "new"), ("2021-01-01T00:00:00Z", "old")], [], "new"),  # noqa: E501
    ("tie-later-record", [("2021-01-01T00:00:00Z", "a"), ("2021-01-01T00:00:00Z", "b")], [], "b"),
    ("tie-later-file", [("2021-01-01T00:00:00Z", "a")], [("2021-01-01T00:00:00Z", "b")], "b"),
    ("earlier-in-later-file", [("2021-02-01T00:00:00Z", "a")], [("2021-01-01T00:00:00Z", "b")], "a"),  # noqa: E501
    ("fraction-of-second", [("2021-01-01T00:00:00.5Z", "a")], [("2021-01-01T00:00:00Z", "b")], "a"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("first", "second", "served"), [c[1:] for c in LATEST], ids=[c[0] for c in LATEST]
)
def test_the_latest_capture_wins_and_ties_go_to_the_later_record(
    tmp_path: Path,
    index_dir: str,
    first: list[tuple[str, str]],
    second: list[tuple[str, str]],
    served: str,
) -> None:
    url = "http://khabarovskadm.ru/page/"
    write_warc(tmp_path / "a.warc", [page(url, d, t) for d, t in first], gzip=False)
    write_warc(tmp_path / "b.warc", [page(url, d, t) for d, t in second], gzip=False)
    redirect_map = load_map(archive_map(tmp_path, ["a.warc", "b.warc"]), index_dir=index_dir)
    found = redirect_map.captures.captures["khabarovskadm.ru/page"]
    with open(found.path, "rb") as f:
        f.seek(found.offset)
        record = f.read(found.length)
    assert f"<p>{served}</p>".encode() in record


def test_a_wacz_is_read_from_its_archive_folder(tmp_path: Path, index_dir: str) -> None:
    warc = write_warc(tmp_path / "data.warc.gz", OLD_SITE).read_bytes()
    write_wacz(tmp_path / "site.wacz", [("data.warc.gz", warc)])
    redirect_map = load_map(archive_map(tmp_path, ["*.wacz"]), index_dir=index_dir)
    assert len(redirect_map.captures) == 9
    found = redirect_map.captures.captures["khabarovskadm.ru/docs/report.pdf"]
    assert found.file.endswith("site.wacz") and found.payload_length == len(PDF)
    with open(tmp_path / "site.wacz", "rb") as f:  # the offset is in the .wacz itself
        f.seek(found.offset)
        assert gzip.decompress(f.read(found.length)).startswith(b"WARC/1.")


def test_a_glob_that_matches_nothing_is_not_an_error(tmp_path: Path, index_dir: str) -> None:
    redirect_map = load_map(archive_map(tmp_path, ["archive/*.warc.gz"]), index_dir=index_dir)
    assert len(redirect_map.captures) == 0 and redirect_map.archive_files == ()


def good_warc(tmp_path: Path) -> bytes:
    return write_warc(tmp_path / "good.warc", OLD_SITE[:3], gzip=False).read_bytes()


def good_gz(tmp_path: Path) -> bytes:
    return write_warc(tmp_path / "good.warc.gz", OLD_SITE[:3]).read_bytes()


def lying_length(warc: bytes) -> bytes:
    """Return the WARC with its first response's Content-Length 10 bytes short."""
    start = warc.index(b"WARC-Type: response")
    found = re.compile(rb"Content-Length: (\d+)").search(warc, start)
    assert found is not None
    shorter = str(int(found.group(1)) - 10).encode()
    return warc[: found.start(1)] + shorter + warc[found.end(1) :]


def not_wacz(tmp_path: Path) -> bytes:
    write_wacz(tmp_path / "x.wacz", [])
    return (tmp_path / "x.wacz").read_bytes()


BROKEN = [
    # (id, file name, bytes from a builder, the error after the file's name)
    ("truncated-gzip", "bad.warc.gz", lambda p: good_gz(p)[:-40], r"bad\.warc\.gz:\d+: error: the record at byte \d+: the file ends inside"),  # noqa: E501
    ("cut-warc", "bad.warc", lambda p: good_warc(p)[:-40], r"bad\.warc:\d+: error: the record at byte \d+: the file ends inside"),  # noqa: E501
    ("content-length-lies", "bad.warc", lambda p: lying_length(good_warc(p)), r"bad\.warc:\d+: error: the record at byte \d+: no blank line after the record"),  # noqa: E501
    ("non-utf8-header", "bad.warc", lambda p: good_warc(p).replace(b"WARC-Target-URI: http://khabarovskadm.ru/city/history/", b"WARC-Target-URI: http://khabarovskadm.ru/\xcf\xf0/", 1), r"bad\.warc:\d+: error: the record at byte \d+: a WARC header that is not UTF-8"),  # noqa: E501
    ("zip-not-wacz", "bad.wacz", not_wacz, r"bad\.wacz: error: not a WACZ: the zip holds no archive/"),  # noqa: E501
    ("not-a-zip", "bad.wacz", lambda p: b"PK but not really a zip", r"bad\.wacz: error: not a WACZ"),  # noqa: E501
    ("zero-bytes", "bad.warc.gz", lambda p: b"", r"bad\.warc\.gz: error: the file is empty"),
    ("not-a-warc", "bad.warc", lambda p: b"<html>a page, not a WARC</html>\n" * 4, r"bad\.warc: error: not a WARC file"),  # noqa: E501
    ("garbage-gzip", "bad.warc.gz", lambda p: gzip.compress(b"hello\r\n" * 100), r"bad\.warc\.gz: error: not a WARC file"),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "build", "error"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN]
)
def test_a_broken_archive_is_a_load_error_naming_the_file(
    tmp_path: Path, index_dir: str, name: str, build: object, error: str
) -> None:
    assert callable(build)
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / name).write_bytes(build(tmp_path))
    with pytest.raises(MapError) as caught:
        load_map(archive_map(tmp_path, [f"archive/{name}"]), index_dir=index_dir)
    (problem,) = caught.value.problems
    assert str(problem).startswith(str(tmp_path / "archive") + "/"), problem
    assert re.search(error, str(problem)), str(problem)
    assert "Traceback" not in str(problem)


def test_a_listed_file_that_is_missing_is_a_load_error(tmp_path: Path, index_dir: str) -> None:
    with pytest.raises(MapError) as caught:
        load_map(archive_map(tmp_path, ["archive/site.warc.gz"]), index_dir=index_dir)
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}/archive/site.warc.gz: error: cannot read: No such file or directory"
    ]


def test_a_file_that_changes_while_it_is_read_is_a_load_error(
    tmp_path: Path, index_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = write_warc(tmp_path / "site.warc", OLD_SITE, gzip=False)
    real = index_module.read_archive

    def read_then_rewrite(path: str, shown: str, skipped: object) -> object:
        records = real(path, shown, skipped)  # type: ignore[arg-type]
        with open(archive, "ab") as f:
            f.write(b"\r\n")
        return records

    monkeypatch.setattr(index_module, "read_archive", read_then_rewrite)
    with pytest.raises(MapError, match=r"site\.warc: error: the file changed while"):
        load_map(archive_map(tmp_path, ["site.warc"]), index_dir=index_dir)


def test_an_archive_that_is_no_web_archive_by_name_is_a_map_error(
    tmp_path: Path, index_dir: str
) -> None:
    with pytest.raises(MapError, match=r"redirects\.yaml:\d+: error: archive\.warc 'a\.zip'"):
        load_map(archive_map(tmp_path, ["a.zip"]), index_dir=index_dir)


def test_the_index_is_kept_as_cdxj_and_reused_while_the_file_is_unchanged(
    tmp_path: Path, index_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = write_warc(tmp_path / "site.warc.gz", OLD_SITE)
    map_path = archive_map(tmp_path, ["site.warc.gz"])
    first = load_map(map_path, index_dir=index_dir)
    (cached,) = Path(index_dir).glob("*.cdxj")
    lines = cached.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("!meta {") and len(lines) == 1 + 10  # 9 served + a revisit
    assert any(
        line.startswith("khabarovskadm.ru/docs/report.pdf 20210220100000 {") for line in lines
    )
    calls: list[str] = []
    real = index_module.read_archive
    monkeypatch.setattr(index_module, "read_archive", lambda *a: calls.append(a[0]) or real(*a))
    again = load_map(map_path, index_dir=index_dir)
    assert calls == [] and again.captures.captures == first.captures.captures
    time.sleep(0.01)
    write_warc(archive, OLD_SITE[:2])  # replaced: rebuilt, the old index dropped
    replaced = load_map(map_path, index_dir=index_dir)
    assert calls == [str(archive)] and len(replaced.captures) == 2
    assert len(list(Path(index_dir).glob("*.cdxj"))) == 1
    assert replaced.version != first.version and replaced.files_version == first.files_version


def test_a_corrupt_cached_index_is_rebuilt(tmp_path: Path, index_dir: str) -> None:
    write_warc(tmp_path / "site.warc.gz", OLD_SITE)
    map_path = archive_map(tmp_path, ["site.warc.gz"])
    load_map(map_path, index_dir=index_dir)
    (cached,) = Path(index_dir).glob("*.cdxj")
    cached.write_text("!meta {not json\n", encoding="utf-8")
    assert len(load_map(map_path, index_dir=index_dir).captures) == 9


def test_new_replaced_and_removed_archive_files_are_map_changes(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    write_warc(tmp_path / "archive" / "a.warc.gz", OLD_SITE[:1])
    holder = MapHolder(
        archive_map(tmp_path, ["archive/*.warc.gz"]), reload_interval=0, state_dir=tmp_path / "s"
    )
    assert len(current(holder).captures) == 1
    steps = [
        ("added", lambda: write_warc(tmp_path / "archive" / "b.warc.gz", OLD_SITE[1:3]), 3),
        ("replaced", lambda: write_warc(tmp_path / "archive" / "a.warc.gz", OLD_SITE[:0]), 2),
        ("removed", lambda: os.unlink(tmp_path / "archive" / "b.warc.gz"), 0),
    ]
    for what, change, count in steps:
        time.sleep(0.02)
        change()
        assert wait_for(holder), what
        assert len(current(holder).captures) == count, what


def test_a_broken_archive_never_replaces_the_served_map(tmp_path: Path) -> None:
    write_warc(tmp_path / "a.warc.gz", OLD_SITE[:1])
    holder = MapHolder(archive_map(tmp_path, ["*.warc.gz"]), reload_interval=0)
    served = current(holder)
    (tmp_path / "b.warc.gz").write_bytes(b"")
    assert not wait_for(holder, tries=3)
    assert current(holder) is served
    assert (
        holder.last_error
        == f"{tmp_path}/b.warc.gz: error: the file is empty (0 bytes): not a web archive"
    )


def test_the_last_known_good_copy_refers_to_the_archive_files(tmp_path: Path) -> None:
    home = tmp_path / "map"
    home.mkdir()
    write_warc(home / "a.warc.gz", OLD_SITE[:1])
    write_warc(home / "b.warc.gz", OLD_SITE[1:3])
    map_path = archive_map(home, ["*.warc.gz"])
    state = tmp_path / "state"
    MapHolder(map_path, reload_interval=0, state_dir=state)
    copied = [p.name for p in state.rglob("*") if p.is_file()]
    assert not [name for name in copied if name.endswith(".warc.gz")], copied
    map_path.write_text("broken: [", encoding="utf-8")
    (home / "b.warc.gz").write_bytes(b"")  # one archive no longer reads
    fallback = MapHolder(map_path, reload_interval=0, state_dir=state)
    last_good = current(fallback)
    assert fallback.status().serving == "last-known-good"
    assert len(last_good.captures) == 1 and last_good.captures.files[0].file == f"{home}/a.warc.gz"
    assert [str(p) for p in last_good.archive_problems] == [
        f"{home}/b.warc.gz: error: the file is empty (0 bytes): not a web archive"
    ]
    assert LastGood(state, str(map_path)).load() is not None


def current(holder: MapHolder) -> RedirectMap:
    served = holder.current()
    assert served is not None
    return served


def wait_for(holder: MapHolder, tries: int = 20) -> bool:
    """Check the holder until it reloads (the settle time makes a fresh change wait)."""
    for _ in range(tries):
        if holder.check():
            return True
        time.sleep(0.3)
    return False


def test_archives_elsewhere_are_found_relative_to_the_map(tmp_path: Path, index_dir: str) -> None:
    (tmp_path / "warcs").mkdir()
    write_warc(tmp_path / "warcs" / "a.warc", OLD_SITE[:1], gzip=False)
    (tmp_path / "conf").mkdir()
    shutil.copy(archive_map(tmp_path, ["../warcs/a.warc"]), tmp_path / "conf" / "redirects.yaml")
    redirect_map = load_map(tmp_path / "conf" / "redirects.yaml", index_dir=index_dir)
    assert [f.file for f in redirect_map.captures.files] == [f"{tmp_path}/warcs/a.warc"]
