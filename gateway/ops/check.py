"""``gateway check``: the map's ``nginx -t`` — load errors, then what loads but is wrong.

The loader (``gateway.mapfile``) finds every error that stops a map from being
served. This module adds what a map can load with and still get wrong: rules that
can never answer (shadowed patterns), exact rules a pattern already answers the
same way, rules that differ only by encoding or case, targets that point back at
a legacy host, and ``examples:`` that the rule does not answer. Examples are asked
through ``gateway.decide`` exactly as the server would answer them. For a map with a
web archive (spec §8) it reports each archive file: the captures it serves and the
records skipped, by reason; a file that does not read is an error, ``FILE: error: …``.

Every finding is a ``Problem`` named by the rule's ``FILE:LINE``. The analyses are
conservative: a warning is only given when it is certain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from gateway.canonical import Malformed, Param, canonical_host, parse_request, split_target
from gateway.decide import answer, decide
from gateway.mapfile import MapError, Problem, RedirectMap, load_map
from gateway.matcher import Matcher
from gateway.ops.urls import request_of, to_wire
from gateway.outcomes import BadRequest, Gone, NotFound, Redirect, UnknownHost
from gateway.rules import Rule, SegmentPattern, Step
from gateway.segments import PLACEHOLDER


@dataclass(frozen=True)
class Summary:
    """What a loaded map holds: rules by kind, hosts and aliases, files read."""

    rules: int
    by_kind: dict[str, int]
    hosts: tuple[str, ...]
    aliases: int
    files: tuple[str, ...]


# A served-kind record that a later capture of its URL replaces is not served: it counts
# among the records skipped, with this reason (the index counts it as superseded).
SUPERSEDED = "superseded by a later capture of the same URL"


@dataclass(frozen=True)
class ArchiveFile:
    """One archive file of the map (spec §8): captures served, records skipped and why."""

    file: str
    captures: int
    skipped: dict[str, int]  # reason -> records, the most frequent first

    @property
    def records_skipped(self) -> int:
        """Count the records skipped, whatever the reason."""
        return sum(self.skipped.values())

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())
        line = f"{self.file}: {self.captures} capture{'s' * (self.captures != 1)} served"
        skipped = self.records_skipped
        line += f", {skipped} record{'s' * (skipped != 1)} skipped"
        return line + (f" ({reasons})" if reasons else "")


@dataclass(frozen=True)
class CheckReport:
    """The result of ``check``: every problem (errors and warnings) and, if it loaded, a summary."""

    map_path: str
    problems: tuple[Problem, ...]
    summary: Summary | None
    archives: tuple[ArchiveFile, ...] = ()  # the archive files that read, in the map's order
    archive_errors: int = 0  # archive files that do not read: the map is not served

    @property
    def errors(self) -> int:
        """Count the errors."""
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        """Count the warnings."""
        return sum(p.severity == "warning" for p in self.problems)

    def failed(self, strict: bool = False) -> bool:
        """Say whether the check fails: any error, or with ``strict`` any warning."""
        return self.errors > 0 or (strict and self.warnings > 0)


def check(map_path: str) -> CheckReport:
    """Load the map and return every problem in it, errors first, then warnings."""
    try:
        # An archive file that does not read fails the load (spec §8): here it is one error
        # among the others, and the files that do read are still counted.
        redirect_map = load_map(map_path, archive_optional=True)
    except MapError as exc:
        return CheckReport(map_path, exc.problems, None)
    broken = redirect_map.archive_problems
    problems = [*check_examples(redirect_map), *lint(redirect_map)]
    problems.sort(key=lambda p: (p.severity != "error", _rule_order(redirect_map, p)))
    return CheckReport(
        map_path,
        (*broken, *problems),
        summarize(redirect_map),
        archive_files(redirect_map),
        len(broken),
    )


def archive_files(redirect_map: RedirectMap) -> tuple[ArchiveFile, ...]:
    """Return each archive file that read: its captures served, its records skipped and why."""
    out = []
    for f in redirect_map.captures.files:
        skipped = Counter(f.skipped)
        if f.superseded:
            skipped[SUPERSEDED] += f.superseded
        ordered = dict(sorted(skipped.items(), key=lambda item: (-item[1], item[0])))
        out.append(ArchiveFile(f.file, f.served, ordered))
    return tuple(out)


def _rule_order(redirect_map: RedirectMap, problem: Problem) -> tuple[int, int]:
    files = redirect_map.files
    index = files.index(problem.file) if problem.file in files else len(files)
    return index, problem.line


def summarize(redirect_map: RedirectMap) -> Summary:
    """Count a map's rules by kind (a 410 rule counts as gone), its hosts and aliases."""
    kinds = Counter(r.report_kind for r in redirect_map.rules)
    order = ("exact", "query", "pattern", "gone")
    hosts = tuple(dict.fromkeys(redirect_map.hosts.values()))
    return Summary(
        rules=len(redirect_map.rules),
        by_kind={k: kinds[k] for k in order},
        hosts=hosts,
        aliases=len(redirect_map.hosts) - len(hosts),
        files=redirect_map.files,
    )


