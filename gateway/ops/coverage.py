"""``gateway coverage``: replay real traffic through the map and say what it misses.

Reads access logs (combined or common log format, with or without a leading
virtual host; the gateway's own JSON access-log lines; plain lists of URLs; ``.gz``
too) and answers each request with ``gateway.decide.decide`` — the server's own
function — without HTTP. Decisions are cached per distinct (host, raw target), so
a million log lines cost one regular-expression match and one dict lookup each.

Counts are named ``redirect``, ``gone``, ``unmapped`` and ``skipped``. Page
furniture (css, js, images, fonts, favicon) and scanner noise (``wp-admin``,
``phpmyadmin``, ``.env``…) are skipped only when no rule answers them, as GOV.UK
Transition does; so are requests the gateway would not answer from the map at all
(other methods, unknown hosts, malformed URLs, ``/-/`` endpoints). Unmapped URLs
are grouped into draft rules, numeric segments and values collapsed into
``<int:id>``, per host, ready to paste under ``rules:``.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from gateway.canonical import LegacyURL, fold
from gateway.decide import decide
from gateway.mapfile import RedirectMap
from gateway.ops.urls import from_text
from gateway.outcomes import BadRequest, Gone, NotFound, Redirect, UnknownHost
from gateway.rules import Rule

OUTCOMES = ("redirect", "gone", "unmapped")
# One compiled expression for combined and common log format, optionally after a virtual
# host (Apache's vhost_combined "%v:%p"). Bytes: logs carry whatever the client sent.
LOG_LINE = re.compile(
    rb'(?:(?P<vhost>[^\s"\[]+) )?[^\s"\[]+ \S+ \S+ \[[^\]]*\] '
    rb'"(?P<method>[A-Za-z]+) (?P<target>[^\s"]+)(?: HTTP/[0-9.]+)?"'
)
_ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})|\\(.)")
_URL_LINE = re.compile(rb"(?i)(?:https?://|/)\S*")
_HOST_LINE = re.compile(rb"[A-Za-z0-9.-]+\.[A-Za-z]{2,}\.?(?::[0-9]+)?/\S*")

FURNITURE_EXTENSIONS = frozenset(
    [
        "css",
        "js",
        "mjs",
        "map",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "bmp",
        "ico",
        "svg",
        "webp",
        "avif",
        "tif",
        "tiff",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
    ]
)
FURNITURE_NAMES = frozenset(
    {"favicon.ico", "robots.txt", "sitemap.xml", "browserconfig.xml", "manifest.json"}
)
NOISE_SEGMENTS = frozenset(
    {
        "wp-admin",
        "wp-login.php",
        "wp-content",
        "wp-includes",
        "wp-json",
        "wp-config.php",
        "wlwmanifest.xml",
        "xmlrpc.php",
        "phpmyadmin",
        "pma",
        "myadmin",
        "mysqladmin",
        "phpinfo.php",
        ".env",
        ".git",
        ".svn",
        ".hg",
        ".aws",
        ".ds_store",
        ".vscode",
        ".idea",
        "cgi-bin",
        "boaform",
        "hnap1",
        "actuator",
        "server-status",
        "autodiscover",
        "owa",
        "vendor",
        "_ignition",
        "telescope",
        "eval-stdin.php",
        "shell.php",
        ".well-known",
    }
)
NOISE_EXTENSIONS = frozenset({"sql", "bak", "old", "swp", "asp", "aspx", "jsp", "cgi", "env"})


@dataclass(slots=True)
class _Entry:
    """What one distinct (host, raw target) comes to, and how often it was seen."""

    outcome: str  # redirect, gone, unmapped, or skipped
    reason: str  # for skipped: why
    rule: Rule | None
    url: LegacyURL | None
    hits: int = 0


@dataclass(frozen=True)
class Draft:
    """A draft rule for unmapped URLs that share a shape (numbers collapsed into ``<int:id>``)."""

    host: str
    from_text: str
    hits: int
    urls: int
    examples: tuple[tuple[str, int], ...]  # (URL as shown, hits), most hit first

    def yaml(self) -> str:
        """Return the draft as a YAML rule to paste under ``rules:`` (a 410 until edited)."""
        shown = ", ".join(url for url, _ in self.examples)
        return (
            f"  # {_plural(self.hits, 'hit')}, {_plural(self.urls, 'URL')}; e.g. {shown}\n"
            f"  - from: {json.dumps(self.from_text, ensure_ascii=False)}\n"
            f"    status: 410  # or, once the new page is known: to: /...\n"
            f"    note: draft from gateway coverage"
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


@dataclass(frozen=True)
class CoverageReport:
    """What a replay of traffic found."""

    lines: int
    unreadable: int  # lines that are neither a log line, a JSON record nor a URL
    requests: dict[str, int]  # redirect, gone, unmapped, skipped: hits
    distinct: dict[str, int]  # the same, counting distinct canonical URLs
    skipped: dict[str, int]  # why requests were skipped: hits
    drafts: tuple[Draft, ...]
    unused: tuple[Rule, ...]
    rule_hits: dict[str, int]
    rules: int

    @property
    def replayed(self) -> int:
        """Return the requests answered from the map (not skipped)."""
        return sum(self.requests[o] for o in OUTCOMES)


class Replay:
    """Replay requests through the map, caching one decision per distinct (host, target)."""

    def __init__(self, redirect_map: RedirectMap, host: str | None = None) -> None:
        self.map = redirect_map
        self.host = host or redirect_map.default_host
        self.cache: dict[tuple[str | None, str], _Entry] = {}
        self.lines = 0
        self.unreadable = 0
        self.other = Counter[str]()  # skipped before deciding: unreadable lines, methods

    def feed(self, stream: Iterable[bytes]) -> None:
        """Replay every line of a byte stream (a log file, a URL list)."""
        cache = self.cache
        match = LOG_LINE.match
        other = self.other
        lines = 0
        for line in stream:
            lines += 1
            found = match(line)
            if found is not None:
                method = found["method"]
                if method != b"GET" and method != b"HEAD":
                    other["method other than GET or HEAD"] += 1
                    continue
                vhost = found["vhost"]
                target = found["target"]
                if b"\\" in target:
                    target = _unescape(target)
                key = (vhost.decode("latin-1") if vhost else None, target.decode("latin-1"))
            else:
                parsed = self._other_line(line)
                if parsed is None:
                    if line.strip():
                        self.unreadable += 1
                    continue
                if isinstance(parsed, str):
                    other[parsed] += 1
                    continue
                key = parsed
            entry = cache.get(key)
            if entry is None:
                entry = cache[key] = self._decide(*key)
            entry.hits += 1
        self.lines += lines

    def _other_line(self, line: bytes) -> tuple[str | None, str] | str | None:
        """Read a JSON access-log line or a plain URL; a str is a reason to skip it."""
        text = line.strip()
        if text.startswith(b"{"):
            try:
                record = json.loads(text)
            except ValueError:
                return None
            if not isinstance(record, dict):
                return None
            method = str(record.get("method") or "GET").upper()
            if method not in ("GET", "HEAD"):
                return "method other than GET or HEAD"
            target = record.get("path") or record.get("raw_path") or record.get("target")
            if not isinstance(target, str):
                return None
            query = record.get("query")
            if "path" not in record and isinstance(query, str) and query:
                target = f"{target}?{query}"
            host = record.get("host")
            return (host if isinstance(host, str) and host else None), _wire(target)
        if _URL_LINE.fullmatch(text):
            return None, text.decode("latin-1")
        if _HOST_LINE.fullmatch(text):
            return None, "http://" + text.decode("latin-1")
        return None

    def _decide(self, vhost: str | None, target: str) -> _Entry:
        outcome = decide(self.map, "GET", vhost or self.host, target)
        if isinstance(outcome, Redirect):
            return _Entry("redirect", "", outcome.rule, outcome.url)
        if isinstance(outcome, Gone):
            return _Entry("gone", "", outcome.rule, outcome.url)
        if isinstance(outcome, NotFound):
            reason = skip_reason(outcome.url.path)
            if reason:
                return _Entry("skipped", reason, None, outcome.url)
            return _Entry("unmapped", "", None, outcome.url)
        if isinstance(outcome, UnknownHost):
            return _Entry("skipped", "host not under hosts:", None, None)
        if isinstance(outcome, BadRequest):
            return _Entry("skipped", "malformed URL (400)", None, None)
        return _Entry("skipped", "/-/ service endpoint", None, None)

    def report(self, top: int = 20) -> CoverageReport:
        """Summarise what was replayed: counts, draft rules for the unmapped, unused rules."""
        requests = dict.fromkeys((*OUTCOMES, "skipped"), 0)
        skipped = Counter(self.other)
        canonical: dict[str, set[tuple[object, ...]]] = {o: set() for o in OUTCOMES}
        rule_hits: Counter[str] = Counter()
        unmapped: dict[tuple[object, ...], list[_Entry]] = {}
        for entry in self.cache.values():
            requests[entry.outcome] += entry.hits
            if entry.outcome == "skipped":
                skipped[entry.reason] += entry.hits
                continue
            assert entry.url is not None
            key = canonical_key(entry.url, self.map.site.case_sensitive)
            canonical[entry.outcome].add(key)
            if entry.rule is not None:
                rule_hits[entry.rule.source] += entry.hits
            else:
                unmapped.setdefault(key, []).append(entry)
        requests["skipped"] += sum(self.other.values())
        distinct = {o: len(canonical[o]) for o in OUTCOMES}
        distinct["skipped"] = sum(1 for e in self.cache.values() if e.outcome == "skipped")
        return CoverageReport(
            lines=self.lines,
            unreadable=self.unreadable,
            requests=requests,
            distinct=distinct,
            skipped=dict(skipped.most_common()),
            drafts=tuple(drafts(unmapped.values(), self.map.site.case_sensitive)[:top]),
            unused=tuple(r for r in self.map.rules if r.source not in rule_hits),
            rule_hits=dict(rule_hits),
            rules=len(self.map.rules),
        )


def _unescape(target: bytes) -> bytes:
    """Undo a log's escaping of the request line: \\xHH bytes, \\" and \\\\."""
    return _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]) if m[1] is not None else m[2], target)


