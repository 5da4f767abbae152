"""``gateway explain``: which rule answers a URL, and why, step by step.

The answer comes from ``gateway.decide.decide`` — the function the server calls —
and the steps shown beside it (host, path, query in canonical form) come from
``gateway.canonical``'s own functions, so the explanation is the server's reasoning,
not a second implementation of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from gateway.banner import archive_url, banner_language
from gateway.canonical import (
    Malformed,
    canonical_host,
    canonical_query,
    decode,
    fold,
    last_params,
    resolve_segments,
    split_target,
    wire_bytes,
)
from gateway.decide import decide
from gateway.mapfile import RedirectMap
from gateway.ops.urls import request_of, shown
from gateway.outcomes import (
    Archived,
    BadRequest,
    Gone,
    MethodNotAllowed,
    NotFound,
    Outcome,
    Redirect,
    ServiceEndpoint,
    Unavailable,
    UnknownHost,
)
from gateway.responses import Body, answer_of, status_of
from gateway.rules import Rule


@dataclass(frozen=True)
class HostStep:
    """The host: as given, canonical, and the served host it stands for (None: not served)."""

    given: str
    canonical: str | None
    served: str | None
    source: str = "url"  # where the host came from: url, --host, or default (first host)


@dataclass(frozen=True)
class PathStep:
    """The path: raw, percent-decoded (and from which encoding), its segments, canonical key."""

    raw: str
    decoded: str | None = None
    encoding: str | None = None
    segments: tuple[str, ...] = ()
    canonical: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class QueryStep:
    """The query: raw, the significant parameters (name, value), and the ignored names."""

    raw: str
    significant: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Response:
    """What the client gets: status, headers that matter, and for banners why and what is shown."""

    status: int
    kind: str  # the body kind of gateway.responses: redirect, banner, archived, plain, file...
    location: str | None = None
    cache_control: str | None = None
    reason: str | None = None
    see: str | None = None
    archive: str | None = None
    language: str | None = None


@dataclass(frozen=True)
class Explanation:
    """One URL explained: the canonical steps, the rule that answers and the response."""

    url: str
    host: HostStep
    path: PathStep | None
    query: QueryStep | None
    rule: Rule | None
    captures: dict[str, str] = field(default_factory=dict)
    response: Response = field(default_factory=lambda: Response(0, "plain"))
    outcome: Outcome | None = None


def explain(redirect_map: RedirectMap, text: str, host: str | None = None) -> Explanation:
    """Explain how the server answers a GET for a URL (a path is taken on ``host``)."""
    host_header, target = request_of(text, host or redirect_map.default_host)
    outcome = decide(redirect_map, "GET", host_header, target)
    host_step, path_step, query_step = _steps(redirect_map, host_header, target)
    if host_step.source != "url":
        host_step = replace(host_step, source="--host" if host else "default")
    rule = outcome.rule if isinstance(outcome, (Redirect, Gone)) else None
    captures: dict[str, str] = {}
    if rule is not None and isinstance(outcome, (Redirect, Gone)):
        found = redirect_map.matcher.match(outcome.url, outcome.host)
        captures = dict(found.captures) if found is not None else {}
    return Explanation(
        url=text,
        host=host_step,
        path=path_step,
        query=query_step,
        rule=rule,
        captures=captures,
        response=_response(redirect_map, outcome),
        outcome=outcome,
    )


def _steps(
    redirect_map: RedirectMap, host_header: str, target: str
) -> tuple[HostStep, PathStep | None, QueryStep | None]:
    try:
        authority, raw_path, raw_query = split_target(target)
    except Malformed as exc:
        return (
            HostStep(host_header, None, None, "header"),
            PathStep(shown(target), error=str(exc)),
            None,
        )
    given = authority if authority is not None else host_header
    source = "url" if authority is not None else "header"
    host_step = HostStep(given, canonical_host(given), redirect_map.host_of(given), source)
    return host_step, _path_step(redirect_map, raw_path), _query_step(redirect_map, raw_query)


def _path_step(redirect_map: RedirectMap, raw_path: str) -> PathStep:
    raw = wire_bytes(raw_path)
    try:
        decoded = decode(raw)
    except Malformed as exc:
        return PathStep(shown(raw_path), error=str(exc))
    try:
        unquote_to_bytes(raw).decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "windows-1251"
    # The server's own steps (canonical_path): dot segments, then repeated '/' (§3).
    segments = tuple(resolve_segments(decoded))
    canonical = fold("/" + "/".join(segments), redirect_map.site.case_sensitive)
    return PathStep(shown(raw_path), decoded, encoding, segments, canonical)


def _query_step(redirect_map: RedirectMap, raw_query: str) -> QueryStep | None:
    if not raw_query:
        return None
    is_ignored = redirect_map.site.is_ignored
    raw = wire_bytes(raw_query)
    try:
        # What the server counts (canonical_query, then LegacyURL.last_params): each
        # significant name once, with its last value (§2).
        significant = last_params(canonical_query(raw, is_ignored))
        ignored = canonical_query(raw, lambda name: not is_ignored(name))
    except Malformed as exc:
        return QueryStep(shown(raw_query), error=str(exc))
    return QueryStep(
        shown(raw_query),
        tuple((p.name, p.value) for p in significant),
        tuple(p.name for p in ignored),
    )


def printable(text: str) -> str:
    """Return decoded text safe for a terminal: controls, C1 and bidi marks as \\uXXXX."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)


