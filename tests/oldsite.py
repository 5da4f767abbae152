"""The demo's old site (docs/examples/old-site/): served on loopback, crawled by real wget, packed.

Owns the three steps a site owner takes before switching a site off, done for real
on the small Bitrix-like site of docs/examples/old-site/ (its site.json says what
each URL answers: file, status, headers):

- ``OldSite``: an ``http.server`` on 127.0.0.1 that answers for the old host names.
  It routes by the host a request names, in its absolute-form target (what a client
  sends to a proxy) or else its Host header, so wget reaches "khabarovskadm.ru"
  through ``-e http_proxy=127.0.0.1:PORT`` and nothing leaves the machine;
- ``crawl``: the real ``wget --mirror --page-requisites --warc-file`` over both hosts
  (installed with apt-get when missing, as nginx and Chromium are);
- ``pack_wacz``: a WACZ package of that WARC. py-wacz is not a dependency of the
  project, so the zip is built here with zipfile, as WACZ 1.1.1 lays it out: the WARC
  stored uncompressed under ``archive/``, a CDXJ index (``indexes/index.cdxj``,
  written with warcio's reader, keys in SURT form), ``pages/pages.jsonl`` and a
  ``datapackage.json`` with each file's size and SHA-256.

``write_map`` writes a map serving them, with the two rules the demo shows: a 301
that wins over a captured page, and a 410 that withholds one. Run as a module it
builds the whole demo into a folder:

    .venv/bin/python -m tests.oldsite /tmp/old-site-demo
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_to_bytes, urlsplit

from tests.support import REPO, apt_install

SITE = REPO / "docs" / "examples" / "old-site"
HOSTS = ("khabarovskadm.ru", "int.khabarovskadm.ru")
START_URLS = tuple(f"http://{host}/" for host in HOSTS)
WGET = "/usr/bin/wget"
WGET_TIMEOUT = 60  # seconds for the whole crawl; it takes well under one


@dataclass(frozen=True)
class Entry:
    """What one URL of the old site answers."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def _entry(spec: dict[str, Any]) -> Entry:
    status = int(spec.get("status", 200))
    if "location" in spec:
        body = b'<html><body><a href="%s">Moved</a></body></html>' % spec["location"].encode()
        return Entry(
            status,
            (("Location", spec["location"]), ("Content-Type", "text/html")),
            body,
        )
    return Entry(status, (("Content-Type", spec["type"]),), (SITE / spec["file"]).read_bytes())


@dataclass(frozen=True)
class Site:
    """The site's answers by URL (``http://host/path?query``, the path unescaped), and its 404."""

    urls: dict[str, Entry]
    not_found: Entry

    @classmethod
    def load(cls, folder: Path = SITE) -> Site:
        manifest = json.loads((folder / "site.json").read_text(encoding="utf-8"))
        not_found = _entry({**manifest["not_found"], "status": 404})
        return cls({url: _entry(spec) for url, spec in manifest["urls"].items()}, not_found)


def url_key(target: str, host_header: str) -> str:
    """Return the key a request finds its answer by: its host, unescaped path and query."""
    parts = urlsplit(target)
    host = (parts.hostname or host_header.rpartition(":")[0] or host_header).lower()
    raw = parts.path or "/"
    # A page in windows-1251 without a declared charset makes wget escape its Cyrillic
    # links in windows-1251, not UTF-8; the old site answered both spellings.
    path = unquote(raw, encoding="utf-8" if _valid_escapes(raw) else "cp1251", errors="replace")
    return f"http://{host}{path}" + (f"?{parts.query}" if parts.query else "")