def _wire(text: str) -> str:
    """Return a JSON log's target in wire form, as the server received it."""
    try:
        text.encode("latin-1")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8").decode("latin-1")


def skip_reason(path: str) -> str:
    """Say why an unanswered canonical path is page furniture or scanner noise, or ''."""
    segments = path.lower().split("/")
    last = segments[-1]
    extension = last.rpartition(".")[2] if "." in last else ""
    if last in FURNITURE_NAMES or extension in FURNITURE_EXTENSIONS:
        return "page furniture (css, js, images, fonts, favicon)"
    if last.startswith("apple-touch-icon"):
        return "page furniture (css, js, images, fonts, favicon)"
    if (
        any(s in NOISE_SEGMENTS or s.startswith("phpmyadmin") for s in segments)
        or extension in NOISE_EXTENSIONS
    ):
        return "scanner noise (wp-admin, phpmyadmin, .env, ...)"
    return ""


def canonical_key(url: LegacyURL, case_sensitive: bool) -> tuple[object, ...]:
    """Return a URL's canonical identity: host, folded path, significant first values."""
    values = url.first_values() if url.params else {}
    return (
        url.host,
        url.path,
        tuple(sorted((k, fold(v, case_sensitive)) for k, v in values.items())),
    )


def _shape(url: LegacyURL, case_sensitive: bool) -> tuple[object, ...]:
    segments = url.path.split("/")[1:] if url.path != "/" else []
    values = url.first_values() if url.params else {}
    return (
        url.host,
        tuple(None if _numeric(s) else s for s in segments),
        tuple(
            (k, None if _numeric(v) else fold(v, case_sensitive)) for k, v in sorted(values.items())
        ),
    )