def _problem(rule: Rule, message: str, severity: str = "warning") -> Problem:
    return Problem(rule.file, rule.line, message, severity)


# --- examples --------------------------------------------------------------------------------


def check_examples(redirect_map: RedirectMap) -> Iterator[Problem]:
    """Yield an error for each ``examples:`` URL that its rule does not answer."""
    for rule in redirect_map.rules:
        # A path is taken on the rule's own host, or on the first host for an every-host rule.
        host = rule.host or redirect_map.default_host
        for example in rule.examples:
            host_header, target = request_of(example, host)
            outcome = decide(redirect_map, "GET", host_header, target)
            if isinstance(outcome, (Redirect, Gone)):
                if outcome.rule is rule:
                    continue
                by = f"is answered by {outcome.rule.source} ({outcome.rule.from_text})"
            elif isinstance(outcome, NotFound):
                by = "is answered by no rule (404)"
            elif isinstance(outcome, UnknownHost):
                by = f"names a host that is not served ({outcome.host!r})"
            elif isinstance(outcome, BadRequest):
                by = f"is malformed ({outcome.reason})"
            else:
                by = "is not a legacy URL (a /-/ service endpoint)"
            yield _problem(rule, f"example {example!r} {by}", "error")


# --- warnings --------------------------------------------------------------------------------


def lint(redirect_map: RedirectMap) -> Iterator[Problem]:
    """Yield the warnings about a loaded map, rule by rule."""
    yield from legacy_targets(redirect_map)
    same = list(same_but_spelling(redirect_map.rules, redirect_map.site.case_sensitive))
    reported = {(later.source, earlier.source) for later, earlier, _ in same}
    for later, _, message in same:
        yield _problem(later, message)
    for later, earlier in shadowed_patterns(redirect_map.rules):
        if (later.source, earlier.source) in reported:
            continue
        yield _problem(
            later,
            f"pattern {later.from_text!r} can never answer: the earlier rule at"
            f" {earlier.source} ({earlier.from_text!r}) answers every URL it matches",
        )
    yield from redundant_exact(redirect_map)


def legacy_targets(redirect_map: RedirectMap) -> Iterator[Problem]:
    """Yield a warning for each ``to`` or ``see`` that lands on a legacy host (a chain or loop)."""
    new_site = redirect_map.site.new_site
    for rule in redirect_map.rules:
        for what, text in (("to", rule.to_text), ("see", rule.see)):
            if text is None:
                continue
            url = new_site + text if text.startswith("/") else text
            try:
                name = urlsplit(url).hostname or ""
            except ValueError:
                continue
            host = canonical_host(name)
            if host is not None and host in redirect_map.hosts:
                served = redirect_map.hosts[host]
                yield _problem(
                    rule,
                    f"'{what}' points at {name}, a legacy host served by this map"
                    f" ({served}): a redirect chain, or a loop",
                )


def _is_any_segment(step: Step) -> bool:
    """Say whether a step is a whole-segment ``<name>``: it matches every non-empty segment."""
    return isinstance(step, SegmentPattern) and step.is_whole_segment


def _is_any_tail(step: Step) -> bool:
    """Say whether a step is a whole ``<path:name>``: it matches any non-empty rest of the path."""
    return isinstance(step, SegmentPattern) and step.is_whole_tail


def _same_step(a: Step, b: Step) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.identity == b.identity


def covers(earlier: tuple[Step, ...], later: tuple[Step, ...]) -> bool:
    """Say whether every path the ``later`` steps match is matched by the ``earlier`` steps.

    Sound, not complete: a literal covers the same literal, a whole ``<name>`` covers
    any one-segment step, a whole ``<path:name>`` covers one or more steps of any kind,
    and any step covers an identical one.
    """
    for i, step in enumerate(earlier):
        if _is_any_tail(step):
            # <path:> needs at least one character: every later step matches a non-empty one.
            return len(later) > i
        if i >= len(later):
            return False
        other = later[i]
        if _same_step(step, other):
            continue
        if _is_any_segment(step) and not (isinstance(other, SegmentPattern) and other.is_tail):
            continue
        return False
    return len(earlier) == len(later)


