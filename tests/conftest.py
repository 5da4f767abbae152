"""Fixtures shared by every test: the Flask app and its clients, map files, gunicorn.

In-process tests use `app` and `client` (flaskr style) on the map named by the
`map_path` fixture: the bundled redirects.yaml unless a module overrides it, e.g.

    @pytest.fixture
    def map_path(write_map: WriteMap) -> Path:
        return write_map('''
            version: 1
            ...
        ''')

`bundled` is the bundled redirects.yaml loaded once for the session (a RedirectMap is
immutable), for tests of the pure core and of gateway.ops. `runner` is a click
CliRunner for the `gateway` command (gateway.cli:main is a click group, not a Flask
CLI, so Flask's test_cli_runner would reach none of its commands).

HTTP tests use `gunicorn_bundled` (one server for the session) or `gunicorn_factory`
(servers of their own); either marks the test `http`.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import BUNDLED_MAP, GUNICORN_CONF, GunicornServer, StartServer, WriteMap

if TYPE_CHECKING:
    from click.testing import CliRunner
    from flask import Flask
    from flask.testing import FlaskClient

    from gateway.mapfile import RedirectMap

_SERVER_FIXTURES = {"gunicorn_bundled", "gunicorn_factory"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Marked by what they use, so that `-m "not http"` can never miss one.
    for item in items:
        if _SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.http)


# The servers a test started through gunicorn_factory, for its failure report.
_SERVERS = pytest.StashKey[list[GunicornServer]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # A failed HTTP test shows, in its own report, what its servers logged.
    report = yield
    if report.when == "call" and report.failed:
        for server in item.stash.get(_SERVERS, []):
            report.sections.append((f"gunicorn log, port {server.port}", server.log_text()))
    return report


@pytest.fixture(scope="session", autouse=True)
def _gateway_state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The last-known-good map copies that servers started by tests keep (gateway/maps.py)
    # go under pytest's own temp folder, which it prunes, not under the system's /tmp.
    os.environ.setdefault("GATEWAY_STATE_DIR", str(tmp_path_factory.mktemp("gateway-state")))


@pytest.fixture
def map_path() -> Path:
    """The map `app` serves; override this fixture to serve another."""
    return BUNDLED_MAP


@pytest.fixture
def app(map_path: Path) -> Flask:
    # Imported here so that a broken gateway package fails its own tests, not collection.
    from gateway.app import create_app

    return create_app({"TESTING": True, "MAP_PATH": str(map_path)})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner() -> CliRunner:
    """A click runner for gateway.cli:main: `runner.invoke(main, ["check", ...])`."""
    from click.testing import CliRunner

    return CliRunner()


@pytest.fixture(scope="session")
def bundled() -> RedirectMap:
    """The bundled redirects.yaml, loaded once: a RedirectMap is immutable, so it is shared."""
    from gateway.mapfile import load_map

    return load_map(BUNDLED_MAP)


@pytest.fixture
def write_map(tmp_path: Path) -> WriteMap:
    """write_map(text, name="redirects.yaml") -> path under tmp_path.

    str text is dedented and loses its leading newline, so that the first line written
    is line 1 in error messages; bytes are written as they are (e.g. windows-1251).
    `name` may contain folders ("redirects.d/news.csv").
    """

    def write(text: str | bytes, name: str = "redirects.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def gunicorn_bundled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    """gunicorn serving the bundled redirects.yaml with 2 workers, shared by the session."""
    log_path = tmp_path_factory.mktemp("gunicorn") / "bundled.log"
    with GunicornServer(log_path=log_path).start(BUNDLED_MAP, workers=2) as server:
        yield server


@pytest.fixture
def gunicorn_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartServer]:
    """start(map_path, *, workers=1, env=None, extra_args=(), app=..., config=...) -> server.

    Every server started is stopped at teardown; a failed test's report shows their logs.
    """
    servers: list[GunicornServer] = []
    request.node.stash[_SERVERS] = servers

    def start(
        map_path: str | os.PathLike[str],
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        app: str = "wsgi:app",
        config: Path = GUNICORN_CONF,
    ) -> GunicornServer:
        log_path = tmp_path / f"gunicorn-{len(servers)}.log"
        server = GunicornServer(app=app, config=config, log_path=log_path)
        servers.append(server)
        return server.start(map_path, workers=workers, env=env, extra_args=extra_args)

    yield start
    # ExitStack: one server failing to stop must not leave the others running.
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.callback(server.stop)
