"""Small web archives built in the tests with warcio's own writer, and a map that serves them.

Owns ``Capture`` (one record to write), ``write_warc`` and ``write_wacz`` (the files),
the fixture old site ``OLD_SITE`` (Bitrix-like pages in windows-1251 and UTF-8, a PDF,
a captured 301 and 404, a revisit, a page on a second host, Cyrillic paths, query
pages) and ``archive_map`` (a map file whose ``archive.warc`` lists them).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


@dataclass(frozen=True)
class Capture:
    """One record to write: a response (or a revisit of `refers`) with its HTTP headers."""

    url: str
    body: bytes = b""
    status: str = "200 OK"
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "text/html"),)
    date: str = "2021-02-20T10:00:00Z"
    kind: str = "response"
    refers: tuple[str, str] | None = None  # a revisit's (URL, date) of the original
    extra: tuple[tuple[str, str], ...] = field(default=())  # more WARC headers


def cp1251_page(title: str, text: str, *, meta: bool = False) -> bytes:
    """Return a Bitrix-like page in windows-1251, with a <meta> charset if `meta`."""
    head = (
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">' if meta else ""
    )
    return (
        f"<html><head>{head}<title>{title}</title></head><body>"
        f'<div class="news-detail"><h1>{title}</h1><p>{text}</p></div>'
        '<a href="/press-center/news/">Возврат к списку</a></body></html>'
    ).encode("cp1251")


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n" + bytes(range(256)) * 8

OLD_SITE: tuple[Capture, ...] = (
    Capture(
        "http://khabarovskadm.ru/press-center/news/detail.php?ID=7",
        cp1251_page("Новости города", "Хабаровск отметил юбилей."),
        headers=(("Content-Type", "text/html; charset=windows-1251"),),
    ),
    Capture(
        "http://khabarovskadm.ru/city/history/",
        cp1251_page("История города", "Основан в 1858 году.", meta=True),
    ),
    Capture("http://khabarovskadm.ru/city/nocharset/", cp1251_page("Без кодировки", "Текст.")),
    Capture(
        "http://khabarovskadm.ru/en/news/",
        b"<html><body><h1>News in English</h1><script>alert(1)</script></body></html>",
        headers=(("Content-Type", "text/html; charset=utf-8"),),
    ),
    Capture(
        "http://khabarovskadm.ru/docs/report.pdf",
        PDF,
        headers=(("Content-Type", "application/pdf"),),
    ),
    Capture(
        "http://khabarovskadm.ru/old-page/",
        status="301 Moved Permanently",
        headers=(("Location", "http://khabarovskadm.ru/city/history/"),),
    ),
    Capture("http://khabarovskadm.ru/missing/", b"not found", status="404 Not Found"),
    Capture(
        "http://int.khabarovskadm.ru/about/",
        "<html><body><p>Второй хост</p></body></html>".encode(),
        headers=(("Content-Type", "text/html; charset=utf-8"),),
    ),
    Capture(
        "http://khabarovskadm.ru/%D0%B4%D0%BE%D0%BA%D1%83%D0%BC%D0%B5%D0%BD%D1%82%D1%8B/",
        "<html><body>документы</body></html>".encode(),
        headers=(("Content-Type", "text/html; charset=utf-8"),),
    ),
    Capture(
        "http://khabarovskadm.ru/search/?q=1&page=2",
        b"<html><body>query page</body></html>",
    ),
    Capture(
        "http://khabarovskadm.ru/city/history/",
        kind="revisit",
        date="2021-02-25T10:00:00Z",
        refers=("http://khabarovskadm.ru/city/history/", "2021-02-20T10:00:00Z"),
    ),
    Capture("http://elsewhere.example/", b"<html>other host</html>"),
    Capture("dns:khabarovskadm.ru", b"1.2.3.4", kind="resource"),
)


def write_warc(path: Path, captures: Iterable[Capture], *, gzip: bool = True) -> Path:
    """Write the captures (and a request record before each response) to a WARC file."""
    with open(path, "wb") as out:
        writer = WARCWriter(out, gzip=gzip)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "tests"}))
        for capture in captures:
            record = _record(writer, capture)
            writer.write_record(record)
            record.raw_stream.close()  # warcio buffers a payload of unknown length in a temp file
    return path


def _record(writer: WARCWriter, capture: Capture) -> Any:
    warc_headers = [("WARC-Date", capture.date), *capture.extra]
    if capture.kind == "resource":
        return writer.create_warc_record(
            capture.url,
            "resource",
            payload=io.BytesIO(capture.body),
            warc_content_type="text/dns",
            warc_headers_dict=dict(warc_headers),
        )
    http = StatusAndHeaders(capture.status, list(capture.headers), protocol="HTTP/1.1")
    if capture.kind == "revisit":
        assert capture.refers is not None
        return writer.create_revisit_record(
            capture.url,
            digest="sha1:UNKNOWN",
            refers_to_uri=capture.refers[0],
            refers_to_date=capture.refers[1],
            http_headers=http,
            warc_headers_dict=dict(warc_headers),
        )
    return writer.create_warc_record(
        capture.url,
        "response",
        payload=io.BytesIO(capture.body),
        http_headers=http,
        warc_headers_dict=dict(warc_headers),
    )


def write_wacz(path: Path, warcs: Sequence[tuple[str, bytes]]) -> Path:
    """Write a WACZ: the WARCs stored uncompressed under archive/, an index and a datapackage."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in warcs:
            zf.writestr(zipfile.ZipInfo(f"archive/{name}"), data, zipfile.ZIP_STORED)
        zf.writestr("indexes/index.cdxj", "")
        zf.writestr("datapackage.json", '{"profile": "data-package", "resources": []}')
    return path


MAP_TEMPLATE = """\
version: 1
site:
  new_site: https://khv27.ru
hosts:
  khabarovskadm.ru:
    aliases: [www.khabarovskadm.ru]
  int.khabarovskadm.ru: {{}}
  "*.khabarovskadm.ru": {{}}
archive:
  notice:
    ru: "Старая версия сайта является архивной."
    en: "The old version of the site is an archive."
  warc: {warc}
rules:
{rules}
"""


def archive_map(folder: Path, warc: Sequence[str], rules: Sequence[str] = ()) -> Path:
    """Write a map in `folder` whose archive.warc lists `warc` (and some rules); return it."""
    body = "\n".join(f"  - {rule}" for rule in rules) or "  []"
    if not rules:
        body = ""
    text = MAP_TEMPLATE.format(warc="[" + ", ".join(f'"{w}"' for w in warc) + "]", rules=body)
    if not rules:
        text = text.replace("rules:\n", "")
    path = folder / "redirects.yaml"
    path.write_text(text, encoding="utf-8")
    return path