def shadowed_patterns(rules: Iterable[Rule]) -> Iterator[tuple[Rule, Rule]]:
    """Yield (pattern, earlier rule) for each pattern that an earlier rule always answers first.

    An earlier unconditional pattern of the same scope whose steps cover the later one's
    answers first (patterns of a scope are tried in file order); an every-host pattern
    never shadows a host's own pattern, which is tried before it.
    """
    # Earlier patterns by (scope, first literal segment); "/" (never a segment) holds those whose
    # first step is a placeholder. Only those two buckets can cover a pattern: not quadratic.
    earlier: dict[tuple[str | None, str], list[Rule]] = {}
    for rule in rules:
        if rule.steps is None:
            continue
        first = rule.steps[0] if rule.steps else None
        buckets = [(rule.host, "/")]
        if isinstance(first, str):
            buckets.insert(0, (rule.host, first))
        found = [
            e
            for bucket in buckets
            for e in earlier.get(bucket, ())
            if e.steps and covers(e.steps, rule.steps)
        ]
        if found:
            yield rule, min(found, key=lambda e: e.order)
        if not rule.conditions:
            key = first if isinstance(first, str) else "/"
            earlier.setdefault((rule.host, key), []).append(rule)


def _spelling_key(rule: Rule) -> tuple[object, ...]:
    """Return what a rule matches, with letter case folded: equal keys differ only in spelling."""
    if rule.steps is None:
        path: object = rule.path.lower()
    else:
        path = tuple(
            s.lower()
            if isinstance(s, str)
            else (tuple(lit.lower() for lit in s.literals), s.converters)
            for s in rule.steps
        )
    conditions = frozenset(
        (c.key, c.literal.lower() if c.literal is not None else None, c.converter)
        for c in rule.conditions
    )
    return rule.host, path, conditions


def _unnamed(text: str) -> str:
    """Return ``from`` text with capture names dropped: ``<int:id>`` and ``<int:n>`` alike."""
    return PLACEHOLDER.sub(lambda m: f"<{m[1] or ''}>", text)


def same_but_spelling(
    rules: Iterable[Rule], case_sensitive: bool
) -> Iterator[tuple[Rule, Rule, str]]:
    """Yield (later, earlier, message) for rules whose ``from`` differ only by encoding or case.

    Exact rules with the same canonical key are the loader's duplicate error; what is left
    are case variants in a case-sensitive map, and patterns (of any map) that compile to the
    same matcher from different text.
    """
    first: dict[tuple[object, ...], Rule] = {}
    for rule in rules:
        key = _spelling_key(rule)
        earlier = first.setdefault(key, rule)
        if earlier is rule or earlier.from_text == rule.from_text:
            continue
        if earlier.identity == rule.identity:
            if rule.steps is None:
                continue  # the loader's duplicate error already names it
            same_letters = _unnamed(earlier.from_text).lower() == _unnamed(rule.from_text).lower()
            how = "letter case" if same_letters else "encoding"
            effect = "both match the same URLs and the later never answers"
        else:
            how = "letter case"
            effect = (
                "in this case-sensitive map they are two rules"
                if case_sensitive
                else "they match different URLs"
            )
        yield (
            rule,
            earlier,
            f"{rule.from_text!r} differs from {earlier.source} ({earlier.from_text!r})"
            f" only by {how}: {effect}",
        )


def _example_url(redirect_map: RedirectMap, rule: Rule, host: str) -> Any:
    """Return the request an exact rule with literal conditions answers, as written in ``from``."""
    text = rule.from_text.strip()
    if not text.startswith("/") and not text[:8].lower().startswith(("http://", "https://")):
        text = "http://" + text
    _, raw_path, _ = split_target(to_wire(text))
    site = redirect_map.site
    url = parse_request(
        host, raw_path, case_sensitive=site.case_sensitive, is_ignored=site.is_ignored
    )
    params = tuple(Param(c.key, c.name, c.literal or "") for c in rule.conditions)
    return replace(url, params=params)


