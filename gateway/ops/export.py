"""Compile a loaded map for the engines that serve at scale: nginx, Cloudflare, spreadsheets.

Owns the three exports of issue 7 as plain functions (map → text, plus a report of
what the engine answers itself and what it hands on to the gateway). The gateway
stays the reference: an engine answers a request itself only when it is certain
to give the same status, ``Location`` and ``Cache-Control`` as the gateway would;
everything else goes on to the gateway (nginx) or falls through to the origin
(Cloudflare, whose origin is the gateway).

What nginx can answer exactly: a request with no query at all, on a served host,
whose raw path is one of the spellings generated here for an exact, condition-free
redirect rule. nginx's ``map`` compares strings ignoring ASCII case only, and
``$uri`` is already percent-decoded, slash-merged and dot-resolved, so the export
keys on ``$request_uri`` (the raw target, query included): every spelling nginx
could confuse with another one either differs from a generated key (and is handed
on) or differs only in ASCII case, which the gateway folds too. Pure: no Flask.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

from gateway.canonical import INDEX_FILES, Malformed, canonical_path
from gateway.mapfile import RedirectMap, is_wildcard
from gateway.rules import Rule

KINDS = ("exact", "query", "pattern", "gone")
REDIRECT_STATUSES = (301, 302, 307, 308)
# How a browser spells a path: ASCII path characters as they are, everything else escaped.
_PATH_SAFE = "/:@!&'()*+,;=-._~"
# Characters a generated key or value may hold inside a double-quoted nginx string:
# no '$' (a variable), no quote or backslash, no space or control character.
_NGINX_SAFE = re.compile(r"[A-Za-z0-9/:@!&'()*+,;=._~%?#\[\]-]*\Z")
# What may stand inside a double-quoted nginx string as it is.
_QUOTABLE = re.compile(r'[^"\\$\x00-\x1f\x7f]*\Z')
_LISTEN = re.compile(r"(?:(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?[0-9]{1,5}(?: ssl)?\Z")
_UPSTREAM = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}\Z")
# Spellings of an index file the export generates (the gateway drops any case of these).
_INDEX_SPELLINGS = tuple(sorted(INDEX_FILES))
_SETS = "It sets, in http { }:"
CLOUDFLARE_COLUMNS = (
    "source_url",
    "target_url",
    "status_code",
    "preserve_query_string",
    "include_subdomains",
    "subpath_matching",
    "preserve_path_suffix",
)


class ExportError(ValueError):
    """Options an export cannot use (a bad --listen or --upstream)."""


@dataclass(frozen=True, slots=True)
class ServerExtras:
    """What the standalone front (gateway.ops.nginx_conf) adds to the exported server."""

    header: tuple[str, ...]  # comment lines in place of the include instructions
    listen_params: str  # appended to each `listen`
    server: tuple[str, ...]  # lines inside server { }, indented
    location: tuple[str, ...]  # lines first in location / { }, indented


@dataclass(frozen=True, slots=True)
class HandedOn:
    """One rule the engine does not answer itself, and why (the gateway answers it)."""

    source: str
    kind: str
    reason: str


@dataclass
class ExportReport:
    """What an engine answers itself and what it hands on, per rule kind."""

    engine: str
    answered: Counter[str] = field(default_factory=Counter)
    handed_on: Counter[str] = field(default_factory=Counter)
    rules: list[HandedOn] = field(default_factory=list)
    entries: int = 0  # map keys (nginx) or CSV rows (Cloudflare) written
    unit: str = "keys"
    notes: list[str] = field(default_factory=list)

    def answer(self, rule: Rule) -> None:
        """Count a rule the engine answers itself."""
        self.answered[rule.report_kind] += 1

    def hand_on(self, rule: Rule, reason: str) -> None:
        """Count a rule the engine leaves to the gateway, with the reason."""
        self.handed_on[rule.report_kind] += 1
        self.rules.append(HandedOn(rule.source, rule.report_kind, reason))

    def summary(self) -> list[str]:
        """Return the per-kind table and the reasons, one line each, for people."""
        lines = [f"{self.engine}: {self.entries} {self.unit} written"]
        lines.append(f"  {'kind':<8} {'answered':>9} {'handed on':>10}")
        for kind in KINDS:
            lines.append(f"  {kind:<8} {self.answered[kind]:>9} {self.handed_on[kind]:>10}")
        reasons = Counter(r.reason for r in self.rules)
        for reason, count in sorted(reasons.items(), key=lambda x: (-x[1], x[0])):
            lines.append(f"  handed on ({count}): {reason}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return lines

    def details(self) -> Iterator[str]:
        """Yield one line per handed-on rule: ``FILE:LINE: kind: reason``."""
        for item in self.rules:
            yield f"{item.source}: {item.kind}: {item.reason}"


def path_spellings(path: str) -> list[str]:
    """Return the raw spellings of a canonical path the engines key on (index files, slash)."""
    base = quote(path, safe=_PATH_SAFE)
    if base == "/":
        return ["/", *(f"/{name}" for name in _INDEX_SPELLINGS)]
    return [base, f"{base}/", *(f"{base}/{name}" for name in _INDEX_SPELLINGS)]


def _exact_spellings(redirect_map: RedirectMap, rule: Rule) -> list[str]:
    """Return the spellings that canonicalise back to the rule's path, and nginx can quote."""
    spellings = path_spellings(rule.path)
    base = spellings[0]
    if not _NGINX_SAFE.match(base):
        return []
    try:
        key, _ = canonical_path(base.encode("ascii"), redirect_map.site.case_sensitive)
    except (Malformed, UnicodeEncodeError):
        return []
    if key != rule.path:
        return []
    # The others add only a final '/' or an index file, which the canonical form drops;
    # '/-/...' is the gateway's service endpoints, whatever the map says.
    return [s for s in spellings if not s.startswith("/-/")]


