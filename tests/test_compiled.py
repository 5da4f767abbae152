"""Each map version compiled once, by one child process, and opened by every worker (issue 14).

``gateway.maps.compiled`` with real child processes: how many compiles the workers of
one machine run, what they report for a broken map, and what a compile killed while
it writes its table leaves. The holder's reload behaviour in compiled mode is
``tests/test_maps.py`` (every test there runs in both modes); under real gunicorn,
``tests/http/test_live_ops.py``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.decide import decide
from gateway.mapfile import MapError, load_map
from gateway.maps import MapHolder
from gateway.maps.compiled import RESULT, TABLES, Compiled
from gateway.matcher import Matcher
from gateway.table import TableMatcher
from tests.support import replace_file, versioned_map_text, versioned_table_text

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Count the compiler processes started (each is still run for real)."""
    started: list[str] = []
    real = subprocess.run

    def counting(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        if command[1:3] == ["-m", "gateway.maps.compiled"]:
            started.append(command[3])
        return real(command, **options)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", counting)
    yield started


def write_version(folder: Path, version: str) -> Path:
    replace_file(folder / "redirects.d" / "table.csv", versioned_table_text(version))
    replace_file(folder / "redirects.yaml", versioned_map_text(version))
    return folder / "redirects.yaml"


def settle() -> None:
    """Let the files written go quiet: a compile shares its result only for files that
    did not change while it read them (by ctime, which a test cannot set back)."""
    time.sleep(0.1)


def test_workers_compile_each_version_once(tmp_path: Path, runs: list[str]) -> None:
    live = write_version(tmp_path / "live", "v1")
    settle()
    first = MapHolder(live, reload_interval=0, state_dir=tmp_path / "state", compiled=True)
    second = MapHolder(live, reload_interval=0, state_dir=tmp_path / "state", compiled=True)
    assert len(runs) == 1  # the second worker opened the first one's table
    for holder in (first, second):
        served = holder.current()
        assert served is not None and isinstance(served.matcher, TableMatcher)
        assert decide(served, "GET", "khabarovskadm.ru", "/a") == decide(
            load_map(live), "GET", "khabarovskadm.ru", "/a"
        )
    # A restart on the unchanged map (gunicorn HUP): no compile.
    MapHolder(live, reload_interval=0, state_dir=tmp_path / "state", compiled=True)
    assert len(runs) == 1
    # A change: compiled once more, whichever worker notices first.
    write_version(live.parent, "v2")
    settle()
    assert first.check() and second.check()
    assert len(runs) == 2
    current = second.current()
    assert current is not None and current.version == load_map(live).version


def test_a_broken_map_reports_what_the_loader_reports_and_is_tried_once(
    tmp_path: Path, runs: list[str]
) -> None:
    live = write_version(tmp_path / "live", "v1")
    replace_file(live, versioned_map_text("v1").replace("- from: /a", "- from: [/a"))
    settle()
    with pytest.raises(MapError) as loaded:
        load_map(live)
    compiled = Compiled.of(str(live), str(tmp_path / "state"))
    for _ in range(2):  # as two workers
        with pytest.raises(MapError) as reported:
            compiled.load()
        assert [str(p) for p in reported.value.problems] == [str(p) for p in loaded.value.problems]
    assert len(runs) == 1  # the second read the first one's problems


def test_a_compile_killed_while_writing_its_table_leaves_nothing_served(tmp_path: Path) -> None:
    out = tmp_path / "big"
    generate = [sys.executable, "bench/genmap.py", str(out), "--exact", "60000", "--urls", "50"]
    subprocess.run([*generate, "--patterns", "10"], check=True, cwd=REPO, capture_output=True)
    main = out / "redirects.yaml"
    compiled = Compiled.of(str(main), str(tmp_path / "state"))
    tables = compiled.root / TABLES
    compiled.root.mkdir(parents=True, mode=0o700)
    child = subprocess.Popen(
        [sys.executable, "-m", "gateway.maps.compiled", str(main), str(compiled.root)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        while not list(tables.glob(".rules-*")):  # the table being written, under a temp name
            assert child.poll() is None, "the compile ended before its table was seen"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not list(tables.glob("rules-*.lmdb"))  # nothing under a name that is served
    assert not (compiled.root / RESULT).exists()  # and no result naming a table
    # The next attempt compiles it whole and answers as the map does.
    served = compiled.load()
    reference = load_map(main)
    assert served.version == reference.version and len(served.rules) == len(reference.rules)
    for line in (out / "urls-exact.tsv").read_text(encoding="utf-8").splitlines()[:50]:
        host, target = line.split("\t")[:2]
        assert decide(served, "GET", host, target) == decide(reference, "GET", host, target)
    result = json.loads((compiled.root / RESULT).read_text(encoding="utf-8"))
    assert result["table"] == f"rules-{reference.version}.lmdb"


@pytest.mark.parametrize(
    ("setting", "matcher"),
    [("on", TableMatcher), ("off", Matcher)],
    ids=["on-serves-the-table", "off-loads-the-map-in-each-worker"],
)
def test_gateway_compiled_chooses_how_a_worker_gets_its_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, matcher: type
) -> None:
    live = write_version(tmp_path / "live", "v1")
    monkeypatch.setenv("GATEWAY_COMPILED", setting)
    config = {"MAP_PATH": str(live), "STATE_DIR": str(tmp_path / "state"), "ACCESS_LOG": "off"}
    app = create_app({**config, "MAP_RELOAD_INTERVAL": 0})
    served = app.extensions["gateway.maps"].current()
    assert isinstance(served.matcher, matcher)


def test_a_bad_gateway_compiled_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_COMPILED", "yes")
    with pytest.raises(ValueError, match="GATEWAY_COMPILED must be on or off, not 'yes'"):
        create_app({"MAP_PATH": str(tmp_path / "redirects.yaml")})
