"""The nginx export, verified against the real nginx with the real gateway behind it (issue 7).

One nginx (Debian's nginx-light, installed here when missing) serves the file that
`gateway export nginx` wrote for tests.test_export.EXPORT_MAP, in front of gunicorn
serving the same map. Every URL of the corpus goes to nginx+gateway and to the
gateway alone, and both must give the same status, Location and Cache-Control; the
corpus also says who must answer (nginx itself, or the gateway behind it), so that a
config that proxies everything cannot pass. Cost: about 2 s besides a one-time
`apt-get install nginx-light`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.mapfile import load_map
from gateway.ops.export import export_nginx
from tests.support import (
    BUNDLED_MAP,
    GunicornServer,
    Response,
    _die_with_parent,
    apt_install,
    free_port,
    raw_request,
    send_raw,
)
from tests.test_export import EXPORT_MAP

pytestmark = [pytest.mark.http, pytest.mark.timeout(900)]  # 900 s: a first apt-get install

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def _find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((p for p in NGINX_CANDIDATES if os.access(p, os.X_OK)), None)


def _install_nginx() -> str:
    """Install Debian's nginx-light; return why it could not be, or '' on success."""
    return apt_install("--no-install-recommends", "nginx-light")


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """The nginx executable: found, or installed with apt-get (CI runs as root)."""
    found = _find_nginx()
    if found is None:
        why = _install_nginx()
        found = _find_nginx()
        if found is None:
            pytest.skip(f"nginx is not installed and could not be installed: {why}")
    return found


