"""``gateway import``: turn an ops spreadsheet of old and new URLs into a clean rule table.

Takes the rows of the CSV people really have (read by ``gateway.ops.sheets``),
canonicalises each old URL, compiles each row with the loader's own rule compiler
(``gateway.mapfile.compile_rule``: allowed targets, declared hosts), and checks
the rows against each other and against the map: among rows for the same rule the
first wins, a later row that answers differently is an error; a row the map
already has, or already answers the same way, is dropped; a row that another rule
would always answer first is an error. The result is a ``from,to,status,note``
table that the map's ``include:`` reads.

Blank ``new_url`` (or status 410) means "no equivalent" (GOV.UK Transition's
convention): a 410 rule. A 410 row's new URL is dropped (tables carry no ``see``)
and reported.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import tempfile
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.canonical import Malformed, fold, parse_request, split_target
from gateway.decide import answer, decide
from gateway.mapfile import (
    CSV_HEADER,
    MapError,
    Problem,
    RedirectMap,
    compile_rule,
    load_map,
    read_yaml,
)
from gateway.matcher import Matcher

# Re-exported: plan_import raises it too, and its callers catch it from here.
from gateway.ops.sheets import ImportFailed as ImportFailed
from gateway.ops.sheets import read_sheet
from gateway.ops.urls import from_text, request_of
from gateway.outcomes import Gone, Redirect
from gateway.rules import Rule

DEFAULT_INTO = "redirects.d/imported.csv"


@dataclass(frozen=True)
class TableRow:
    """One clean row of the written table, with the input line it came from."""

    line: int
    from_text: str
    to: str
    status: int
    note: str


@dataclass(frozen=True)
class ImportPlan:
    """What an import would write, and every problem found (named ``INPUT:LINE``)."""

    source: str
    encoding: str
    delimiter: str
    header: bool
    rows_read: int
    rows: tuple[TableRow, ...]
    problems: tuple[Problem, ...]
    into: Path
    into_shown: str

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Return the errors: each names a bad row."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def bad_lines(self) -> tuple[int, ...]:
        """Return the input lines of the rows that have errors, in order."""
        return tuple(sorted({p.line for p in self.errors}))


@dataclass(frozen=True)
class WriteResult:
    """What ``write_table`` did: the file written, whether the map includes it, reload problems."""

    path: Path
    shown: str
    rows: int
    included: bool
    map_rules: int | None
    problems: tuple[Problem, ...] = ()


# --- planning ----------------------------------------------------------------------------------


def _not_from(rules: Collection[Rule], into: Path) -> list[Rule]:
    """Return the rules that do not come from the table being (re)written."""
    target = into.resolve()
    # Resolve each file once, not once per rule: maps hold 100,000 rules.
    other = {f: Path(f).resolve() != target for f in {r.file for r in rules}}
    return [r for r in rules if other[r.file]]


def _answer_text(rule: Rule) -> str:
    if rule.target is None:
        return "410" + (f" (see {rule.see})" if rule.see else "")
    location = rule.target.constant or rule.to_text or ""
    return f"{rule.status} -> {location}"


def _key(rule: Rule) -> tuple[object, ...]:
    return rule.host, rule.path, frozenset(c.signature() for c in rule.conditions)


def resolve_into(redirect_map: RedirectMap, into: str) -> tuple[Path, str]:
    """Return the ``--into`` file as a path and as shown: relative to the map's folder."""
    shown = os.path.normpath(os.path.join(os.path.dirname(redirect_map.path), into))
    return Path(shown), shown