def redundant_exact(redirect_map: RedirectMap) -> Iterator[Problem]:
    """Yield a warning for each exact rule that a pattern would answer the same way.

    Only exact rules whose conditions are all literal, and that no other exact rule shares a
    path with, are judged: for them, without the rule, the patterns alone would answer.
    The answer is built for the rule's own path as written, on every host the rule serves.
    """
    patterns = [r for r in redirect_map.rules if r.steps is not None]
    if not patterns:
        return
    only_patterns = replace(
        redirect_map,
        matcher=Matcher(patterns, case_sensitive=redirect_map.site.case_sensitive),
    )
    by_path = Counter(r.path for r in redirect_map.rules if r.steps is None)
    hosts = tuple(dict.fromkeys(redirect_map.hosts.values()))
    for rule in redirect_map.rules:
        if rule.steps is not None or by_path[rule.path] > 1:
            continue
        if any(c.literal is None for c in rule.conditions):
            continue
        same_as: Rule | None = None
        for host in (rule.host,) if rule.host else hosts:
            try:
                url = _example_url(redirect_map, rule, host)
            except Malformed:
                same_as = None
                break
            mine = answer(redirect_map, url)
            theirs = answer(only_patterns, url)
            if not _same_answer(mine, theirs):
                same_as = None
                break
            assert isinstance(theirs, (Redirect, Gone))
            same_as = same_as or theirs.rule
        if same_as is not None:
            yield _problem(
                rule,
                f"redundant: the pattern at {same_as.source} ({same_as.from_text!r})"
                f" answers {rule.from_text!r} the same way",
            )


def _same_answer(mine: object, theirs: object) -> bool:
    if isinstance(mine, Redirect) and isinstance(theirs, Redirect):
        a, b = mine.rule, theirs.rule
        return (
            mine.status == theirs.status
            and mine.location == theirs.location
            and a.keep_query == b.keep_query
            and (not a.keep_query or {c.key for c in a.conditions} == {c.key for c in b.conditions})
        )
    if isinstance(mine, Gone) and isinstance(theirs, Gone):
        return mine.rule.see == theirs.rule.see
    return False


# --- output ----------------------------------------------------------------------------------


def summary_line(report: CheckReport) -> str:
    """Return the summary: a line per archive file that read (``ArchiveFile``), then one line.

    The last line: rules by kind, hosts, captures served (with a web archive), errors,
    warnings. A map whose archive file does not read is not served: "does not load".
    """
    lines = [str(a) for a in report.archives]
    lines.append(_summary(report))
    return "\n".join(lines)


def _summary(report: CheckReport) -> str:
    counts = f"{report.errors} error{'s' * (report.errors != 1)}, "
    counts += f"{report.warnings} warning{'s' * (report.warnings != 1)}"
    s = report.summary
    if s is None:
        return f"{report.map_path}: does not load: {counts}"
    kinds = ", ".join(f"{n} {k}" for k, n in s.by_kind.items())
    aliases = f" (+{s.aliases} alias{'es' * (s.aliases != 1)})" if s.aliases else ""
    files = f" in {len(s.files)} files" if len(s.files) > 1 else ""
    loads = "does not load: " if report.archive_errors else ""
    captures = ""
    if report.archives or report.archive_errors:
        served = sum(a.captures for a in report.archives)
        n = len(report.archives) + report.archive_errors
        captures = f", {served} captures from {n} archive file{'s' * (n != 1)}"
    return (
        f"{report.map_path}: {loads}{s.rules} rules{files} ({kinds}), "
        f"{len(s.hosts)} hosts{aliases}{captures}: {counts}"
    )


def to_json(report: CheckReport, strict: bool = False) -> dict[str, Any]:
    """Return a check report as a JSON-ready dict."""
    s = report.summary
    return {
        "map": report.map_path,
        "ok": not report.failed(strict),
        "loaded": s is not None and not report.archive_errors,
        "errors": report.errors,
        "warnings": report.warnings,
        "problems": [
            {"file": p.file, "line": p.line, "severity": p.severity, "message": p.message}
            for p in report.problems
        ],
        "summary": None
        if s is None
        else {
            "rules": s.rules,
            "by_kind": s.by_kind,
            "hosts": list(s.hosts),
            "aliases": s.aliases,
            "files": list(s.files),
        },
        # Spec §8: each archive file that read; one that does not is among the problems.
        "archives": [
            {
                "file": a.file,
                "captures": a.captures,
                "skipped": a.records_skipped,
                "skipped_by_reason": a.skipped,
            }
            for a in report.archives
        ],
    }
