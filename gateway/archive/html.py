"""An archived HTML page made safe to show under the notice (spec §8): charset, rewriting, banner.

Owns reading a captured page in its own charset as a browser would (``page_charset``:
a byte-order mark, the HTTP header, ``<meta>`` or the XML declaration, valid UTF-8,
else windows-1251), and rewriting it token by token with the standard library's HTML
tokenizer (``html.parser``; no regular expression ever reads HTML) so that:

- no script runs and nothing submits: ``<script>``, ``<noscript>``, frames, objects and
  embeds go with their content; ``on*`` attributes, ``javascript:`` URLs, forms'
  ``action`` and ``formaction`` are dropped (the CSP forbids them as well);
- nothing takes the visitor elsewhere on its own: ``<meta http-equiv>`` (refresh,
  charset) and ``<base>`` are dropped (a ``<base>`` still sets how links resolve);
- nothing is fetched from a host that is not served: every URL attribute is resolved
  against the page's own URL; on a served host it becomes a path (or ``//host/path``),
  elsewhere a resource is dropped (links a visitor clicks stay);
- the banner sits at the top of ``<body>``, its look locked by ``!important`` rules in
  the first cascade layer (which beat every unlayered ``!important`` rule of the page,
  whatever their specificity), and the page's own body in an isolated stacking context
  below it, so that no ``z-index`` of the page can cover the banner.

Pure: no Flask.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from html import escape
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

FALLBACK = "windows-1251"  # the old site's own
BANNER_TAG = "khv-archive-notice"
PAGE_TAG = "khv-archived-page"
_PRESCAN = 4096  # bytes of the page searched for a <meta> charset (browsers: 1024)

VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "keygen",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)
DROPPED_WITH_CONTENT = frozenset(
    [
        "script",
        "noscript",
        "iframe",
        "frame",
        "frameset",
        "object",
        "applet",
        "embed",
        "noembed",
        "template",
    ]
)
HEAD_ONLY = frozenset(
    ["html", "head", "title", "meta", "link", "style", "script", "base", "noscript", "template"]
)
NAVIGATION = frozenset({"a", "area"})
URL_ATTRIBUTES = frozenset(
    [
        "href",
        "src",
        "poster",
        "background",
        "data",
        "codebase",
        "cite",
        "longdesc",
        "lowsrc",
        "dynsrc",
        "xlink:href",
        "usemap",
        "icon",
    ]
)
DROPPED_ATTRIBUTES = frozenset(
    [
        "action",
        "formaction",
        "ping",
        "srcdoc",
        "nonce",
        "manifest",
        "http-equiv",
        "integrity",
        "autofocus",
    ]
)
FETCH_RELS = frozenset(
    ["preload", "prefetch", "dns-prefetch", "preconnect", "prerender", "modulepreload", "manifest"]
)
# The banner's look: in the first cascade layer, so its !important rules beat the
# page's !important rules (cascade layers reverse for important declarations).
BANNER_CSS = (
    "@layer khv-archive-banner{"
    f"{BANNER_TAG},{BANNER_TAG} *,{BANNER_TAG}::before,{BANNER_TAG}::after,"
    f"{BANNER_TAG} *::before,{BANNER_TAG} *::after{{all:initial!important}}"
    "html,html body{display:block!important;visibility:visible!important;"
    "opacity:1!important;filter:none!important;transform:none!important;"
    "translate:none!important;scale:none!important;rotate:none!important;"
    "clip-path:none!important;mask:none!important;content-visibility:visible!important;"
    "position:static!important;margin-top:0!important;zoom:1!important}"
    "html::before,html::after,html body::before,html body::after"
    "{content:none!important;display:none!important}"
    f"html body {BANNER_TAG}#{BANNER_TAG}{{display:block!important;"
    "position:relative!important;z-index:2147483647!important;box-sizing:border-box!important;"
    "margin:0!important;padding:10px 16px!important;background:#1d4f91!important;"
    "color:#fff!important;font:15px/1.45 system-ui,sans-serif!important;"
    "text-align:start!important;visibility:visible!important;opacity:1!important;"
    "border-bottom:3px solid #f9a825!important;overflow-wrap:anywhere!important}"
    f"html body {BANNER_TAG}#{BANNER_TAG} khv-archive-line{{display:block!important;"
    "font:inherit!important;color:inherit!important;margin:2px 0!important;"
    "visibility:visible!important}"
    f"html body {BANNER_TAG}#{BANNER_TAG} a{{display:inline!important;font:inherit!important;"
    "color:#fff!important;text-decoration:underline!important;cursor:pointer!important;"
    "visibility:visible!important;font-weight:600!important}"
    f"html body {PAGE_TAG}{{display:block!important;position:relative!important;"
    "z-index:0!important;isolation:isolate!important;visibility:inherit!important}"
    "}"
)


def _codec(label: str) -> str | None:
    """Return the Python codec of a charset label, or None when there is none."""
    label = label.strip().strip("\"'").lower()
    if not label:
        return None
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return "utf-8" if name in ("utf-8", "utf-8-sig") else name


def _header_charset(content_type: str) -> str | None:
    """Return the charset parameter of a Content-Type value, or None."""
    for part in content_type.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            return _codec(value)
    return None


class _MetaCharset(HTMLParser):
    """Finds the first ``<meta charset>`` or ``<meta http-equiv=content-type>`` of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta" or self.found is not None:
            return
        values = {name: value or "" for name, value in attrs}
        if "charset" in values:
            self.found = _codec(values["charset"])
        elif values.get("http-equiv", "").lower() == "content-type":
            self.found = _header_charset(values.get("content", ""))