def plan_import(
    redirect_map: RedirectMap,
    csv_path: str,
    *,
    into: str = DEFAULT_INTO,
    host: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportPlan:
    """Read a spreadsheet and check every row; return what would be written and every problem.

    ``host`` (a served host) is the host of rows whose old URL is a path; without it such
    rows apply to every host, as ``/path`` does in the map.
    """
    sheet = read_sheet(csv_path)
    into_path, into_shown = resolve_into(redirect_map, into)
    if not into_shown.endswith(".csv"):
        raise ImportFailed(f"--into {into!r}: the table must be a .csv file")
    scope = redirect_map.host_of(host) if host else None
    if host and scope is None:
        raise ImportFailed(f"--host {host!r} is not under hosts: in {redirect_map.path}")
    problems: list[Problem] = []
    compiled: list[tuple[TableRow, Rule, str]] = []  # row, rule, its request target

    def problem(line: int, message: str, severity: str = "error") -> None:
        problems.append(Problem(csv_path, line, message, severity))

    for line, cells, width in sheet.rows:
        if progress is not None:
            progress(1)
        if width > 4:
            problem(line, f"{width} columns; expected old_url,new_url[,status][,note]")
            continue
        row = _compile_row(redirect_map, csv_path, line, cells, scope, problem)
        if row is not None:
            compiled.append(row)
    kept = list(_dedupe(redirect_map, into_path, compiled, problem))
    kept = list(_against_map(redirect_map, into_path, kept, csv_path, problem))
    bad = {p.line for p in problems if p.severity == "error"}
    rows = tuple(row for row, _, _ in kept if row.line not in bad)
    problems.sort(key=lambda p: (p.line, p.severity != "error"))
    return ImportPlan(
        source=csv_path,
        encoding=sheet.encoding,
        delimiter=sheet.delimiter,
        header=sheet.header,
        rows_read=len(sheet.rows),
        rows=rows,
        problems=tuple(problems),
        into=into_path,
        into_shown=into_shown,
    )


def _compile_row(
    redirect_map: RedirectMap,
    csv_path: str,
    line: int,
    cells: dict[str, str],
    scope: str | None,
    problem: Callable[..., None],
) -> tuple[TableRow, Rule, str] | None:
    old, new = cells.get("old", ""), cells.get("new", "")
    status_text, note = cells.get("status", ""), cells.get("note", "")
    if not old:
        problem(line, "old_url is empty")
        return None
    site = redirect_map.site
    _, target = request_of(old, scope or redirect_map.default_host)
    try:
        authority, _, _ = split_target(target)
        row_host = scope
        if authority is not None:
            row_host = redirect_map.host_of(authority)
            if row_host is None:
                problem(line, f"old_url: host {authority!r} is not under hosts:")
                return None
        url = parse_request(
            row_host or redirect_map.default_host,
            target,
            case_sensitive=site.case_sensitive,
            is_ignored=site.is_ignored,
        )
    except Malformed as exc:
        problem(line, f"old_url {old!r}: {exc}")
        return None
    if status_text and not status_text.isdigit():
        problem(line, f"status must be a number, not {status_text!r}")
        return None
    status = int(status_text) if status_text else (301 if new else 410)
    if status == 410 and new:
        problem(
            line,
            f"status 410 has no target: new_url {new!r} is dropped (tables carry no 'see')",
            "warning",
        )
        new = ""
    segments = url.path.split("/")[1:] if url.path != "/" else []
    values = url.last_values()
    names: dict[str, str] = {}
    for p in url.params:
        names.setdefault(p.key, p.name)
    params = [(names[k], fold(v, site.case_sensitive)) for k, v in values.items()]
    text = from_text(row_host, segments, params)
    fields: dict[str, Any] = {"from": text, "status": status}
    if new:
        fields["to"] = new
    if note:
        fields["note"] = note
    rule, compile_problems = compile_rule(site, redirect_map.hosts, csv_path, line, fields)
    for found in compile_problems:
        problem(found.line, found.message)
    if rule is None:
        return None
    return TableRow(line, text, new, status, note), rule, url.to_target()


def _dedupe(
    redirect_map: RedirectMap,
    into: Path,
    rows: list[tuple[TableRow, Rule, str]],
    problem: Callable[..., None],
) -> Iterator[tuple[TableRow, Rule, str]]:
    """Keep the first row for each rule; drop exact repeats, and report later different rows."""
    existing = {_key(r): r for r in _not_from(redirect_map.rules, into) if r.steps is None}
    first: dict[tuple[object, ...], tuple[TableRow, Rule]] = {}
    for row, rule, target in rows:
        key = _key(rule)
        if key in first:
            earlier_row, earlier = first[key]
            if _answer_text(earlier) == _answer_text(rule):
                problem(row.line, f"same as line {earlier_row.line}: dropped", "warning")
            else:
                problem(
                    row.line,
                    f"conflicts with line {earlier_row.line} for {row.from_text!r}: line"
                    f" {earlier_row.line} says {_answer_text(earlier)}, this row says"
                    f" {_answer_text(rule)}; the first row wins",
                )
            continue
        first[key] = (row, rule)
        there = existing.get(key)
        if there is not None:
            if _answer_text(there) == _answer_text(rule):
                problem(row.line, f"already in the map at {there.source}: dropped", "warning")
            else:
                problem(
                    row.line,
                    f"conflicts with {there.source} ({there.from_text!r}, {_answer_text(there)});"
                    f" this row says {_answer_text(rule)}: a map cannot hold both, change or"
                    " delete one",
                )
            continue
        yield row, rule, target


def _against_map(
    redirect_map: RedirectMap,
    into: Path,
    rows: list[tuple[TableRow, Rule, str]],
    csv_path: str,
    problem: Callable[..., None],
) -> Iterator[tuple[TableRow, Rule, str]]:
    """Ask the map, with and without the new rows, who answers each row's own URL."""
    site = redirect_map.site
    existing = _not_from(redirect_map.rules, into)
    before = redirect_map
    if len(existing) != len(redirect_map.rules):
        before = replace(
            redirect_map,
            rules=tuple(existing),
            matcher=Matcher(existing, case_sensitive=site.case_sensitive),
        )
    new_rules = [
        replace(rule, order=len(existing) + i, source=f"{csv_path}:{row.line}")
        for i, (row, rule, _) in enumerate(rows)
    ]
    merged = [*existing, *new_rules]
    after = replace(
        redirect_map,
        rules=tuple(merged),
        matcher=Matcher(merged, case_sensitive=site.case_sensitive),
    )
    hosts = tuple(dict.fromkeys(redirect_map.hosts.values()))
    stolen = _stolen_examples(redirect_map, before, after, existing, new_rules)
    for (row, _, target), rule in zip(rows, new_rules, strict=True):
        if rule.source in stolen:
            for example, owner in stolen[rule.source]:
                problem(
                    row.line,
                    f"answers {example!r}, an example of {owner.source} ({owner.from_text!r}),"
                    f" which that rule must answer ({_why(rule, owner)}): change the row or"
                    " the example",
                )
            continue
        answered: list[str] = []
        lost: list[tuple[str, Rule]] = []
        same: Rule | None = None
        overrides: Rule | None = None
        for host in (rule.host,) if rule.host else hosts:
            url = parse_request(
                host, target, case_sensitive=site.case_sensitive, is_ignored=site.is_ignored
            )
            now = answer(after, url)
            if not isinstance(now, (Redirect, Gone)) or now.rule is not rule:
                if isinstance(now, (Redirect, Gone)):
                    lost.append((host, now.rule))
                continue
            answered.append(host)
            was = answer(before, url)
            if isinstance(was, (Redirect, Gone)):
                if _same(was, now):
                    same = same or was.rule
                else:
                    overrides = overrides or was.rule
        if not answered:
            host, winner = lost[0]
            problem(
                row.line,
                f"never answers: {winner.source} ({winner.from_text!r}) answers"
                f" {row.from_text!r} first ({_why(winner, rule)})",
            )
            continue
        for host, winner in lost:
            problem(
                row.line,
                f"on {host}, {winner.source} ({winner.from_text!r}) answers first"
                f" ({_why(winner, rule)})",
                "warning",
            )
        if same is not None and overrides is None:
            problem(
                row.line,
                f"the map already answers it the same way ({same.source},"
                f" {same.from_text!r}): dropped",
                "warning",
            )
            continue
        if overrides is not None:
            problem(
                row.line,
                f"overrides {overrides.source} ({overrides.from_text!r},"
                f" {_answer_text(overrides)}) for this URL: {_why(rule, overrides)}",
                "note",
            )
        yield row, rule, target


def _stolen_examples(
    redirect_map: RedirectMap,
    before: RedirectMap,
    after: RedirectMap,
    existing: list[Rule],
    new_rules: list[Rule],
) -> dict[str, list[tuple[str, Rule]]]:
    """Find the map's ``examples:`` that a new row would answer instead of their own rule."""
    new_sources = {r.source for r in new_rules}
    stolen: dict[str, list[tuple[str, Rule]]] = {}
    for owner in existing:
        host = owner.host or redirect_map.default_host
        for example in owner.examples:
            host_header, target = request_of(example, host)
            now = decide(after, "GET", host_header, target)
            if not isinstance(now, (Redirect, Gone)) or now.rule.source not in new_sources:
                continue
            was = decide(before, "GET", host_header, target)
            # An example that was already broken is `gateway check`'s to report, not the row's.
            if isinstance(was, (Redirect, Gone)) and was.rule is owner:
                stolen.setdefault(now.rule.source, []).append((example, owner))
    return stolen


def _why(winner: Rule, loser: Rule) -> str:
    """Say which step of the precedence (spec §4) lets ``winner`` answer before ``loser``."""
    if winner.steps is None and loser.steps is not None:
        return "an exact rule wins over a pattern"
    if winner.steps is None and winner.host is not None and loser.host is None:
        return "a host's own exact rule wins over an every-host one"
    if len(winner.conditions) > len(loser.conditions):
        return "the exact rule with more query conditions wins"
    return "at equal conditions the earlier rule wins"


def _same(was: Redirect | Gone, now: Redirect | Gone) -> bool:
    if isinstance(was, Redirect) and isinstance(now, Redirect):
        return was.status == now.status and was.location == now.location
    if isinstance(was, Gone) and isinstance(now, Gone):
        return was.rule.see is None or was.rule.see == now.rule.see
    return False


# --- writing -------------------------------------------------------------------------------------


def table_text(rows: tuple[TableRow, ...]) -> str:
    """Return the clean table: the header ``from,to,status,note`` and one row per rule."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        writer.writerow([row.from_text, row.to, row.status, row.note])
    return out.getvalue()


def include_patterns(redirect_map: RedirectMap) -> list[str]:
    """Return the main file's ``include:`` patterns as written."""
    text = Path(redirect_map.path).read_text(encoding="utf-8-sig")
    root, _ = read_yaml(text, redirect_map.path)
    node = root.get("include") if isinstance(root, dict) else None
    if isinstance(node, str):
        return [node]
    return [p for p in node or () if isinstance(p, str)]


def is_included(redirect_map: RedirectMap, path: Path) -> bool:
    """Say whether the map's ``include:`` patterns name this file (it must exist)."""
    base = Path(redirect_map.path).parent
    target = path.resolve()
    return any(
        Path(match).resolve() == target
        for pattern in include_patterns(redirect_map)
        for match in glob.glob(str(base / pattern))
    )


def write_table(redirect_map: RedirectMap, plan: ImportPlan) -> WriteResult:
    """Write the plan's rows to its table; if the map includes it, reload and undo on failure."""
    path = plan.into
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = path.read_bytes() if path.exists() else None
    _atomic_write(path, table_text(plan.rows).encode("utf-8"))
    if not is_included(redirect_map, path):
        return WriteResult(path, plan.into_shown, len(plan.rows), False, None)
    try:
        reloaded = load_map(redirect_map.path)
    except MapError as exc:
        # Never leave the map unloadable: put the old table back.
        if previous is None:
            path.unlink()
        else:
            _atomic_write(path, previous)
        return WriteResult(path, plan.into_shown, 0, True, None, exc.problems)
    return WriteResult(path, plan.into_shown, len(plan.rows), True, len(reloaded.rules))


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