def _is_index(spelling: str) -> bool:
    return spelling.rpartition("/")[2].lower() in INDEX_FILES


def _names_by_host(redirect_map: RedirectMap) -> dict[str, list[str]]:
    """Return every served name (host and aliases) of each canonical host."""
    names: dict[str, list[str]] = {}
    for name, host in redirect_map.hosts.items():
        names.setdefault(host, []).append(name)
    return names


def _paths_with_conditions(rules: Iterable[Rule]) -> set[tuple[str | None, str]]:
    return {(r.host, r.path) for r in rules if r.is_exact and r.conditions}


# --- nginx ---------------------------------------------------------------------------


def _nginx_string(text: str) -> str:
    if not _QUOTABLE.match(text):
        raise ValueError(f"not safe in an nginx string: {text!r}")
    return f'"{text}"'


def _pow2(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


def export_nginx(
    redirect_map: RedirectMap,
    *,
    listen: str | Sequence[str],
    upstream: str,
    extras: ServerExtras | None = None,
) -> tuple[str, ExportReport]:
    """Compile the map into one file for nginx's ``http {}``: maps, an upstream and a server."""
    listens = [listen] if isinstance(listen, str) else list(listen)
    for item in listens or [""]:
        if not _LISTEN.match(item):
            raise ExportError(f"--listen {item!r}: give PORT or HOST:PORT, then ' ssl' for TLS")
    if not _UPSTREAM.match(upstream):
        raise ExportError(f"--upstream {upstream!r}: give HOST:PORT")
    site = redirect_map.site
    report = ExportReport("nginx")
    hosted: dict[str, str] = {}  # "host/path" -> "301 URL", or "-" (hand on)
    every: dict[str, str] = {}  # "/path" -> "301 URL"
    if site.case_sensitive:
        report.notes.append(
            "case_sensitive: true - nginx's map compares ASCII ignoring case, "
            "so nginx answers nothing itself"
        )
    if redirect_map.captures:  # no key of nginx's maps names them: they are proxied
        report.notes.append(f"{len(redirect_map.captures)} archived captures: the gateway answers")
    for rule in redirect_map.rules:
        reason = _nginx_refusal(rule, site.case_sensitive)
        if reason is not None:
            report.hand_on(rule, reason)
            if rule.host is not None and rule.is_exact and not rule.conditions:
                # The host's own rule wins over an every-host rule: keep nginx from using that one.
                for spelling in _exact_spellings(redirect_map, rule):
                    hosted[f"{rule.host}{spelling}"] = "-"
            continue
        spellings = _exact_spellings(redirect_map, rule)
        if not spellings:
            report.hand_on(rule, "no spelling of the path nginx can key on exactly")
            continue
        assert rule.target is not None and rule.target.constant is not None
        value = f"{rule.status} {rule.target.constant}"
        for spelling in spellings:
            if rule.host is None:
                every[spelling] = value
            else:
                hosted[f"{rule.host}{spelling}"] = value
        report.answer(rule)
    report.entries = len(hosted) + len(every)
    text = _render_nginx(
        redirect_map,
        hosted,
        every,
        listens=listens,
        upstream=upstream,
        report=report,
        extras=extras,
    )
    return text, report


def _nginx_refusal(rule: Rule, case_sensitive: bool) -> str | None:
    """Say why nginx cannot answer this rule exactly as the gateway, or None if it can."""
    if case_sensitive:
        return "case-sensitive map: nginx's map ignores ASCII case"
    if rule.status == 410:
        return "archive banner (410): rendered by the gateway"
    if not rule.is_exact:
        return "pattern rule: captures and precedence stay with the gateway"
    if rule.conditions:
        return "query condition: nginx answers only query-free requests"
    if rule.status not in REDIRECT_STATUSES or rule.target is None:
        return f"status {rule.status}"
    if rule.target.constant is None:
        return "target with inserts"
    if not _NGINX_SAFE.match(rule.target.constant):
        return "target holds a character nginx would read as syntax ('$', quote, space)"
    return None


def _render_nginx(
    redirect_map: RedirectMap,
    hosted: dict[str, str],
    every: dict[str, str],
    *,
    listens: list[str],
    upstream: str,
    report: ExportReport,
    extras: ServerExtras | None,
) -> str:
    site = redirect_map.site
    keys = [*hosted, *every, *redirect_map.hosts]
    longest = max((len(k) for k in keys), default=1)
    # nginx's hash stores per key a pointer and the key with its length, pointer-aligned
    # (NGX_HASH_ELT_SIZE); a bucket must fit the longest element and its end marker, and
    # room for ~8 average ones, else nginx warns "could not build optimal map_hash" on
    # large maps (measured: 245k keys need 1024 with max_size 262144).
    sizes = [8 + (len(k) + 2 + 7) // 8 * 8 for k in keys]
    average = sum(sizes) // max(len(sizes), 1)
    bucket = min(4096, max(64, _pow2(max(sizes, default=16) + 8), _pow2(8 * average)))
    max_size = max(2048, _pow2(len(keys)))
    statuses = sorted(
        {int(v.split(" ", 1)[0]) for v in [*hosted.values(), *every.values()] if v != "-"}
    )
    out: list[str] = []
    w = out.append
    w("# Generated by `gateway export nginx` from the redirect map. Do not edit: regenerate.")
    w(f"# Map: {redirect_map.path}  version {redirect_map.version}")
    w("#")
    if extras is not None:
        out.extend(extras.header)
    else:
        w("# Include this file inside nginx's http { } block (one `include`). " + _SETS)
        w(f"#   map_hash_bucket_size {bucket};   (the longest key is {longest} bytes)")
        w(f"#   map_hash_max_size {max_size};   ({len(keys)} keys)")
        w("# If your http { } already sets either directive, keep one copy with the larger value.")
    w("#")
    w("# nginx answers itself only GET/HEAD requests without a query whose raw path is one")
    w("# of the spellings below (any ASCII case): exact, condition-free redirect rules.")
    w("# Everything else (banners, patterns, query conditions, non-ASCII case variants,")
    w("# windows-1251, dot segments, '//', any query) goes to the gateway unchanged.")
    w("#")
    for line in report.summary()[1:]:
        w(f"#{line}")
    w("")
    w(f"map_hash_bucket_size {bucket};")
    w(f"map_hash_max_size {max_size};")
    w("")
    w("# Served names (aliases included) -> the map's canonical host; unknown hosts -> gateway.")
    w("map $host $legacy_gw_host {")
    w('    default "";')
    for name, host in sorted(redirect_map.hosts.items()):
        if not is_wildcard(name):  # its subdomains keep "" and go to the gateway
            w(f"    {_nginx_string(name)} {_nginx_string(host)};")
    w("}")
    w("")
    w("# Host-specific exact rules, keyed on host + raw request URI; '-' = the gateway answers.")
    w('map "$legacy_gw_host$request_uri" $legacy_gw_hosted {')
    w('    default "";')
    for key, value in hosted.items():
        w(f"    {_nginx_string(key)} {_nginx_string(value)};")
    w("}")
    w("")
    w("# Every-host exact rules, keyed on the raw request URI (a query never matches).")
    w("map $request_uri $legacy_gw_every {")
    w('    default "";')
    for key, value in every.items():
        w(f"    {_nginx_string(key)} {_nginx_string(value)};")
    w("}")
    w("")
    w("# One answer: GET/HEAD on a served host; the host's own rule, else the every-host one.")
    w('map "$request_method $legacy_gw_host|$legacy_gw_hosted|$legacy_gw_every"')
    w("    $legacy_gw_answer {")
    w('    default "";')
    w('    "~^(?:GET|HEAD) [^|]+[|](30[1278] [^|]+)[|]" $1;')
    w('    "~^(?:GET|HEAD) [^|]+[|][|](30[1278] [^|]+)$" $1;')
    w("}")
    w("")
    w("upstream legacy_gateway {")
    w(f"    server {upstream};")
    w("    keepalive 32;")
    w("}")
    w("")
    w("server {")
    for listen in listens:
        w(f"    listen {listen}{extras.listen_params if extras else ''};")
    if any(listen.endswith(" ssl") for listen in listens):
        w("    # ssl: ssl_certificate and ssl_certificate_key come from your http { } block.")
    names = " ".join(_nginx_string(n) for n in redirect_map.hosts)
    # "" first: a request without Host keeps an empty $host, as the gateway sees it.
    w(f'    server_name "" {names};')
    w("    server_tokens off;")
    w("    # nginx's own errors (400 for a request it cannot parse, 502 when the gateway is down)")
    w("    # are never cached, like the gateway's 400/404/405 answers.")
    w('    add_header Cache-Control "no-store" always;')
    out.extend(extras.server if extras else ())
    w("")
    w("    location / {")
    out.extend(extras.location if extras else ())
    w("        # An empty value adds nothing: the gateway's own Cache-Control passes unchanged.")
    w('        add_header Cache-Control "";')
    for status in statuses:
        w(f'        if ($legacy_gw_answer ~ "^{status} (.+)$") {{')
        w(f'            add_header Cache-Control "public, max-age={site.redirect_max_age}" always;')
        w(f"            return {status} $1;")
        w("        }")
    w("        # No URI part: the request URI goes on exactly as the client sent it.")
    w("        proxy_pass http://legacy_gateway;")
    w("        proxy_http_version 1.1;")
    w('        proxy_set_header Connection "";')
    # $host: the request line's host if any, else the Host header (what the gateway reads).
    w("        proxy_set_header Host $host;")
    w("        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
    w("        proxy_set_header X-Forwarded-Proto $scheme;")
    w("        proxy_redirect off;")
    w("    }")
    w("}")
    return "\n".join(out) + "\n"


# --- Cloudflare -------------------------------------------------------------------------


def export_cloudflare(redirect_map: RedirectMap) -> tuple[str, ExportReport]:
    """Compile the exact, query-free redirects into a Cloudflare Bulk Redirects CSV."""
    report = ExportReport("cloudflare", unit="rows")
    conditioned = _paths_with_conditions(redirect_map.rules)
    names = _names_by_host(redirect_map)
    own: dict[tuple[str, str], Rule] = {
        (r.host, r.path): r
        for r in redirect_map.rules
        if r.host is not None and r.is_exact and not r.conditions
    }
    rows: list[tuple[str, ...]] = []
    for rule in redirect_map.rules:
        reason = _cloudflare_refusal(rule)
        if reason is not None:
            report.hand_on(rule, reason)
            continue
        assert rule.target is not None and rule.target.constant is not None
        spellings = [s for s in _exact_spellings(redirect_map, rule) if not _is_index(s)]
        reason = "no spelling of the path Cloudflare can match exactly"
        wrote = False
        for host in [rule.host] if rule.host is not None else list(names):
            if rule.host is None and (host, rule.path) in own:
                reason = "every host has its own rule for this path"
                continue  # the host's own rule wins there (and writes its own rows, if any)
            if (host, rule.path) in conditioned or (None, rule.path) in conditioned:
                # Cloudflare matches the path whatever the query, so it would shadow that rule.
                reason = "a rule on the same path has a query condition; Cloudflare ignores queries"
                continue
            for name in names[host]:
                for spelling in spellings:
                    rows.append(
                        (
                            f"{name}{spelling}",
                            rule.target.constant,
                            str(rule.status),
                            "TRUE" if rule.keep_query else "FALSE",
                            "FALSE",
                            "FALSE",
                            "FALSE",
                        )
                    )
                    wrote = True
        if wrote:
            report.answer(rule)
        else:
            report.hand_on(rule, reason)
    if any(r.keep_query for r in redirect_map.rules):
        report.notes.append(
            "keep_query rules carry preserve_query_string=TRUE: Cloudflare keeps the whole "
            "query, ignored parameters (utm_*, ...) included, where the gateway drops them"
        )
    report.notes.append(
        "other spellings (index files, case variants, escapes) fall through to the gateway"
    )
    if redirect_map.captures:
        report.notes.append(
            f"{len(redirect_map.captures)} archived captures (spec §8) are not carried:"
            " Cloudflare cannot serve them; their URLs must keep reaching the gateway"
        )
    report.entries = len(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CLOUDFLARE_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue(), report


def _cloudflare_refusal(rule: Rule) -> str | None:
    """Say why a Bulk Redirect cannot carry this rule, or None if it can."""
    if rule.status == 410:
        return "archive banner (410): rendered by the gateway"
    if not rule.is_exact:
        return "pattern rule: Bulk Redirects are static"
    if rule.conditions:
        return "query condition: Bulk Redirects cannot match a query"
    if rule.status not in REDIRECT_STATUSES or rule.target is None:
        return f"status {rule.status}"
    if rule.target.constant is None:
        return "target with inserts"
    if rule.keep_query and rule.target.has_query:
        return "keep_query with a query in 'to': Cloudflare cannot merge the two"
    return None


# --- CSV ---------------------------------------------------------------------------------