def _numeric(text: str) -> bool:
    return text.isascii() and text.isdigit()


def drafts(groups: Iterable[list[_Entry]], case_sensitive: bool) -> list[Draft]:
    """Group unmapped URLs by shape (host, numbers collapsed) into drafts, most hits first."""
    shapes: dict[tuple[object, ...], list[tuple[int, LegacyURL]]] = {}
    for entries in groups:
        hits = sum(e.hits for e in entries)
        best = max(entries, key=lambda e: e.hits)
        assert best.url is not None
        shapes.setdefault(_shape(best.url, case_sensitive), []).append((hits, best.url))
    out = []
    for shape, urls in shapes.items():
        host, segments, params = shape
        assert isinstance(segments, tuple) and isinstance(params, tuple)
        names = iter(("id", *(f"id{n}" for n in range(2, 100))))
        written_segments = [s if s is not None else f"<int:{next(names)}>" for s in segments]
        written_params = [(k, v if v is not None else f"<int:{next(names)}>") for k, v in params]
        text = from_text(
            str(host),
            written_segments,
            written_params,
            raw_segments=frozenset(i for i, s in enumerate(segments) if s is None),
            raw_values=frozenset(i for i, (_, v) in enumerate(params) if v is None),
        )
        urls.sort(key=lambda pair: -pair[0])
        out.append(
            Draft(
                host=str(host),
                from_text=text,
                hits=sum(h for h, _ in urls),
                urls=len(urls),
                examples=tuple((shown_url(u), h) for h, u in urls[:3]),
            )
        )
    out.sort(key=lambda d: (-d.hits, d.from_text))
    return out


