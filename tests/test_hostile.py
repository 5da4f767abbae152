"""Known attacks, each answered safely: through the Flask test client and a real gunicorn.

One table of hostile requests (open redirects, CRLF, double and overlong encodings,
windows-1251, sizes past gunicorn's limits, Host spoofing, odd methods, the Bitrix
open-redirect scripts). Every row is judged by tests/safety.py: the status, no 5xx,
a safe Location or none, the headers of its status class, no request markup in a
banner. Then hostile map files: the loader answers each with FILE:LINE problems in
bounded time and memory (measured in a subprocess with getrusage).
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.mapfile import RedirectMap
from tests.safety import Shape, baseline_shapes, response_problems
from tests.support import BUNDLED_MAP, REPO, GunicornServer, WriteMap, raw_request

HOST = "khabarovskadm.ru"
EVIL = "evil.example"
MANY_PARAMS = "&".join(["a=1"] * 2000)  # 8000 bytes: under gunicorn's 8190 line limit
MANY_IGNORED = "&".join(f"utm_{i}=%3C" for i in range(600))


@dataclass(frozen=True)
class Attack:
    """One hostile request and what the gateway must answer (status in-process, on the wire)."""

    target: str | bytes
    status: int  # through the Flask client (the gateway alone)
    wire: int | None = None  # through gunicorn, when gunicorn answers before the gateway
    method: str = "GET"
    host: str = HOST
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None  # the exact Location, for redirects


CORPUS = [
    # -- open redirects: protocol-relative, backslash, userinfo, escapes of them --
    pytest.param(Attack("//evil.example", 404), id="protocol-relative"),
    pytest.param(
        Attack("//evil.example/%2e%2e/press-center/", 301, location="https://khv27.ru/news/"),
        id="protocol-relative-dots-resolve-to-a-served-path",
    ),
    pytest.param(Attack("///evil.example", 404), id="triple-slash"),
    pytest.param(Attack("/\\evil.example", 404), id="backslash"),
    pytest.param(Attack("/\\/evil.example", 404), id="backslash-slash"),
    pytest.param(Attack("/%5Cevil.example", 404), id="escaped-backslash"),
    pytest.param(Attack("/%5C%5Cevil.example", 404), id="escaped-double-backslash"),
    pytest.param(Attack("/%2F%2Fevil.example", 404), id="escaped-double-slash"),
    pytest.param(Attack("/@evil.example", 404), id="userinfo-at"),
    pytest.param(Attack("/%40evil.example", 404), id="escaped-at"),
    pytest.param(Attack("/https:/evil.example", 404), id="scheme-in-path"),
    pytest.param(Attack("/%09/evil.example", 400), id="escaped-tab"),
    pytest.param(Attack("/%00evil.example", 400), id="escaped-nul"),
    pytest.param(Attack("/.%2e/%2e%2e//evil.example", 404), id="dots-above-root"),
    pytest.param(
        Attack(
            "/search/?q=//evil.example",
            301,
            location="https://khv27.ru/search/?q=%2F%2Fevil.example",
        ),
        id="kept-query-protocol-relative",
    ),
    pytest.param(
        Attack(
            "/search/?q=%5C%5Cevil.example&url=https://evil.example",
            301,
            location="https://khv27.ru/search/?q=%5C%5Cevil.example&url=https%3A%2F%2Fevil.example",
        ),
        id="kept-query-backslash-and-url",
    ),
    pytest.param(
        Attack(
            "/search/?q=@evil.example", 301, location="https://khv27.ru/search/?q=%40evil.example"
        ),
        id="kept-query-userinfo",
    ),
    pytest.param(
        Attack("/press-center/news/detail.php?ID=1@evil.example", 404), id="capture-with-at"
    ),
    pytest.param(
        Attack("/press-center/news/detail.php?ID=12%2F%2Fevil.example", 404),
        id="capture-with-slashes",
    ),
    # -- CRLF and header injection --
    pytest.param(Attack("/%0d%0aSet-Cookie:%20a=1", 400), id="crlf-in-path"),
    pytest.param(
        Attack("/search/?q=%0aLocation:%20https://evil.example", 400), id="lf-in-kept-query"
    ),
    pytest.param(Attack("/search/?q=%0d", 400), id="cr-in-kept-query"),
    pytest.param(Attack("/search/?utm_source=%0d%0a", 400), id="crlf-in-ignored-param"),
    pytest.param(Attack(b"/a\r\nSet-Cookie: a=1", 400, wire=400), id="raw-crlf"),
    pytest.param(
        Attack(
            "/search/?q=%E5%98%8A%E5%98%8DSet-Cookie:a=1",
            301,
            location="https://khv27.ru/search/?q=%E5%98%8A%E5%98%8DSet-Cookie%3Aa%3D1",
        ),
        id="unicode-crlf-lookalikes",
    ),
    # -- double, mixed and overlong encodings, invalid UTF-8 --
    pytest.param(Attack("/%252e%252e/%252e%252e/etc/passwd", 404), id="double-encoded-dots"),
    pytest.param(Attack("/%25%32%65%25%32%65/", 404), id="double-encoded-nibbles"),
    pytest.param(Attack("/%c0%ae%c0%ae/%c0%af", 404), id="overlong-utf8-is-cp1251-text"),
    pytest.param(Attack("/%e0%80%ae%e0%80%ae/", 404), id="overlong-3-byte"),
    pytest.param(Attack("/%ed%a0%80", 404), id="utf8-surrogate-is-cp1251-text"),
    pytest.param(Attack("/%ff%fe%fd", 404), id="invalid-utf8"),
    pytest.param(Attack("/%98", 400), id="byte-cp1251-does-not-define"),
    pytest.param(Attack("/a%zz", 400), id="bad-escape"),
    pytest.param(Attack("/a%", 400), id="truncated-escape"),
    pytest.param(
        Attack("/%70ress-center/", 301, location="https://khv27.ru/news/"), id="escaped-letter"
    ),
    pytest.param(
        Attack("/%2e%2e/press-center/", 301, location="https://khv27.ru/news/"),
        id="dot-segment-never-above-root",
    ),
    pytest.param(
        Attack(
            "/press-center/news/detail.php?ID=%31%32", 301, location="https://khv27.ru/news/12/"
        ),
        id="escaped-digits",
    ),
    # -- windows-1251 --
    pytest.param(Attack("/%CF%F0%E5%F1%F1", 404), id="cp1251-path"),
    pytest.param(
        Attack(
            "/search/?q=%EF%F0%E8%E2%E5%F2",
            301,
            location="https://khv27.ru/search/?q=%D0%BF%D1%80%D0%B8%D0%B2%D0%B5%D1%82",
        ),
        id="cp1251-kept-query-re-encoded-as-utf8",
    ),
    pytest.param(Attack(b"/\xcf\xf0\xe5\xf1\xf1", 404, wire=400), id="raw-cp1251-bytes"),
    pytest.param(Attack(b"/\xd0\xbd\xd0\xbe", 404, wire=400), id="raw-utf8-bytes"),
    # -- sizes --
    pytest.param(Attack("/" + "a" * 8000, 404), id="8k-path"),
    pytest.param(Attack("/" + "a/" * 4000, 404), id="4000-segments"),
    pytest.param(Attack("/" + "a" * 9000, 404, wire=414), id="request-line-past-limit"),
    pytest.param(Attack("/search/?" + MANY_PARAMS, 301), id="2000-kept-params"),
    pytest.param(Attack("/zz?" + MANY_IGNORED, 404), id="600-ignored-params"),
    # -- Host and proxy headers: never the source of a Location --
    pytest.param(Attack("/press-center/", 404, host=EVIL), id="foreign-host"),
    pytest.param(Attack("/press-center/", 404, host=f"{HOST}@{EVIL}"), id="host-with-userinfo"),
    pytest.param(Attack("/press-center/", 404, host=f"{EVIL}#{HOST}"), id="host-with-fragment"),
    pytest.param(Attack("/press-center/", 404, host=f"{HOST}.{EVIL}"), id="served-host-as-prefix"),
    pytest.param(
        Attack("/press-center/", 301, host=f"{HOST}:443", location="https://khv27.ru/news/"),
        id="host-with-port",
    ),
    pytest.param(
        Attack(
            "/press-center/",
            301,
            headers={
                "X-Forwarded-Host": EVIL,
                "X-Forwarded-Proto": "http",
                "Forwarded": f"host={EVIL}",
            },
            location="https://khv27.ru/news/",
        ),
        id="forwarded-host-ignored",
    ),
    pytest.param(
        Attack(
            "/zz",
            404,
            headers={"X-Original-URL": "/press-center/", "X-Rewrite-URL": "/press-center/"},
        ),
        id="rewrite-headers-ignored",
    ),
    pytest.param(Attack(f"http://{EVIL}/press-center/", 404), id="absolute-form-foreign"),
    pytest.param(Attack(f"http://{HOST}@{EVIL}/", 404), id="absolute-form-userinfo"),
    pytest.param(Attack(f"https://{EVIL}\\@{HOST}/", 404), id="absolute-form-backslash"),
    pytest.param(
        Attack(f"http://{HOST}/press-center/", 301, host=EVIL, location="https://khv27.ru/news/"),
        id="absolute-form-served-beats-host-header",
    ),
    # -- methods --
    pytest.param(Attack("/", 405, method="TRACE"), id="trace"),
    pytest.param(Attack("/", 405, method="PROPFIND"), id="propfind"),
    pytest.param(Attack("/", 405, method="OPTIONS"), id="options"),
    pytest.param(Attack("/search/?q=x", 405, method="POST"), id="post"),
    pytest.param(Attack(f"{HOST}:443", 405, method="CONNECT"), id="connect"),
    pytest.param(Attack("/", 405, wire=400, method="get"), id="lowercase-get"),
    pytest.param(Attack("//evil.example", 404, method="HEAD"), id="head-protocol-relative"),
    # -- the Bitrix open-redirect scripts: a 410 banner, never a Location --
    pytest.param(
        Attack("/bitrix/redirect.php?goto=https%3A%2F%2Fevil.example%2F", 410),
        id="bitrix-redirect-goto",
    ),
    pytest.param(
        Attack("/bitrix/redirect.php?event1=x&goto=//evil.example", 410),
        id="bitrix-redirect-goto-relative",
    ),
    pytest.param(
        Attack("/BITRIX/REDIRECT.PHP?GOTO=https://evil.example", 410),
        id="bitrix-redirect-upper-case",
    ),
    pytest.param(
        Attack("/bitrix/redirect.php/?goto=https://evil.example", 410), id="bitrix-redirect-slash"
    ),
    pytest.param(Attack("/bitrix/rk.php?goto=https://evil.example/", 410), id="bitrix-rk-goto"),
    pytest.param(Attack("/bitrix/rk.php?id=1&url=%2F%2Fevil.example", 410), id="bitrix-rk-url"),
    pytest.param(
        Attack("/bitrix/tools/track_mail_click.php?url=https%3A%2F%2Fevil.example%2F", 410),
        id="bitrix-mail-click-url",
    ),
    # -- markup in what the banner shows --
    pytest.param(Attack("/%3Cscript%3Ealert(1)%3C/script%3E", 404), id="script-in-path"),
    pytest.param(Attack("/upload/%22%3E%3Csvg%20onload=alert(1)%3E", 410), id="svg-in-gone-path"),
    pytest.param(
        Attack("/zz?x=%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E", 404), id="img-in-query"
    ),
    pytest.param(Attack("/zz?x=\"><img src=x>'", 404, wire=400), id="raw-markup-in-query"),
    pytest.param(Attack("/zz%27%22%3E%3C/code%3E", 404), id="close-code-element"),
    pytest.param(Attack("/%E2%80%AEgpj.exe", 404), id="bidi-override"),
    pytest.param(Attack("/en/%3Cscript%3E", 404), id="script-on-english-banner"),
    pytest.param(Attack("/javascript:alert(1)", 404), id="javascript-scheme-path"),
]


def _text(target: str | bytes) -> str:
    return target.decode("latin-1") if isinstance(target, bytes) else target


@pytest.fixture(scope="module")
def module_app() -> Flask:
    return create_app({"TESTING": True, "MAP_PATH": str(BUNDLED_MAP)})


def _flask_get(
    client: FlaskClient, attack: Attack, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    response = client.open(
        "/",
        method=attack.method,
        headers={"Host": attack.host, **attack.headers, **(headers or {})},
        environ_overrides={"RAW_URI": _text(attack.target)},
    )
    return response.status_code, dict(response.headers), response.get_data()


@pytest.fixture(scope="module")
def shapes(module_app: Flask) -> frozenset[Shape]:
    client = module_app.test_client()

    def render(target: str, language: str) -> str:
        _, _, body = _flask_get(client, Attack(target, 0), {"Accept-Language": language})
        return body.decode()

    return baseline_shapes(render)


def _judge(
    attack: Attack,
    expected: int,
    status: int,
    headers: dict[str, str],
    body: bytes,
    bundled: RedirectMap,
    shapes: frozenset[Shape],
) -> None:
    headers = {name.title(): value for name, value in headers.items()}
    problems = response_problems(
        status,
        headers,
        body,
        host_allowed=bundled.site.host_allowed,
        known_shapes=shapes,
        method=attack.method,
    )
    assert (status, problems) == (expected, [])
    if attack.location is not None:
        assert headers.get("Location") == attack.location
    if 300 <= status < 400:
        assert headers["Cache-Control"] == "public, max-age=86400"
    elif status in (404, 410) and headers.get("Content-Type", "").startswith("text/html"):
        assert headers["Cache-Control"] == "public, max-age=3600"
    else:
        assert headers.get("Cache-Control") == "no-store"


@pytest.mark.parametrize("attack", CORPUS)
def test_attack_through_flask(
    module_app: Flask, bundled: RedirectMap, shapes: frozenset[Shape], attack: Attack
) -> None:
    status, headers, body = _flask_get(module_app.test_client(), attack)
    _judge(attack, attack.status, status, headers, body, bundled, shapes)


@pytest.mark.parametrize("attack", CORPUS)
def test_attack_through_gunicorn(
    gunicorn_bundled: GunicornServer,
    bundled: RedirectMap,
    shapes: frozenset[Shape],
    attack: Attack,
) -> None:
    response = raw_request(
        gunicorn_bundled.port,
        attack.target,
        method=attack.method,
        host=attack.host,
        headers=attack.headers,
    )
    headers = dict(response.headers.items())
    expected = attack.wire or attack.status
    if attack.wire is not None:
        # gunicorn refused the request itself: a 4xx of its own, never a 5xx or a Location.
        assert 400 <= response.status < 500
        assert "Location" not in response.headers
        assert response.status == expected
        return
    _judge(attack, expected, response.status, headers, response.body, bundled, shapes)


def test_gunicorn_still_serves_after_the_corpus(gunicorn_bundled: GunicornServer) -> None:
    response = raw_request(gunicorn_bundled.port, "/press-center/")
    assert (response.status, response.header("Location")) == (301, "https://khv27.ru/news/")


# --- a pattern that backtracked in O(n^3): regression test -------------------------------

BACKTRACKING_MAP = """
    version: 1
    site: {new_site: "https://khv27.ru"}
    hosts: {khabarovskadm.ru: {}}
    archive: {notice: {ru: "Архив"}}
    rules:
      - from: /news/<year>-<month>-<day>.html
        to: /news/{year}/{month}/{day}/
      - from: /doc/<a>-<b>-<path:rest>
        to: /documents/{a}/{b}/{rest}
