"""Rules from CSV tables (``from,to,status,note``): the general row and the common row.

Every row can go through ``add_rule``, the compiler of YAML rules. The common row of
a big table takes ``compile_common_row`` instead, which builds the same rule without
the general checks (tests/test_fast_paths.py compares them). Pure: no Flask.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from gateway import fastpaths
from gateway.mapfile.schema import Report, RuleContext, add_rule
from gateway.mapfile.values import Problem, Site
from gateway.rules import NO_CAPTURES, Condition, Rule, RuleError, literal_path, plain_target

CSV_HEADER = ("from", "to", "status", "note")


def compile_csv(
    site: Site, hosts: dict[str, str], file: str, text: str
) -> tuple[list[Rule], list[Problem]]:
    """Compile a CSV table's rules exactly as the loader would, with every problem."""
    problems: list[Problem] = []
    ctx = RuleContext(site, hosts)
    csv_rules(ctx, Report(file, problems), text)
    return ctx.rules, problems


def csv_rules(ctx: RuleContext, report: Report, text: str) -> None:
    """Compile a table's rows into ``ctx.rules``; report every row that does not compile."""
    reader = csv.reader(io.StringIO(text, newline=""))
    last_line = 0
    header: list[str] | None = None
    for row in reader:
        line, last_line = last_line + 1, reader.line_num
        if header is None:
            header = [c.strip().lower() for c in row]
            if tuple(header) != CSV_HEADER[: len(header)] or len(header) < 2:
                report.error(
                    line,
                    f"the header must be {','.join(CSV_HEADER)} (status and note optional),"
                    f" not {','.join(row)!r}",
                )
                return
            continue
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header):
            report.error(line, f"{len(row)} columns where the header has {len(header)}")
            continue
        rule = compile_common_row(ctx, report.file, line, row) if fastpaths.ENABLED else None
        if rule is not None:
            ctx.rules.append(rule)
            continue
        cells = dict(zip(header, (c.strip() for c in row), strict=False))
        fields: dict[str, Any] = {"from": cells["from"]}
        if cells.get("to"):
            fields["to"] = cells["to"]
        if cells.get("note"):
            fields["note"] = cells["note"]
        status = cells.get("status", "")
        if status:
            if not status.isdigit():
                report.error(line, f"status must be a number, not {status!r}")
                continue
            fields["status"] = int(status)
        if not fields["from"]:
            report.error(line, "a rule needs 'from'")
            continue
        add_rule(ctx, report, line, fields, {})
    if header is None:
        report.error(1, "the table is empty: it needs the header from,to,status,note")


# The usual row of a big table: a path (maybe after a host; no placeholder), one plain
# query condition, a plain constant target. compile_common_row builds for it the Rule that
# add_rule would (tests/test_fast_paths.py compares them); any other row, or any
# doubt, goes the general way, which also reports the problems.
_FAST_STATUSES = {"": 301, "301": 301, "302": 302, "307": 307, "308": 308, "410": 410}
_SIMPLE_QUERY = re.compile(r"([A-Za-z0-9_.\-]+)=([A-Za-z0-9_.\-]*)\Z")


def compile_common_row(
    ctx: RuleContext, file: str, line: int, row: list[str], order: int | None = None
) -> Rule | None:
    """Return the rule a common CSV row compiles to, or None to take the general path.

    Its ``order`` is the next in ``ctx``, or `order` (a rule rebuilt from a compiled table).
    """
    n = len(row)
    from_text = row[0].strip()
    to = row[1].strip() if n > 1 else ""
    status = _FAST_STATUSES.get(row[2].strip() if n > 2 else "")
    if status is None or (status == 410) == bool(to) or not from_text:
        return None
    if "<" in from_text or ">" in from_text or "#" in from_text:
        return None
    host = None
    rest = from_text
    if not from_text.startswith("/"):
        # A host before the path ("int.example.ru/en/"), as _split_from reads it.
        cut = from_text.find("/")
        if cut <= 0 or "?" in from_text[:cut] or ":" in from_text[:cut]:
            return None
        host = ctx.host(from_text[:cut])
        if host is None:
            return None
        rest = from_text[cut:]
    raw_path, _, raw_query = rest.partition("?")
    site = ctx.site
    conditions: tuple[Condition, ...] = ()
    if raw_query:
        simple = _SIMPLE_QUERY.match(raw_query)
        if simple is None:
            return None
        name, value = simple.groups()
        if site.is_ignored(name):
            return None
        conditions = (Condition.of_literal(name, value, site.case_sensitive),)
    try:
        path = literal_path(raw_path, site.case_sensitive)
    except RuleError:
        return None
    if path is None:
        return None
    target = None
    if to:
        target = plain_target(to, new_site=site.new_site, host_allowed=site.host_allowed)
        if target is None:
            return None
    note = row[3].strip() if n > 3 else ""
    return Rule(
        source=f"{file}:{line}",
        order=len(ctx.rules) if order is None else order,
        host=host,
        from_text=from_text,
        path=path,
        steps=None,
        conditions=conditions,
        status=status,
        target=target,
        see=None,
        keep_query=False,
        note=note,
        examples=(),
        to_text=to or None,
        captures=NO_CAPTURES,
    )