def _response(redirect_map: RedirectMap, outcome: Outcome) -> Response:
    """Return what the server answers for an outcome: its row of the answer table, explained."""
    spec = answer_of(outcome)
    cache = spec.cache_control(redirect_map.site.redirect_max_age)
    status = status_of(outcome)
    if isinstance(outcome, Redirect):
        return Response(status, spec.body.value, location=outcome.location, cache_control=cache)
    if isinstance(outcome, (Gone, NotFound)):
        if isinstance(outcome, Gone):
            reason, see = (
                "the rule says this content has no equivalent on the new site",
                outcome.rule.see,
            )
        else:
            reason, see = outcome.reason, None
        return Response(
            status,
            spec.body.value,
            cache_control=cache,
            reason=reason,
            see=see,
            archive=archive_url(redirect_map, outcome),
            language=banner_language(
                outcome,
                "",
                english_section=redirect_map.archive.is_english(outcome.host, outcome.url.path),
            ),
        )
    if isinstance(outcome, Archived):
        c = outcome.capture
        via = f" after the captured redirects {', '.join(outcome.via)}" if outcome.via else ""
        reason = (
            f"the archived capture of {c.url}{via}: {c.file} at byte {c.offset},"
            f" {c.date}, {c.mime or 'no type'} ({c.kind})"
        )
        return Response(status, spec.body.value, cache_control=cache, reason=reason)
    if spec.body is Body.SERVICE:
        assert isinstance(outcome, ServiceEndpoint)
        reason = f"the gateway's own /-/{outcome.name} endpoint"
        return Response(status, spec.body.value, reason=reason)
    if spec.body is Body.FILE:
        reason = f"the gateway's own {spec.name} file ({spec.content_type})"
        return Response(status, spec.body.value, cache_control=cache, reason=reason)
    return Response(status, spec.body.value, cache_control=cache, reason=_plain_reason(outcome))


def _plain_reason(outcome: Outcome) -> str:
    """Say why a plain answer is given, for a terminal."""
    if isinstance(outcome, UnknownHost):
        return f"host {outcome.host!r} is not served"
    if isinstance(outcome, BadRequest):
        return outcome.reason
    if isinstance(outcome, MethodNotAllowed):  # not reached: explain asks with GET
        return "method not allowed"
    assert isinstance(outcome, Unavailable)  # not reached: explain is given a loaded map
    return "no valid map is loaded"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def rule_json(rule: Rule) -> dict[str, Any]:
    """Return a rule as JSON: where it is, its kind, from, to or see, status, note."""
    return {
        "source": rule.source,
        "kind": rule.kind,
        "host": rule.host,
        "from": rule.from_text,
        "to": rule.to_text,
        "status": rule.status,
        "see": rule.see,
        "keep_query": rule.keep_query,
        "note": rule.note,
    }