def page_charset(body: bytes, content_type: str) -> str:
    """Return the codec a browser would read the page with (spec §8)."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
    ):
        if body.startswith(bom):
            return name
    declared = _header_charset(content_type)
    if declared is None:
        declared = _declared_in_page(body[:_PRESCAN])
    if declared is not None and declared != "utf-8":
        return declared
    if _valid_utf8(body):
        return "utf-8"
    return FALLBACK  # a declared UTF-8 that the bytes are not counts as undeclared


def _declared_in_page(head: bytes) -> str | None:
    """Return the charset a page's first bytes declare (<meta>, XML declaration), or None."""
    text = head.decode("latin-1")
    if text.startswith("<?xml"):
        declaration = text[: text.find("?>") + 1]
        _, found, rest = declaration.partition("encoding=")
        if found and rest[:1] in "\"'":
            return _codec(rest[1:].partition(rest[0])[0])
    scanner = _MetaCharset()
    try:
        scanner.feed(text)
    except Exception:  # a tokenizer fault on hostile bytes: no declaration found
        return None
    return scanner.found


def _valid_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A page cut inside its last character (MAX_HTML_BYTES) is still UTF-8.
        return exc.start >= len(body) - 3 and exc.reason == "unexpected end of data"
    return True


def decode_page(body: bytes, content_type: str) -> str:
    """Return the page's text, read in its own charset; bytes it does not define replaced."""
    charset = page_charset(body, content_type)
    try:
        return body.decode(charset, errors="replace").lstrip("\ufeff")
    except LookupError:
        return body.decode(FALLBACK, errors="replace")


def banner_html(lang: str, lines: list[list[tuple[str, str | None]]]) -> str:
    """Return the banner's markup: lines of (text, link or None), everything escaped."""
    out = [f'<{BANNER_TAG} id="{BANNER_TAG}" role="note" lang="{escape(lang)}">']
    for parts in lines:
        out.append("<khv-archive-line>")
        for text, href in parts:
            if href:
                out.append(f'<a href="{escape(href)}" hreflang="ru">{escape(text)}</a>')
            else:
                out.append(escape(text))
        out.append("</khv-archive-line>")
    out.append(f"</{BANNER_TAG}>")
    return "".join(out)


HostOf = Callable[[str], "str | None"]
# A path from the root, of URL characters but ";" (urljoin drops an empty last ";params"),
# with no "//" host and no "\\", space or control character.
_ROOT_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,=:@%/?#]*")