def _valid_escapes(path: str) -> bool:
    """Say whether a path's %-escapes spell UTF-8."""
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OldSite

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        key = url_key(self.path, self.headers.get("Host", ""))
        with self.server.lock:
            self.server.requested.append(key)
        entry = self.server.site.urls.get(key, self.server.site.not_found)
        self.send_response(entry.status)
        for name, value in entry.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(entry.body)))
        self.end_headers()
        if body:
            self.wfile.write(entry.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: what was asked for is in `requested`."""


class OldSite(ThreadingHTTPServer):
    """The old site on a free loopback port; `requested` lists the URLs asked for, in order."""

    daemon_threads = True

    def __init__(self, site: Site | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.site = site or Site.load()
        self.requested: list[str] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def __enter__(self) -> OldSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


def find_or_install_wget() -> tuple[str | None, str]:
    """(path to wget, '') or (None, why it is missing and could not be installed)."""
    found = shutil.which("wget") or (WGET if os.access(WGET, os.X_OK) else None)
    if found:
        return found, ""
    why = apt_install("--no-install-recommends", "wget")
    found = shutil.which("wget")
    return (found, "") if found else (None, why or "apt-get install wget left no wget")


@dataclass
class Crawl:
    """What one wget run left: the WARC, the mirror folder, and what the site was asked for."""

    warc: Path
    mirror: Path
    requested: list[str] = field(default_factory=list)
    log: str = ""


def crawl(wget: str, folder: Path, *, name: str = "old-site", site: Site | None = None) -> Crawl:
    """Serve the old site and mirror it with wget into `folder`/`name`.warc.gz."""
    folder.mkdir(parents=True, exist_ok=True)
    mirror = folder / "mirror"
    with OldSite(site) as server:
        command = [
            wget,
            "--no-config",  # no /etc/wgetrc or ~/.wgetrc: the flags below are the whole setup
            "--mirror",
            "--page-requisites",
            "--span-hosts",
            f"--domains={','.join(HOSTS)}",
            "-e",
            "robots=off",
            "-e",
            "use_proxy=yes",
            "-e",
            f"http_proxy=127.0.0.1:{server.port}",
            "--tries=1",
            "--timeout=5",
            f"--warc-file={folder / name}",
            "--no-verbose",
            f"--directory-prefix={mirror}",
            *START_URLS,
        ]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        done = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            encoding="utf-8",
            errors="replace",  # wget logs a windows-1251 URL's bytes as they are
            timeout=WGET_TIMEOUT,
            check=False,
        )
        requested = list(server.requested)
    # 8: "server issued an error response" -- the captured 404 is one, on purpose.
    if done.returncode not in (0, 8):
        raise RuntimeError(f"wget exited with {done.returncode}:\n{done.stderr[-3000:]}")
    warc = folder / f"{name}.warc.gz"
    if not warc.is_file():
        raise RuntimeError(f"wget wrote no {warc}:\n{done.stderr[-3000:]}")
    return Crawl(warc, mirror, requested, done.stderr)


# --- WACZ ------------------------------------------------------------------------------------


def surt(url: str) -> str:
    """Return a URL's SURT key as CDXJ indexes write it: ``ru,khabarovskadm)/path?query``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().removeprefix("www.")
    key = ",".join(reversed(host.split("."))) + ")" + (parts.path or "/").lower()
    return key + (f"?{parts.query.lower()}" if parts.query else "")


def cdxj_lines(warc: Path, filename: str) -> list[str]:
    """Index a WARC's response and revisit records as CDXJ lines, read with warcio."""
    from warcio.archiveiterator import ArchiveIterator

    lines = []
    with open(warc, "rb") as fh:
        iterator = ArchiveIterator(fh)
        for record in iterator:
            if record.rec_type not in ("response", "revisit"):
                continue
            url = record.rec_headers.get_header("WARC-Target-URI")
            when = record.rec_headers.get_header("WARC-Date")
            http = record.http_headers
            fields = {
                "url": url,
                "mime": (http.get_header("Content-Type") or "").partition(";")[0] if http else "",
                "status": http.get_statuscode() if http else "",
                "digest": record.rec_headers.get_header("WARC-Payload-Digest") or "",
                "length": 0,
                "offset": iterator.get_record_offset(),
                "filename": filename,
            }
            iterator.read_to_end()
            fields["length"] = iterator.get_record_length()
            stamp = datetime.fromisoformat(when.replace("Z", "+00:00")).strftime("%Y%m%d%H%M%S")
            lines.append(f"{surt(url)} {stamp} {json.dumps(fields)}")
    return sorted(lines)


@dataclass(frozen=True)
class Captured:
    """A response record as warcio reads it: when, what status, which headers, what bytes."""

    date: str
    status: int
    content_type: str
    location: str
    payload: bytes


def read_captures(warc: Path) -> dict[str, Captured]:
    """Return each target URI's latest response (the later record at equal dates)."""
    from warcio.archiveiterator import ArchiveIterator

    found: dict[str, Captured] = {}
    with open(warc, "rb") as fh:
        for record in ArchiveIterator(fh):
            if record.rec_type != "response":
                continue
            http = record.http_headers
            url = record.rec_headers.get_header("WARC-Target-URI")
            captured = Captured(
                record.rec_headers.get_header("WARC-Date"),
                int(http.get_statuscode()),
                http.get_header("Content-Type") or "",
                http.get_header("Location") or "",
                record.content_stream().read(),
            )
            if url not in found or captured.date >= found[url].date:
                found[url] = captured
    return found


def pack_wacz(warc: Path, wacz: Path, *, title: str = "khabarovskadm.ru") -> Path:
    """Pack one WARC into a WACZ (see the module's docstring for the layout)."""
    name = warc.name
    index = "\n".join(cdxj_lines(warc, name)) + "\n"
    pages = [json.dumps({"format": "json-pages-1.0", "id": "pages", "title": "All Pages"})]
    pages += [
        json.dumps({"url": url, "ts": "2021-02-28T00:00:00Z"}) for url in START_URLS
    ]  # the seeds
    files: dict[str, bytes] = {
        "indexes/index.cdxj": index.encode(),
        "pages/pages.jsonl": ("\n".join(pages) + "\n").encode(),
    }
    warc_bytes = warc.read_bytes()
    resources = [
        {
            "name": path.rpartition("/")[2],
            "path": path,
            "hash": "sha256:" + hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
        for path, data in ((f"archive/{name}", warc_bytes), *files.items())
    ]
    package = {
        "profile": "data-package",
        "wacz_version": "1.1.1",
        "title": title,
        "software": "tests/oldsite.py (zipfile, warcio)",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "resources": resources,
    }
    with zipfile.ZipFile(wacz, "w") as zf:
        # A WACZ stores its WARCs uncompressed, so a record is read by seeking in the zip.
        zf.writestr(zipfile.ZipInfo(f"archive/{name}"), warc_bytes, zipfile.ZIP_STORED)
        for path, data in files.items():
            zf.writestr(path, data, zipfile.ZIP_DEFLATED)
        zf.writestr("datapackage.json", json.dumps(package, indent=2), zipfile.ZIP_DEFLATED)
    return wacz


# --- the map ---------------------------------------------------------------------------------

NOTICE_RU = (
    "С 01.03.2021 осуществлен запуск новой версии сайта администрации города Хабаровска"  # noqa: RUF001
    " https://khv27.ru. Старая версия сайта khabarovskadm.ru является архивной."
)
NOTICE_EN = (
    "On 1 March 2021 the new version of the Khabarovsk City Administration website,"
    " https://khv27.ru, was launched. The old version of the site, khabarovskadm.ru,"
    " is an archive."
)
RULES = (
    # A page with an equivalent: the rule's 301 wins over its capture.
    "{from: /press-center/news/, to: /news/}",
    # A page that must not be shown again: the 410 withholds its capture.
    "{from: /personal/, status: 410}",
)


def map_text(warc: Sequence[str], rules: Sequence[str] = RULES) -> str:
    """The demo's map: both hosts, the notice, `warc` as archive.warc, and `rules`."""
    listed = ", ".join(json.dumps(w) for w in warc)
    lines = [
        "version: 1",
        "site:",
        "  new_site: https://khv27.ru",
        "hosts:",
        "  khabarovskadm.ru:",
        "    aliases: [www.khabarovskadm.ru]",
        "  int.khabarovskadm.ru: {}",
        "archive:",
        "  notice:",
        f"    ru: {json.dumps(NOTICE_RU, ensure_ascii=False)}",
        f"    en: {json.dumps(NOTICE_EN)}",
        f"  warc: [{listed}]",
        "rules:",
        *(f"  - {rule}" for rule in rules),
    ]
    return "\n".join(lines) + "\n"


def write_map(
    folder: Path,
    warc: Sequence[str],
    rules: Sequence[str] = RULES,
    *,
    name: str = "redirects.yaml",
) -> Path:
    """Write the demo's map as `folder`/`name`; `warc` relative to `folder`."""
    path = folder / name
    path.write_text(map_text(warc, rules), encoding="utf-8")
    return path


def main(argv: Sequence[str]) -> int:
    """Build the demo into a folder: the WARC, the WACZ and a map serving the WARC."""
    if len(argv) != 1:
        print("usage: python -m tests.oldsite FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[0]).resolve()
    wget, why = find_or_install_wget()
    if wget is None:
        print(f"no wget: {why}", file=sys.stderr)
        return 1
    done = crawl(wget, folder)
    wacz = pack_wacz(done.warc, folder / "old-site.wacz")
    path = write_map(folder, [done.warc.name])
    print(f"crawled {len(done.requested)} URLs into {done.warc}")
    print(f"packed {wacz}")
    print(f"map: {path}  (archive.warc: [{done.warc.name}]; or [{wacz.name}])")
    print(f"serve it: GATEWAY_MAP={path} make run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