"""


@pytest.mark.timeout(10)  # a hang detector, not a speed test: it took minutes before the fix
@pytest.mark.parametrize(
    ("target", "status", "location"),
    [
        pytest.param("/news/" + "-" * 8000, 404, None, id="8k-dashes-no-suffix"),
        pytest.param("/news/" + "-" * 8000 + ".htm", 404, None, id="8k-dashes-near-suffix"),
        pytest.param("/doc/" + "-" * 8000, 301, None, id="8k-dashes-tail"),
        pytest.param(
            "/news/2020-01-31.html", 301, "https://khv27.ru/news/2020/01/31/", id="still-matches"
        ),
        pytest.param(
            "/news/a-b-c-d.html", 301, "https://khv27.ru/news/a-b/c/d/", id="greedy-as-before"
        ),
    ],
)
def test_several_placeholders_in_a_segment_do_not_backtrack(
    write_map: WriteMap, target: str, status: int, location: str | None
) -> None:
    client = create_app(
        {"TESTING": True, "MAP_PATH": str(write_map(BACKTRACKING_MAP))}
    ).test_client()
    response = client.get("/", headers={"Host": HOST}, environ_overrides={"RAW_URI": target})
    assert response.status_code == status
    if location is not None:
        assert response.headers["Location"] == location


# --- hostile map files: FILE:LINE problems in bounded time and memory --------------------

# Every hostile map is loaded by one child process with an address-space limit, so that
# a regression shows up as a MemoryError or a kill, not as a swapping test machine. The
# child reports each map's problems and its peak RSS after that map (getrusage: a peak
# only grows, so each figure bounds every map loaded before it).
_LOADER = textwrap.dedent(
    """
    import json, resource, sys
    from gateway.mapfile import MapError, load_map
    results = {}
    for path in sys.argv[1:]:
        try:
            load_map(path)
            problems = []
        except MapError as exc:
            problems = [str(p) for p in exc.problems]
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        results[path] = {"problems": problems, "peak_kib": peak_kib}
    print(json.dumps(results))
    """
)
ADDRESS_SPACE = 2 * 1024**3  # the child's hard ceiling (virtual memory)
PEAK_RSS_MIB = 300  # what a hostile map may cost at most (the interpreter alone is ~30)

_HEAD = 'site: {new_site: "https://khv27.ru"}\nhosts: {khabarovskadm.ru: {}}\n'
HOSTILE_MAPS: dict[str, tuple[str | bytes, str]] = {
    "billion-laughs": (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join(['*' + chr(ord(c) - 1)] * 9)}]\n" for c in "bcdefghi"),
        ":1: error: YAML anchors (&a) are not allowed",
    ),
    "deep-flow-sequences": ("[" * 200_000, "nesting"),
    "deep-flow-mappings": ("{a: " * 100_000, "nesting"),
    "deep-block-nesting": (
        "".join("  " * i + "- \n" for i in range(2000)),
        "error: nesting deeper than 16 levels",
    ),
    "20mb-scalar": ("a: " + "x" * 20_000_000 + "\n", "error: unknown key 'a'"),
    "10mb-of-a-lines": ("a: \n" * 2_621_440, "error: too many problems"),
    "5000-bad-rules": (
        _HEAD + "rules:\n" + "  - {from: /x, to: https://evil.example/}\n" * 5000,
        "error: too many problems",
    ),
    "nul-byte": ("\x00", ":1: error: YAML: unacceptable character #x0000"),
    "not-utf8": (b"a: \xff\xfe", ":1: error: not UTF-8 text"),
    "two-documents": ("--- 1\n--- 2\n", ":2: error: only one YAML document"),
    "python-tag": ("!!python/object:os.system x", "error: YAML tags"),
    "notice-without-value": (
        _HEAD + "archive:\n  notice:\n",
        ":4: error: archive.notice.ru is required",
    ),
    "ru-notice-without-value": (
        _HEAD + "archive:\n  notice:\n    ru:\n",
        "error: archive.notice.ru is required and must not be empty",
    ),
    "new-site-without-value": (
        "site:\n  new_site:\nhosts: {a.ru: {}}\narchive: {notice: {ru: x}}\n",
        "error: site.new_site is required",
    ),
}
NOT_FILES = ("fifo", "directory", "dangling-symlink", "device")


@pytest.fixture(scope="module")
def hostile_loads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[str], float]]:
    """Load every hostile map in one limited child: name -> (problems, peak RSS in MiB)."""
    folder = tmp_path_factory.mktemp("hostile-maps")
    paths: dict[str, Path] = {}
    for name, (text, _) in HOSTILE_MAPS.items():
        path = paths[name] = folder / name / "redirects.yaml"
        path.parent.mkdir()
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    for name in NOT_FILES:
        path = paths[name] = folder / name / "redirects.yaml"
        path.parent.mkdir()
        if name == "fifo":
            os.mkfifo(path)
        elif name == "directory":
            path.mkdir()
        elif name == "dangling-symlink":
            path.symlink_to(folder / "nowhere.yaml")
        else:
            path.symlink_to("/dev/zero")
    fifo_include = paths["fifo-include"] = folder / "fifo-include" / "redirects.yaml"
    fifo_include.parent.mkdir()
    fifo_include.write_text(
        _HEAD + 'archive: {notice: {ru: "Архив"}}\ninclude: [redirects.d/*.yaml]\n',
        encoding="utf-8",
    )
    (fifo_include.parent / "redirects.d").mkdir()
    os.mkfifo(fifo_include.parent / "redirects.d" / "news.yaml")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    done = subprocess.run(
        [sys.executable, "-c", _LOADER, *map(str, paths.values())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,  # a hang detector only (a FIFO used to block the loader forever)
        preexec_fn=limit,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout)
    return {
        name: (results[str(path)]["problems"], results[str(path)]["peak_kib"] / 1024)
        for name, path in paths.items()
    }


@pytest.mark.parametrize("name", list(HOSTILE_MAPS))
def test_hostile_map_is_refused_with_file_line_in_bounded_memory(
    hostile_loads: dict[str, tuple[list[str], float]], name: str
) -> None:
    problems, peak_mib = hostile_loads[name]
    expected = HOSTILE_MAPS[name][1]
    assert problems, "a hostile map loaded"
    assert len(problems) <= 201  # MAX_PROBLEMS and the line that says it stopped
    assert all(p.startswith("/") and "\n" not in p for p in problems), problems[:3]
    assert all(re.match(r"\A.+/redirects\.yaml:\d+: error: ", p) for p in problems), problems[:3]
    assert any(expected in p for p in problems), problems[:5]
    assert peak_mib < PEAK_RSS_MIB


@pytest.mark.parametrize("name", NOT_FILES)
def test_map_that_is_not_a_regular_file_is_refused_at_once(
    hostile_loads: dict[str, tuple[list[str], float]], name: str
) -> None:
    """A FIFO used to block the loader forever (no writer ever comes); now each is a problem."""
    problems, _ = hostile_loads[name]
    assert len(problems) == 1
    assert re.match(r"\A.+/redirects\.yaml:0: error: ", problems[0]), problems


def test_include_that_is_a_fifo_is_refused(
    hostile_loads: dict[str, tuple[list[str], float]],
) -> None:
    problems, _ = hostile_loads["fifo-include"]
    assert len(problems) == 1
    assert problems[0].endswith(
        "/redirects.d/news.yaml:0: error: not a regular file (a FIFO, socket or device)"
    )
