"""The served map's life in one process (gateway.maps): reload, broken changes, last-known-good.

Each test drives a ``MapHolder`` by calling ``check()`` itself (reload_interval=0:
no watcher thread) on a small map whose every answer names its version (``/v1/a``,
``Архив v1``), so that a test can tell which complete version answered.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import maps
from gateway.app import create_app
from gateway.decide import decide
from gateway.mapfile import RedirectMap, load_map
from gateway.maps import LastGood, MapHolder, watch
from gateway.maps import holder as holder_module
from gateway.outcomes import Redirect
from tests.support import replace_file, versioned_map_text, versioned_table_text

HOST = "khabarovskadm.ru"


def write_version(folder: Path, version: str) -> Path:
    replace_file(folder / "redirects.d" / "table.csv", versioned_table_text(version))
    replace_file(folder / "redirects.yaml", versioned_map_text(version))
    return folder / "redirects.yaml"


def location(redirect_map: RedirectMap, target: str) -> str:
    outcome = decide(redirect_map, "GET", HOST, target)
    assert isinstance(outcome, Redirect), outcome
    return outcome.location


def answers(redirect_map: RedirectMap) -> set[str]:
    """The version every redirect of the map names (one element for a complete version)."""
    found = set()
    for target in ("/a", "/p/7", "/c"):
        found.add(location(redirect_map, target).split("/")[3])
    return found


@pytest.fixture(autouse=True)
def short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    # Files written by a test are quiet at once; waiting the full half second is waste.
    monkeypatch.setattr(watch, "SETTLE", 0.05)


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """A map folder holding version v1: redirects.yaml and redirects.d/table.csv."""
    return write_version(tmp_path / "live", "v1")


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture(params=[False, True], ids=["in-memory", "compiled"])
def make_holder(request: pytest.FixtureRequest) -> Callable[..., MapHolder]:
    """Every test twice: each worker loading the map, and the map compiled once (issue 14)."""
    return functools.partial(MapHolder, compiled=request.param)


@pytest.fixture
def holder(live: Path, state: Path, make_holder: Callable[..., MapHolder]) -> MapHolder:
    return make_holder(live, reload_interval=0, state_dir=state)


# --- a valid change ----------------------------------------------------------------------


def test_a_valid_change_is_swapped_in_whole(holder: MapHolder, live: Path) -> None:
    before = holder.current()
    assert before is not None
    assert answers(before) == {"v1"}
    write_version(live.parent, "v2")
    assert holder.check() is True
    after = holder.current()
    assert after is not None and after is not before
    assert answers(after) == {"v2"}
    # A request that started on the old map finishes on it, unchanged.
    assert answers(before) == {"v1"}
    status = holder.status()
    assert (status.serving, status.last_attempt_ok, status.last_error) == ("map", True, None)


def test_nothing_changed_means_no_load(holder: MapHolder) -> None:
    before = holder.current()
    assert holder.check() is False
    assert holder.current() is before


def test_the_same_content_written_again_keeps_the_served_map(holder: MapHolder, live: Path) -> None:
    before = holder.current()
    replace_file(live, versioned_map_text("v1"))  # a new inode and ctime, the same bytes
    assert holder.check() is False
    assert holder.current() is before
    assert holder.status().last_attempt_ok is True


def test_a_new_file_matching_an_include_glob_is_loaded(holder: MapHolder, live: Path) -> None:
    replace_file(live.parent / "redirects.d" / "more.csv", "from,to\n/d,/v1/d\n")
    assert holder.check() is True
    current = holder.current()
    assert current is not None
    assert location(current, "/d") == "https://khv27.ru/v1/d"


def test_switching_a_release_symlink_loads_the_new_folder(
    tmp_path: Path, state: Path, make_holder: Callable[..., MapHolder]
) -> None:
    write_version(tmp_path / "releases" / "1", "v1")
    write_version(tmp_path / "releases" / "2", "v2")
    current = tmp_path / "current"
    current.symlink_to("releases/1")
    holder = make_holder(current / "redirects.yaml", reload_interval=0, state_dir=state)
    served = holder.current()
    assert served is not None and answers(served) == {"v1"}
    switch = tmp_path / "current.new"
    switch.symlink_to("releases/2")
    os.replace(switch, current)  # what `mv -T current.new current` does: atomic
    assert holder.check() is True
    served = holder.current()
    assert served is not None and answers(served) == {"v2"}


def test_the_version_does_not_depend_on_how_the_path_is_spelled(live: Path) -> None:
    # Regression: includes were hashed under their shown path, so "dir/../redirects.yaml"
    # and the absolute path gave two versions for the same files.
    spelled = live.parent / "redirects.d" / ".." / "redirects.yaml"
    assert load_map(spelled).version == load_map(live.resolve()).version


# --- a broken change changes nothing -----------------------------------------------------


def _broken_yaml(live: Path) -> None:
    replace_file(live, versioned_map_text("v2").replace("  - from: /a\n", "  - from: [/a\n"))


def _empty(live: Path) -> None:
    with open(live, "w"):  # truncated in place, nothing written
        pass


def _half_written(live: Path) -> None:
    text = versioned_map_text("v2")
    live.write_text(text[: text.index("include:")], encoding="utf-8")  # no archive yet


def _deleted(live: Path) -> None:
    live.unlink()


def _bad_rule(live: Path) -> None:
    replace_file(live, versioned_map_text("v2").replace("to: /v2/a", "to: https://evil.example/a"))


def _bad_table_row(live: Path) -> None:
    replace_file(live.parent / "redirects.d" / "table.csv", "from,to,status,note\n/c,/v2/c,299,\n")


def _new_broken_table(live: Path) -> None:
    replace_file(live.parent / "redirects.d" / "zz.csv", "from,to,status,note\n/z,/v2/z,999,\n")


@pytest.mark.parametrize(
    ("change", "where"),
    [
        pytest.param(_broken_yaml, r"redirects\.yaml:\d+", id="broken-yaml-is-a-syntax-error"),
        pytest.param(_empty, r"redirects\.yaml:1", id="truncated-to-empty-is-not-an-empty-map"),
        pytest.param(_half_written, r"redirects\.yaml:\d+", id="half-written-lacks-archive"),
        pytest.param(_deleted, r"redirects\.yaml:0", id="deleted-file-cannot-be-read"),
        pytest.param(_bad_rule, r"redirects\.yaml:8", id="target-off-the-allowed-hosts"),
        pytest.param(_bad_table_row, r"table\.csv:2", id="bad-status-in-an-included-table"),
        pytest.param(_new_broken_table, r"zz\.csv:2", id="new-broken-file-in-include-glob"),
    ],
)
def test_a_broken_change_keeps_the_old_map_and_says_where(
    holder: MapHolder, live: Path, change: Callable[[Path], None], where: str
) -> None:
    before = holder.current()
    change(live)
    assert holder.check() is False
    assert holder.current() is before
    status = holder.status()
    assert status.serving == "map"
    assert status.last_attempt_ok is False
    assert status.last_error is not None
    assert re.search(where + r": error: ", status.last_error), status.last_error
    # The same broken state is not loaded again at every check.
    assert holder.check() is False
    # Repairing it is noticed, and the complete new version is served.
    (live.parent / "redirects.d" / "zz.csv").unlink(missing_ok=True)
    write_version(live.parent, "v2")
    assert holder.check() is True
    current = holder.current()
    assert current is not None
    assert answers(current) == {"v2"}
    assert holder.last_error is None


def test_fixing_only_a_newly_included_file_is_noticed(holder: MapHolder, live: Path) -> None:
    # The map now names a file the old map did not include; the problem is in that file.
    extra = live.parent / "extra.csv"
    replace_file(extra, "from,to,status,note\n/e,/v2/e,999,\n")
    replace_file(live, versioned_map_text("v2", extra_include=", extra.csv"))
    assert holder.check() is False
    assert "extra.csv:2: error:" in (holder.last_error or "")
    replace_file(extra, "from,to,status,note\n/e,/v2/e,301,\n")  # only the included file changes
    assert holder.check() is True
    current = holder.current()
    assert current is not None
    assert location(current, "/e") == "https://khv27.ru/v2/e"


def test_a_file_still_being_written_is_not_loaded_half(
    holder: MapHolder, live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "SETTLE", 0.4)
    text = versioned_map_text("v2").replace("/v1/", "/v2/")
    cut = text.index("include:")
    with open(live, "w", encoding="utf-8") as f:
        f.write(text[:cut])  # a valid map on its own, if archive came first; it does not
        f.flush()

        def finish() -> None:
            time.sleep(0.15)  # a writer pausing for less than SETTLE
            f.write(text[cut:])
            f.flush()

        writer = threading.Thread(target=finish)
        writer.start()
        try:
            swapped = holder.check()
        finally:
            writer.join()
    assert swapped is True
    assert holder.last_error is None
    current = holder.current()
    assert current is not None
    assert current.archive.notice_ru == "Архив v2"


def test_a_change_during_the_load_is_loaded_again(
    holder: MapHolder, live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_load = holder_module.MapHolder._load

    def load_then_change(self: MapHolder) -> RedirectMap:
        loaded = real_load(self)
        calls.append(loaded.version)
        if len(calls) == 1:
            write_version(live.parent, "v3")  # lands after the read, before the swap
        return loaded

    monkeypatch.setattr(holder_module.MapHolder, "_load", load_then_change)
    write_version(live.parent, "v2")
    assert holder.check() is True
    current = holder.current()
    assert current is not None
    assert answers(current) == {"v3"}
    assert len(calls) == 2


def test_files_stamped_in_the_future_are_still_loaded(
    holder: MapHolder, live: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file server whose clock is an hour ahead of ours: every ctime looks fresh, so
    # quiet is judged by looking twice instead.
    monkeypatch.setattr(watch, "_clock", lambda: time.time_ns() - 3_600_000_000_000)
    write_version(live.parent, "v2")
    assert holder.check() is True
    current = holder.current()
    assert current is not None
    assert answers(current) == {"v2"}


def test_the_watcher_thread_reloads_without_being_asked(
    live: Path, state: Path, make_holder: Callable[..., MapHolder]
) -> None:
    holder = make_holder(live, reload_interval=0.1, state_dir=state)
    holder.current()  # the first request starts the watcher
    write_version(live.parent, "v2")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = holder.current()
        if current is not None and answers(current) == {"v2"}:
            break
        time.sleep(0.05)
    current = holder.current()
    assert current is not None
    assert answers(current) == {"v2"}


# --- last-known-good -----------------------------------------------------------------------


def test_a_worker_starting_on_a_broken_map_serves_the_last_good_copy(
    holder: MapHolder, live: Path, state: Path, make_holder: Callable[..., MapHolder]
) -> None:
    good = holder.current()
    assert good is not None
    _broken_yaml(live)
    restarted = make_holder(live, reload_interval=0, state_dir=state)  # as after HUP
    status = restarted.status()
    assert status.serving == "last-known-good"
    assert status.map is not None
    assert status.map.version == good.version
    assert answers(status.map) == {"v1"}
    assert status.map.path.startswith(str(state))  # its FILE:LINE names the copy served
    assert re.search(r"redirects\.yaml:\d+: error: ", status.last_error or "")
    # Once the map on disk is fixed, it is served again.
    write_version(live.parent, "v2")
    assert restarted.check() is True
    assert restarted.status().serving == "map"
    current = restarted.current()
    assert current is not None
    assert answers(current) == {"v2"}


def test_no_map_and_no_copy_serves_nothing(
    live: Path, state: Path, make_holder: Callable[..., MapHolder]
) -> None:
    _broken_yaml(live)
    holder = make_holder(live, reload_interval=0, state_dir=state)
    assert holder.current() is None
    assert holder.status().serving == "none"
    write_version(live.parent, "v2")
    assert holder.check() is True
    current = holder.current()
    assert current is not None
    assert answers(current) == {"v2"}


def test_the_copy_keeps_includes_from_outside_the_map_folder(
    tmp_path: Path, make_holder: Callable[..., MapHolder]
) -> None:
    deploy, shared = tmp_path / "deploy", tmp_path / "shared"
    replace_file(shared / "t.csv", "from,to\n/s,/v1/c\n")
    main = versioned_map_text("v1").replace("redirects.d/*.csv", "../shared/*.csv")
    replace_file(deploy / "redirects.yaml", main)
    state = tmp_path / "state"
    first = make_holder(deploy / "redirects.yaml", reload_interval=0, state_dir=state).current()
    assert first is not None
    (deploy / "redirects.yaml").write_text("", encoding="utf-8")
    copy = make_holder(deploy / "redirects.yaml", reload_interval=0, state_dir=state).current()
    assert copy is not None
    assert copy.version == first.version
    assert location(copy, "/s") == "https://khv27.ru/v1/c"


def test_an_altered_copy_is_not_served(holder: MapHolder, live: Path, state: Path) -> None:
    last_good = holder.last_good
    assert last_good is not None
    snapshot = Path(os.path.realpath(Path(last_good.root) / "current"))
    copied = next(snapshot.rglob("redirects.yaml"))
    copied.write_text(versioned_map_text("evil"), encoding="utf-8")
    assert last_good.load() is None


def test_a_state_folder_others_can_write_to_is_not_used(
    live: Path, tmp_path: Path, make_holder: Callable[..., MapHolder]
) -> None:
    shared = tmp_path / "shared-state"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)  # no sticky bit: anyone could swap the copy
    holder = make_holder(live, reload_interval=0, state_dir=shared)
    assert holder.current() is not None  # serving is not affected
    assert list(shared.iterdir()) == []


def test_old_copies_are_pruned(holder: MapHolder, live: Path) -> None:
    for n in range(2, 7):
        write_version(live.parent, f"v{n}")
        assert holder.check() is True
    assert holder.last_good is not None
    copies = [p.name for p in Path(holder.last_good.root).iterdir() if p.name.startswith("snap-")]
    assert len(copies) == maps.KEEP_SNAPSHOTS
    current = holder.current()
    assert current is not None
    assert f"snap-{current.version}" in copies


def test_last_good_is_keyed_by_the_map_path(tmp_path: Path) -> None:
    a = LastGood(tmp_path, str(tmp_path / "one" / "redirects.yaml"))
    b = LastGood(tmp_path, str(tmp_path / "two" / "redirects.yaml"))
    assert a.root != b.root


# --- what the app answers without a map ---------------------------------------------------


def test_without_any_map_the_app_answers_503_and_health_says_so(live: Path) -> None:
    _broken_yaml(live)
    app = create_app({"TESTING": True, "MAP_PATH": str(live)})  # TESTING: no copy kept
    client = app.test_client()
    response = client.get("/a", headers={"Host": HOST})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers
    health = client.get("/-/health")
    assert health.status_code == 503
    assert health.headers["Cache-Control"] == "no-store"
    body = health.get_json()
    assert (body["status"], body["serving"], body["version"]) == ("unavailable", "none", None)
    assert re.search(r"redirects\.yaml:\d+: error: ", body["last_error"])
    assert client.get("/-/metrics").status_code == 200


def test_health_reports_a_last_good_copy_as_degraded(
    live: Path, state: Path, make_holder: Callable[..., MapHolder]
) -> None:
    good = make_holder(live, reload_interval=0, state_dir=state).current()
    assert good is not None
    _deleted(live)
    app = create_app({"TESTING": True, "MAP_PATH": str(live), "STATE_DIR": str(state)})
    client = app.test_client()
    body = client.get("/-/health").get_json()
    assert client.get("/-/health").status_code == 200
    assert (body["status"], body["serving"], body["version"]) == (
        "degraded",
        "last-known-good",
        good.version,
    )
    assert "redirects.yaml:0: error: cannot read" in body["last_error"]
    assert body["pid"] == os.getpid()
    response = client.get("/a", headers={"Host": HOST})
    assert (response.status_code, response.headers["Location"]) == (
        301,
        "https://khv27.ru/v1/a",
    )
    assert response.headers["Cache-Control"] == "public, max-age=86400"