@dataclass
class Nginx:
    """An nginx master (and its worker) on a loopback port, with its files in `root`."""

    binary: str
    root: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def config_test(self, include: str) -> subprocess.CompletedProcess[str]:
        """Run `nginx -t` on a main config that includes `include` (already in root)."""
        conf = self._write_main(include)
        return subprocess.run(
            [self.binary, "-t", "-p", str(self.root), "-e", "stderr", "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _write_main(self, include: str) -> Path:
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.root / sub).mkdir(exist_ok=True)
        # As root, the workers run as root too: the temp dirs here are not world-writable.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = self.root / "nginx.conf"
        conf.write_text(
            f"{user}daemon off;\nworker_processes 1;\n"
            f"pid {self.root}/nginx.pid;\nerror_log {self.root}/error.log warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n    access_log off;\n"
            + "".join(
                f"    {sub}_temp_path {self.root}/{sub};\n"
                for sub in ("proxy", "fastcgi", "uwsgi", "scgi")
            )
            + f"    client_body_temp_path {self.root}/client_body;\n"
            f"    include {self.root}/{include};\n}}\n",
            encoding="utf-8",
        )
        return conf

    def start(self, map_path: Path, upstream_port: int) -> Nginx:
        """Export the map for a free port and serve it; retry if the port is taken meanwhile."""
        redirect_map = load_map(map_path)
        for _ in range(3):
            self.port = free_port()
            text, _ = export_nginx(
                redirect_map,
                listen=f"127.0.0.1:{self.port}",
                upstream=f"127.0.0.1:{upstream_port}",
            )
            (self.root / "exported.conf").write_text(text, encoding="utf-8")
            conf = self._write_main("exported.conf")
            log = self.root / "error.log"
            log.write_text("")
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.root), "-e", str(log), "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # one killpg reaches the worker too
                preexec_fn=_die_with_parent,  # nginx ends if pytest dies without teardown
            )
            if self._wait_ready():
                return self
            self.stop()
            if "Address already in use" not in self.log():
                raise RuntimeError(f"nginx did not start:\n{self.log()}")
        raise RuntimeError(f"nginx found no free port:\n{self.log()}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop nginx (fast shutdown), and its whole process group if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                # Still unreaped, so the group id is still ours: end the master and worker.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@dataclass(frozen=True)
class Pair:
    """The gateway alone and nginx in front of it, serving the same map."""

    gateway: GunicornServer
    nginx: Nginx


@pytest.fixture(scope="module")
def pair(nginx_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("nginx")
    map_path = root / "redirects.yaml"
    map_path.write_text(EXPORT_MAP, encoding="utf-8")
    nginx = Nginx(nginx_binary, root)
    with GunicornServer(log_path=root / "gunicorn.log").start(map_path, workers=1) as gateway:
        try:
            yield Pair(gateway, nginx.start(map_path, gateway.port))
        finally:
            nginx.stop()


KHV = "https://khv27.ru"
CYR = "/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/"  # /новости/ in UTF-8
CYR_CAPITAL = "/%D0%9D%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/"  # /Новости/
CYR_UPPER = "/%D0%9D%D0%9E%D0%92%D0%9E%D0%A1%D0%A2%D0%98/"  # /НОВОСТИ/
CYR_1251 = "/%ED%EE%E2%EE%F1%F2%E8/"  # /новости/ in windows-1251
BUDGET = "%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82"  # бюджет

# (id, host, target, method, who answers behind nginx: "nginx" itself or the "gateway").
CORPUS: list[tuple[str, str | None, str | bytes, str, str]] = [
    # Exact, query-free, ASCII: nginx answers, in every spelling it was given.
    ("home", "khabarovskadm.ru", "/", "GET", "nginx"),
    ("home-index-php", "khabarovskadm.ru", "/index.php", "GET", "nginx"),
    ("home-index-upper", "khabarovskadm.ru", "/INDEX.PHP", "GET", "nginx"),
    ("exact", "khabarovskadm.ru", "/contacts/", "GET", "nginx"),
    ("exact-no-slash", "khabarovskadm.ru", "/contacts", "GET", "nginx"),
    ("exact-ascii-case", "khabarovskadm.ru", "/CONTACTS/", "GET", "nginx"),
    ("exact-index-mixed-case", "khabarovskadm.ru", "/Contacts/Index.PHP", "GET", "nginx"),
    ("exact-index-html", "khabarovskadm.ru", "/contacts/index.html", "GET", "nginx"),
    ("exact-head", "khabarovskadm.ru", "/contacts/", "HEAD", "nginx"),
    ("alias", "www.khabarovskadm.ru", "/contacts/", "GET", "nginx"),
    ("host-case-and-port", "WWW.Khabarovskadm.RU:80", "/contacts/", "GET", "nginx"),
    ("host-trailing-dot", "khabarovskadm.ru.", "/contacts/", "GET", "nginx"),
    ("host-rule-wins", "int.khabarovskadm.ru", "/", "GET", "nginx"),
    ("host-rule-index", "int.khabarovskadm.ru", "/index.php", "GET", "nginx"),
    ("host-own-exact", "edu.khabarovskadm.ru", "/contacts/", "GET", "nginx"),
    ("absolute-form-host", "khabarovskadm.ru", "http://int.khabarovskadm.ru/", "GET", "nginx"),
    ("status-302-rule-case", "khabarovskadm.ru", "/About/Team/", "GET", "nginx"),
    ("status-307", "khabarovskadm.ru", "/temp/", "GET", "nginx"),
    ("status-308", "khabarovskadm.ru", "/perm", "GET", "nginx"),
    ("punctuation", "khabarovskadm.ru", "/o'reilly(1)/", "GET", "nginx"),
    ("keep-query-without-query", "khabarovskadm.ru", "/search/", "GET", "nginx"),
    ("dash-path", "khabarovskadm.ru", "/-", "GET", "nginx"),
    # Cyrillic: the folded UTF-8 spelling (any hex case) at nginx; the rest goes on.
    ("cyrillic-utf8", "khabarovskadm.ru", CYR, "GET", "nginx"),
    ("cyrillic-hex-lower", "khabarovskadm.ru", CYR.lower(), "GET", "nginx"),
    ("cyrillic-capital", "khabarovskadm.ru", CYR_CAPITAL, "GET", "gateway"),
    ("cyrillic-upper", "khabarovskadm.ru", CYR_UPPER, "GET", "gateway"),
    ("cyrillic-1251", "khabarovskadm.ru", CYR_1251, "GET", "gateway"),
    ("cyrillic-1251-capital", "khabarovskadm.ru", "/%CD%EE%E2%EE%F1%F2%E8/", "GET", "gateway"),
    ("cyrillic-raw-bytes", "khabarovskadm.ru", "/новости/".encode(), "GET", "gateway"),
    # Spellings nginx would normalise in $uri: all go on to the gateway.
    ("double-slash", "khabarovskadm.ru", "//contacts/", "GET", "gateway"),
    ("dot-segment", "khabarovskadm.ru", "/a/../contacts/", "GET", "gateway"),
    ("dot-segment-escaped", "khabarovskadm.ru", "/a/%2e%2e/contacts/", "GET", "gateway"),
    ("single-dot", "khabarovskadm.ru", "/./contacts", "GET", "gateway"),
    ("escaped-letter", "khabarovskadm.ru", "/cont%61cts/", "GET", "gateway"),
    ("escaped-slash", "khabarovskadm.ru", "/about%2Fteam/", "GET", "gateway"),
    ("index-slash-after", "khabarovskadm.ru", "/contacts/index.php/", "GET", "gateway"),
    # Any query goes on: ignored params, empty query, conditions, keep_query.
    ("ignored-param", "khabarovskadm.ru", "/contacts/?utm_source=vk", "GET", "gateway"),
    ("empty-query", "khabarovskadm.ru", "/contacts/?", "GET", "gateway"),
    ("keep-query", "khabarovskadm.ru", f"/search/?q={BUDGET}&utm_medium=email", "GET", "gateway"),
    ("condition-int", "khabarovskadm.ru", "/press-center/news/?ELEMENT_ID=42", "GET", "gateway"),
    (
        "condition-index",
        "khabarovskadm.ru",
        "/press-center/news/index.php?ELEMENT_ID=7&PAGEN_1=2",
        "GET",
        "gateway",
    ),
    (
        "condition-wrong-type",
        "khabarovskadm.ru",
        "/press-center/news/detail.php?ID=x",
        "GET",
        "gateway",
    ),
    ("condition-literal-case", "khabarovskadm.ru", "/docs/?type=LAW", "GET", "gateway"),
    ("condition-missing", "khabarovskadm.ru", "/docs/", "GET", "gateway"),
    ("same-path-no-condition", "khabarovskadm.ru", "/press-center/news/", "GET", "nginx"),
    # Patterns and banners: the gateway.
    ("pattern", "khabarovskadm.ru", "/eng/about/Team", "GET", "gateway"),
    ("pattern-host", "edu.khabarovskadm.ru", "/school-12/", "GET", "gateway"),
    (
        "banner-410",
        "khabarovskadm.ru",
        "/bitrix/redirect.php?goto=https%3A%2F%2Fevil.example%2F",
        "GET",
        "gateway",
    ),
    ("banner-410-pattern", "khabarovskadm.ru", "/upload/iblock/x.pdf", "GET", "gateway"),
    ("host-banner-beats-every-host", "int.khabarovskadm.ru", "/contacts/", "GET", "gateway"),
    ("host-banner-index", "int.khabarovskadm.ru", "/contacts/index.php", "GET", "gateway"),
    ("dollar-target", "khabarovskadm.ru", "/price/", "GET", "gateway"),
    ("miss", "khabarovskadm.ru", "/nothing-here/", "GET", "gateway"),
    ("miss-english", "khabarovskadm.ru", "/en/nothing/", "GET", "gateway"),
    # Hosts, methods, service endpoints, hostile targets.
    ("unknown-host", "evil.example", "/contacts/", "GET", "gateway"),
    ("no-host-http10", None, "/contacts/", "GET", "gateway"),
    ("post", "khabarovskadm.ru", "/contacts/", "POST", "gateway"),
    ("service-endpoint", "khabarovskadm.ru", "/-/", "GET", "gateway"),
    ("service-unknown", "khabarovskadm.ru", "/-/nothing", "GET", "gateway"),
    ("protocol-relative", "khabarovskadm.ru", "//evil.example/", "GET", "gateway"),
    ("backslash", "khabarovskadm.ru", "/\\evil.example", "GET", "gateway"),
    ("crlf-escape", "khabarovskadm.ru", "/%0d%0aSet-Cookie:%20x=1", "GET", "gateway"),
    # nginx refuses these itself (400, no-store), as the gateway would.
    ("bad-escape", "khabarovskadm.ru", "/contacts%ZZ", "GET", "nginx"),
    ("escaped-nul", "khabarovskadm.ru", "/contacts/%00", "GET", "nginx"),
    ("undefined-1251-byte", "khabarovskadm.ru", "/%98", "GET", "gateway"),
    ("script-in-path", "khabarovskadm.ru", "/%3Cscript%3E/", "GET", "gateway"),
]

# The one known difference: nginx resolves '..' while reading the request line, before
# any configuration runs, and answers 400 when it climbs above the root, where the gateway
# stays at the root (spec §3) and answers by the map. Documented, not hidden.
REFUSED_BY_NGINX: list[tuple[str, str]] = [
    ("dot-dot-above-root", "/../contacts/"),
    ("escaped-dot-dot-above-root", "/%2e%2e/contacts/"),
]


def answer(response: Response) -> tuple[int, str | None, str | None]:
    return response.status, response.header("Location"), response.header("Cache-Control")


def send(port: int, host: str | None, target: str | bytes, method: str) -> Response:
    if host is None:  # HTTP/1.0 without Host: the request line alone
        data = b"%s %s HTTP/1.0\r\n\r\n" % (
            method.encode(),
            target if isinstance(target, bytes) else target.encode("latin-1"),
        )
        return send_raw(port, data)
    return raw_request(port, target, method=method, host=host)


def answered_by_nginx(response: Response, method: str) -> bool:
    """Say whether nginx built this response itself (its pages say so; the gateway's don't)."""
    if method != "HEAD":
        return b"<center>nginx</center>" in response.body
    return "charset" not in response.headers.get("Content-Type", "charset")


@pytest.mark.parametrize(
    ("host", "target", "method", "who"),
    [case[1:] for case in CORPUS],
    ids=[case[0] for case in CORPUS],
)
def test_nginx_answers_as_the_gateway(
    pair: Pair, host: str | None, target: str | bytes, method: str, who: str
) -> None:
    alone = send(pair.gateway.port, host, target, method)
    edge = send(pair.nginx.port, host, target, method)
    assert answer(edge) == answer(alone), (edge.raw[:300], alone.raw[:300])
    assert answered_by_nginx(edge, method) == (who == "nginx"), edge.raw[:300]
    assert not answered_by_nginx(alone, method)


def test_corpus_covers_every_outcome(pair: Pair) -> None:
    statuses = {send(pair.gateway.port, h, t, m).status for _, h, t, m, _ in CORPUS}
    assert {301, 302, 307, 308, 400, 404, 405, 410} <= statuses
    assert sum(who == "nginx" for *_, who in CORPUS) >= 20


@pytest.mark.parametrize(
    "target", [t for _, t in REFUSED_BY_NGINX], ids=[i for i, _ in REFUSED_BY_NGINX]
)
def test_nginx_refuses_before_the_map(pair: Pair, target: str) -> None:
    edge = raw_request(pair.nginx.port, target)
    alone = raw_request(pair.gateway.port, target)
    assert answer(edge) == (400, None, "no-store")
    assert answered_by_nginx(edge, "GET")
    assert answer(alone) == (301, f"{KHV}/contacts/", "public, max-age=600")


def test_bundled_map_export_passes_nginx_t(nginx_binary: str, tmp_path: Path) -> None:
    text, _ = export_nginx(load_map(BUNDLED_MAP), listen="127.0.0.1:1", upstream="127.0.0.1:2")
    (tmp_path / "bundled.conf").write_text(text, encoding="utf-8")
    done = Nginx(nginx_binary, tmp_path).config_test("bundled.conf")
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


@pytest.mark.parametrize(
    "target",
    [
        "/a//b/%2e%2e/Nothing%41?x=%D0%B1",
        "/%ED%EE%E2%EE%F1%F2%E8/nothing/",
        "/upload/./x%20y.pdf?utm_source=vk",
    ],
    ids=["slashes-dots-escapes", "windows-1251", "banner-410-raw-query"],
)
def test_nginx_passes_the_raw_uri_on(pair: Pair, target: str) -> None:
    # The banner's archived-copy link holds the raw path and query as the gateway got them:
    # through nginx it must be byte for byte the same (no merge_slashes, no decoding).
    alone = raw_request(pair.gateway.port, target)
    edge = raw_request(pair.nginx.port, target)
    assert edge.status == alone.status
    assert f"http://khabarovskadm.ru{target}".encode() in alone.body
    assert edge.body == alone.body