class _Rewriter(HTMLParser):
    """Re-emits a page token by token, dropping and rewriting as the module says."""

    def __init__(self, page_url: str, request_host: str, host_of: HostOf, banner: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = page_url
        self.request_host = request_host
        self.host_of = host_of
        self.banner = banner
        self.out: list[str] = []
        self.styled = False
        self.in_body = False
        self.skipping: list[str] = []  # the dropped element being skipped, nested
        self.in_title = False  # a <title>'s text is no sign of the body
        self._base_of: str | None = None  # the base whose host _base_served is
        self._base_served: str | None = None

    # --- structure ----------------------------------------------------------------------

    def _style(self) -> None:
        if not self.styled:
            self.styled = True
            self.out.append(f'<meta charset="utf-8"><style>{BANNER_CSS}</style>')

    def _body(self) -> None:
        if not self.in_body:
            self._style()
            self.in_body = True
            self.out.append(self.banner + f"<{PAGE_TAG}>")

    def finish(self) -> str:
        """Close the page; return the rewritten HTML."""
        self.close()
        self._body()
        self.out.append(f"</{PAGE_TAG}></body></html>\n")
        return "".join(self.out)

    # --- tokens ---------------------------------------------------------------------------

    def handle_decl(self, decl: str) -> None:
        if not self.styled and decl.lower().startswith("doctype"):
            self.out.append(f"<!{escape(decl, quote=False)}>")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closed=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closed=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], *, closed: bool) -> None:
        if self.skipping:
            if tag == self.skipping[-1] and tag not in VOID and not closed:
                self.skipping.append(tag)
            return
        if tag.startswith("khv-") or tag == "plaintext" or not _tag_ok(tag):
            return  # the page cannot fake the banner's elements, nor turn the rest into text
        if tag in DROPPED_WITH_CONTENT:
            if tag not in VOID and not closed:
                self.skipping.append(tag)
            return
        if tag == "base":
            href = dict(attrs).get("href")
            if href:
                self.base = urljoin(self.base, href.strip())
            return
        if tag == "html":
            if not self.styled:
                self.out.append(self._tag(tag, attrs, closed))
            return
        if tag == "meta" and any(n in ("http-equiv", "charset") for n, _ in attrs):
            return
        if tag == "link" and not self._link_allowed(attrs):
            return
        if tag == "body" or tag not in HEAD_ONLY:
            if tag == "body":
                self._style()
                self.out.append(self._tag(tag, attrs, closed))
                self._body()
                return
            self._body()
        self._style()
        self.in_title = tag == "title" and not closed
        self.out.append(self._tag(tag, attrs, closed))

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag in ("body", "html") or tag.startswith("khv-") or tag in DROPPED_WITH_CONTENT:
            return
        if not _tag_ok(tag):
            return
        if tag in VOID:
            return
        if tag == "title":
            self.in_title = False
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.cdata_elem is not None:  # a <style>'s text: raw, and no "</" to end it early
            self.out.append(data.replace("</", "<\\/"))
            return
        if not self.styled and not data.strip():
            return  # whitespace before <html> (after the doctype): emitting it would drop <html>
        if data.strip() and not self.in_body and not self.in_title:
            self._body()
        self._style()
        self.out.append(escape(data, quote=False))

    def handle_comment(self, data: str) -> None:
        """Drop comments (old IE's conditional comments load scripts)."""

    def handle_pi(self, data: str) -> None:
        """Drop processing instructions."""

    def unknown_decl(self, data: str) -> None:
        """Drop CDATA sections and other declarations."""

    # --- attributes -----------------------------------------------------------------------

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> str:
        parts = [tag]
        for name, value in attrs:
            kept = self._attribute(tag, name, value or "")
            if kept is not None:
                parts.append(f'{name}="{escape(kept)}"' if kept or value else name)
        slash = "/" if closed and tag not in VOID else ""
        return "<" + " ".join(parts) + slash + ">"

    def _attribute(self, tag: str, name: str, value: str) -> str | None:
        """Return an attribute's value as kept, or None to drop it."""
        if name.startswith("on") or name in DROPPED_ATTRIBUTES or not _name_ok(name):
            return None
        if name in URL_ATTRIBUTES:
            return self._url(value, navigation=tag in NAVIGATION and name == "href")
        if name in ("srcset", "imagesrcset"):
            kept = []
            for candidate in value.split(","):
                url, _, descriptor = candidate.strip().partition(" ")
                rewritten = self._url(url, navigation=False) if url else None
                if rewritten:
                    kept.append(f"{rewritten} {descriptor.strip()}".strip())
            return ", ".join(kept) if kept else None
        return value

    def _link_allowed(self, attrs: list[tuple[str, str | None]]) -> bool:
        """Say whether a <link> stays: it fetches nothing, or only from a served host."""
        values = {n: v or "" for n, v in attrs}
        rels = set(values.get("rel", "").lower().split())
        if rels & FETCH_RELS:
            return False
        href = values.get("href", "")
        return not href or self._url(href, navigation=False) is not None

    def _base_host(self) -> str | None:
        """Return the served host of the page's base URL (None: not served, or not http(s))."""
        if self._base_of != self.base:
            self._base_of = self.base
            self._base_served = None
            try:
                parts = urlsplit(self.base)
            except ValueError:
                return None
            if parts.scheme.lower() in ("http", "https") and parts.netloc:
                self._base_served = self.host_of(parts.netloc)
        return self._base_served

    def _url(self, value: str, *, navigation: bool) -> str | None:
        """Resolve a URL against the page's; keep it only where it fetches from a served host."""
        value = value.strip()
        if not value or value.startswith("#"):
            return value
        if _ROOT_PATH.fullmatch(value) and "/." not in value.partition("?")[0].partition("#")[0]:
            # A path from the root on the page's own host (most of an old site's links): what
            # urljoin and urlsplit would give, without them (it is a third of a page's cost).
            host = self._base_host()
            if host is not None:
                rest, _, fragment = value.partition("#")
                path, _, query = rest.partition("?")
                tail = path + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")
                return tail if host == self.request_host else f"//{host}{tail}"
        try:
            absolute = urljoin(self.base, value)
            parts = urlsplit(absolute)
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme in ("mailto", "tel") and navigation:
            return absolute
        if scheme == "data" and not navigation:
            return absolute
        if scheme not in ("http", "https"):
            return None
        host = self.host_of(parts.netloc) if parts.netloc else None
        if host is None:
            return absolute if navigation else None
        path = parts.path or "/"
        tail = path + (f"?{parts.query}" if parts.query else "")
        tail += f"#{parts.fragment}" if parts.fragment else ""
        return tail if host == self.request_host else f"//{host}{tail}"


_TAG_NAME = re.compile(r"[A-Za-z][\w\-:.]*")  # \w: str.isalnum() and "_", as tested


def _tag_ok(tag: str) -> bool:
    """Say whether a tag name is one a browser reads as the same element (letters first)."""
    return _TAG_NAME.fullmatch(tag) is not None


_NAME_BREAKS = re.compile("[ \"'<>/=`]")


def _name_ok(name: str) -> bool:
    """Say whether an attribute name can be written back as it is."""
    return bool(name) and _NAME_BREAKS.search(name) is None and name.isprintable()


def rewrite_page(
    text: str, *, page_url: str, request_host: str, host_of: HostOf, banner: str
) -> str:
    """Return the page made safe, its links resolved, the banner on top of its body."""
    rewriter = _Rewriter(page_url, request_host, host_of, banner)
    try:
        rewriter.feed(text)
        return rewriter.finish()
    except Exception:  # the tokenizer on hostile input: keep what was emitted, closed
        rewriter.skipping.clear()
        rewriter.rawdata = ""
        rewriter._body()
        return "".join(rewriter.out) + f"</{PAGE_TAG}></body></html>\n"