def to_json(explanation: Explanation) -> dict[str, Any]:
    """Return an explanation as a JSON-ready dict."""
    e = explanation
    path = e.path
    query = e.query
    r = e.response
    return {
        "url": e.url,
        "host": {"given": e.host.given, "canonical": e.host.canonical, "served": e.host.served},
        "path": None
        if path is None
        else {
            "raw": path.raw,
            "decoded": path.decoded,
            "encoding": path.encoding,
            "segments": list(path.segments),
            "canonical": path.canonical,
            "error": path.error,
        },
        "query": None
        if query is None
        else {
            "raw": query.raw,
            "significant": [{"name": n, "value": v} for n, v in query.significant],
            "ignored": list(query.ignored),
            "error": query.error,
        },
        "rule": None if e.rule is None else {**rule_json(e.rule), "captures": e.captures},
        "response": {
            "status": r.status,
            "kind": r.kind,
            "location": r.location,
            "cache_control": r.cache_control,
            "reason": r.reason,
            "see": r.see,
            "archive": r.archive,
            "language": r.language,
        },
    }


def render(explanation: Explanation) -> str:
    """Return an explanation as text for a terminal: one step per line."""
    e = explanation
    lines = [e.url]
    h = e.host
    origin = {"--host": "  (--host)", "default": "  (no host given: the first under hosts:)"}
    note = origin.get(h.source, "")
    if h.served is None:
        lines.append(f"  host       {h.given or '(none)'} -> not under hosts:")
    elif h.canonical != h.served:
        lines.append(f"  host       {h.given} -> {h.served} (alias){note}")
    elif h.given != h.served:
        lines.append(f"  host       {h.given} -> {h.served}{note}")
    else:
        lines.append(f"  host       {h.served}{note}")
    if e.path is not None:
        p = e.path
        lines.append(f"  path       {p.raw}")
        if p.error:
            lines.append(f"    malformed  {p.error}")
        else:
            encoding = "" if p.encoding == "utf-8" else f"   ({p.encoding})"
            segments = " | ".join(printable(s) for s in p.segments) or "(none)"
            lines.append(f"    decoded    {printable(p.decoded or '')}{encoding}")
            lines.append(f"    segments   {segments}")
            lines.append(f"    canonical  {printable(p.canonical or '')}")
    if e.query is not None:
        q = e.query
        lines.append(f"  query      {q.raw}")
        if q.error:
            lines.append(f"    malformed  {q.error}")
        else:
            significant = "&".join(f"{n}={v}" for n, v in q.significant) or "(none)"
            lines.append(f"    significant {printable(significant)}")
            if q.ignored:
                lines.append(f"    ignored    {printable(', '.join(q.ignored))}")
    if e.rule is not None:
        rule = e.rule
        lines.append(f"  rule       {rule.source}  ({rule.kind})")
        lines.append(f"    from       {rule.from_text}")
        if rule.to_text is not None:
            lines.append(f"    to         {rule.to_text}")
        else:
            lines.append(f"    status     {rule.status}")
        if rule.see is not None:
            lines.append(f"    see        {rule.see}")
        if e.captures:
            captured = ", ".join(f"{k}={v}" for k, v in e.captures.items())
            lines.append(f"    captures   {printable(captured)}")
    elif isinstance(e.outcome, NotFound):
        lines.append("  rule       none matches")
    r = e.response
    status = f"{r.status} {_phrase(r.status)}".rstrip()
    if r.kind == "redirect":
        lines.append(f"  response   {status}")
        lines.append(f"    Location: {r.location}")
        lines.append(f"    Cache-Control: {r.cache_control}")
    elif r.kind == "banner":
        lines.append(f"  response   {status}: archive banner ({r.language}), {r.reason}")
        if r.see:
            lines.append(f"    suggested page: {r.see}")
        if r.archive:
            lines.append(f"    archived copy:  {r.archive}")
    else:
        lines.append(f"  response   {status}: {r.reason}")
    return "\n".join(lines)