def shown_url(url: LegacyURL) -> str:
    """Return a URL for a report: host and the raw target, with bytes beyond ASCII escaped."""
    from gateway.ops.explain import shown

    return f"{url.host}{shown(url.raw_target)}"


# --- reading logs ------------------------------------------------------------------------------


def open_log(name: str) -> IO[bytes] | gzip.GzipFile:
    """Open a log for reading bytes: ``-`` is stdin, ``.gz`` is decompressed."""
    if name == "-":
        return sys.stdin.buffer
    if name.endswith(".gz"):
        return gzip.GzipFile(name, "rb")  # a BufferedIOBase, read line by line
    return open(name, "rb")


def read_with_progress(
    stream: IO[bytes] | gzip.GzipFile, progress: Callable[[int], None] | None, every: int = 1 << 16
) -> Iterator[bytes]:
    """Yield a stream's lines, telling ``progress`` how many bytes were read every so often."""
    if progress is None:
        yield from stream
        return
    raw: Any = getattr(stream, "fileobj", None) or stream  # gzip: compressed position
    last = 0
    for n, line in enumerate(stream, 1):
        yield line
        if n % every == 0:
            position = raw.tell()
            progress(position - last)
            last = position


def coverage(
    redirect_map: RedirectMap,
    logs: Iterable[str],
    *,
    host: str | None = None,
    top: int = 20,
    progress: Callable[[int], None] | None = None,
) -> CoverageReport:
    """Replay every log (file names, ``-`` for stdin) through the map and report."""
    replay = Replay(redirect_map, host)
    for name in logs:
        stream = open_log(name)
        try:
            replay.feed(read_with_progress(stream, progress))
        finally:
            if name != "-":
                stream.close()
    return replay.report(top)


# --- output ------------------------------------------------------------------------------


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def render(report: CoverageReport, top: int = 20) -> str:
    """Return the report as text: shares, skipped, draft rules, rules with no hits."""
    r = report
    replayed = r.replayed
    distinct = sum(r.distinct[o] for o in OUTCOMES)
    unreadable = f" ({r.unreadable} unreadable)" if r.unreadable else ""
    out = [
        f"{r.lines} lines{unreadable}, {replayed + r.requests['skipped']} requests:"
        f" {replayed} replayed through the map, {r.requests['skipped']} skipped",
        "",
        f"{'':10}{'requests':>20}{'distinct URLs':>22}",
    ]
    for o in OUTCOMES:
        out.append(
            f"{o:10}{r.requests[o]:>12} {_share(r.requests[o], replayed):>7}"
            f"{r.distinct[o]:>14} {_share(r.distinct[o], distinct):>7}"
        )
    if r.skipped:
        out += ["", f"skipped {r.requests['skipped']} requests (not counted above):"]
        out += [f"  {n:>10}  {reason}" for reason, n in r.skipped.items()]
    if r.drafts:
        out += ["", f"top unmapped, as draft rules ({len(r.drafts)} shown; paste under rules:):"]
        for draft in r.drafts:
            out += ["", draft.yaml()]
    out += ["", f"rules with no hits: {len(r.unused)} of {r.rules}"]
    out += [f"  {rule.source}  {rule.from_text}" for rule in r.unused[:top]]
    if len(r.unused) > top:
        out.append(f"  ... and {len(r.unused) - top} more (--json lists them all)")
    return "\n".join(out)


def to_json(report: CoverageReport) -> dict[str, Any]:
    """Return the report as a JSON-ready dict (counts named redirect, gone, unmapped, skipped)."""
    r = report
    return {
        "lines": r.lines,
        "unreadable": r.unreadable,
        "requests": r.requests,
        "distinct": r.distinct,
        "replayed": r.replayed,
        "skipped_by_reason": r.skipped,
        "top_unmapped": [
            {
                "host": d.host,
                "from": d.from_text,
                "hits": d.hits,
                "urls": d.urls,
                "examples": [{"url": u, "hits": h} for u, h in d.examples],
            }
            for d in r.drafts
        ],
        "rules_without_hits": [{"source": x.source, "from": x.from_text} for x in r.unused],
        "rule_hits": r.rule_hits,
    }
