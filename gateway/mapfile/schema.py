"""The map's schema: each section's keys and types, checked at their lines, and rule fields.

``Report`` collects a file's problems; the section parsers (``site:``, ``hosts:``,
``archive:``) and ``add_rule`` (one rule's fields, from YAML or a CSV row) turn
line-numbered YAML into values or report every problem. Pure: no Flask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.canonical import canonical_host
from gateway.mapfile.values import (
    DEFAULT_IGNORE_QUERY,
    MAX_PROBLEMS,
    STATUSES,
    Archive,
    Problem,
    Site,
    is_wildcard,
)
from gateway.mapfile.yamltext import YList, YMap
from gateway.rules import Rule, RuleError, Target, parse_from, parse_target

TOP_KEYS = ("version", "site", "hosts", "archive", "rules", "include")
SITE_KEYS = ("new_site", "allow_targets", "redirect_max_age", "case_sensitive", "ignore_query")
RULE_KEYS = ("from", "to", "status", "see", "keep_query", "note", "examples")
_ORIGIN = re.compile(r"https://([A-Za-z0-9.-]+)(:[0-9]{1,5})?/?\Z")


class Report:
    """Collects the problems of one file, at their lines (at most MAX_PROBLEMS of them)."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems

    def error(self, line: int, message: str) -> None:
        """Record an error at a line (after MAX_PROBLEMS, one last line saying so)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(self.file, line, message))
        elif len(self.problems) == MAX_PROBLEMS:
            stop = f"too many problems: stopped reporting after {MAX_PROBLEMS}"
            self.problems.append(Problem(self.file, line, stop))

    def unknown_keys(self, node: YMap, allowed: tuple[str, ...], what: str) -> None:
        """Report each key of the mapping that is not one of the allowed ones."""
        for key in node:
            if key not in allowed:
                self.error(
                    node.key_lines[key],
                    f"unknown key {key!r} in {what} (allowed: {', '.join(allowed)})",
                )

    def typed(self, node: YMap, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        """Return node[key] when it has the right type; report it and return None otherwise."""
        value = node.get(key)
        if value is None:
            return None
        if isinstance(value, bool) and kind is not bool and bool not in _as_tuple(kind):
            ok = False
        else:
            ok = isinstance(value, kind)
        if not ok:
            self.error(
                node.key_lines[key], f"{what} must be {_kind_name(kind)}, not {describe(value)}"
            )
            return None
        return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "text",
        int: "a whole number",
        bool: "true or false",
        YMap: "a mapping",
        YList: "a list",
    }
    return " or ".join(names.get(k, k.__name__) for k in _as_tuple(kind))


def describe(value: Any) -> str:
    """Name a YAML value for a message: its type and value, or "a mapping"/"a list"."""
    if isinstance(value, YMap):
        return "a mapping"
    if isinstance(value, YList):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def text_list(report: Report, node: YMap, key: str, what: str) -> list[tuple[str, int]] | None:
    """Return the non-empty text items of a list with their lines; report the others."""
    value = report.typed(node, key, YList, what)
    if value is None:
        return None
    items = []
    for item, line in zip(value, value.lines, strict=True):
        if isinstance(item, str) and item.strip():
            items.append((item.strip(), line))
        else:
            report.error(line, f"each item of {what} must be non-empty text, not {describe(item)}")
    return items


def parse_site(report: Report, node: Any, line: int) -> Site | None:
    """Parse the ``site:`` section into a Site, or report why not and return None."""
    if not isinstance(node, YMap):
        report.error(line, "'site:' is required and must be a mapping with new_site")
        return None
    report.unknown_keys(node, SITE_KEYS, "site")
    new_site = report.typed(node, "new_site", str, "site.new_site")
    origin = _ORIGIN.match(new_site or "")
    if new_site is None:
        if node.get("new_site") is None:  # absent, or a key with no value
            report.error(node.line, "site.new_site is required (e.g. https://khv27.ru)")
        return None
    if not origin:
        report.error(
            node.key_lines["new_site"],
            f"site.new_site must be an https origin like https://khv27.ru, not {new_site!r}",
        )
        return None
    allow = text_list(report, node, "allow_targets", "site.allow_targets")
    allow_targets = (
        tuple(a.lower().rstrip(".") for a, _ in allow)
        if allow is not None
        else (origin.group(1).lower(),)
    )
    for target, tline in allow or ():
        if "*" in target[2:] if target.startswith("*.") else "*" in target:
            report.error(
                tline, f"allow_targets entry {target!r}: only a host or '*.host' is allowed"
            )
    max_age = report.typed(node, "redirect_max_age", int, "site.redirect_max_age")
    if max_age is not None and max_age < 0:
        report.error(
            node.key_lines["redirect_max_age"], "site.redirect_max_age must not be negative"
        )
    case = report.typed(node, "case_sensitive", bool, "site.case_sensitive")
    ignore = text_list(report, node, "ignore_query", "site.ignore_query")
    ignore_query = tuple(i for i, _ in ignore) if ignore is not None else DEFAULT_IGNORE_QUERY
    site = Site(
        new_site=new_site.rstrip("/"),
        allow_targets=allow_targets,
        redirect_max_age=86400 if max_age is None else max_age,
        case_sensitive=bool(case),
        ignore_query=ignore_query,
    )
    if not site.host_allowed(origin.group(1)):
        report.error(
            node.key_lines.get("allow_targets", node.line),
            "allow_targets must include the host of new_site",
        )
    return site


def parse_hosts(report: Report, node: Any, line: int) -> dict[str, str]:
    """Parse ``hosts:`` into every served name -> its canonical host; report the bad ones."""
    hosts: dict[str, str] = {}
    where: dict[str, int] = {}
    if not isinstance(node, YMap) or not node:
        report.error(line, "'hosts:' is required: a mapping of at least one legacy host")
        return hosts
    for name, value in node.items():
        hline = node.key_lines[name]
        names = [(name, hline)]
        if isinstance(value, YMap):
            report.unknown_keys(value, ("aliases",), f"host {name!r}")
            names += text_list(report, value, "aliases", f"aliases of {name!r}") or []
        elif value is not None:
            report.error(
                hline,
                f"host {name!r} must map to {{}} or {{aliases: [...]}}, not {describe(value)}",
            )
        if is_wildcard(name):
            domain = canonical_host(name[2:]) if "/" not in name else None
            if domain is None or "*" in domain or "." not in domain:
                report.error(hline, f"{name!r} is not a wildcard host ('*.' and a domain)")
                continue
            if len(names) > 1:
                report.error(hline, f"a wildcard host has no aliases: {name!r} answers them all")
                continue
            names = [(f"*.{domain}", hline)]
        canonical = canonical_host(name) if "/" not in name else None
        if canonical is None or ("*" in canonical and not is_wildcard(canonical)):
            report.error(hline, f"{name!r} is not a host name")
            continue
        for alias, aline in names:
            key = canonical_host(alias) if "/" not in alias else None
            if key is None:
                report.error(aline, f"{alias!r} is not a host name")
            elif key in hosts:
                report.error(
                    aline, f"host {alias!r} is declared twice (first at line {where[key]})"
                )
            else:
                hosts[key] = canonical
                where[key] = aline
    return hosts


def parse_archive(report: Report, node: Any, line: int) -> Archive | None:
    """Parse the ``archive:`` section into an Archive, or report why not and return None."""
    if not isinstance(node, YMap):
        report.error(line, "'archive:' is required: a mapping with notice.ru")
        return None
    report.unknown_keys(node, ("notice", "wayback", "english", "warc"), "archive")
    english = _english_sections(report, node)
    warc = _warc_patterns(report, node)
    notice = report.typed(node, "notice", YMap, "archive.notice")
    wayback = report.typed(node, "wayback", str, "archive.wayback")
    if wayback is not None and not re.match(r"https?://[^/\s]+/\S*\Z", wayback):
        report.error(
            node.key_lines["wayback"],
            f"archive.wayback must be an http(s) URL prefix, not {wayback!r}",
        )
    if notice is None:
        if node.get("notice") is None:  # absent, or a key with no value
            report.error(node.line, "archive.notice.ru is required")
        return None
    report.unknown_keys(notice, ("ru", "en"), "archive.notice")
    ru = report.typed(notice, "ru", str, "archive.notice.ru")
    en = report.typed(notice, "en", str, "archive.notice.en")
    if not ru or not ru.strip():
        # Absent, no value, empty or blank; a wrong type was reported by typed() already.
        if notice.get("ru") is None or isinstance(notice.get("ru"), str):
            report.error(notice.line, "archive.notice.ru is required and must not be empty")
        return None
    return Archive(
        notice_ru=ru.strip(),
        notice_en=(en or ru).strip(),
        wayback=wayback,
        english=english,
        warc=warc,
    )


def _warc_patterns(report: Report, node: YMap) -> tuple[str, ...]:
    """Parse ``archive.warc``: paths or globs of .warc, .warc.gz and .wacz files (spec §8)."""
    if isinstance(node.get("warc"), str):
        items = [(str(node["warc"]).strip(), node.key_lines["warc"])]
    else:
        items = text_list(report, node, "warc", "archive.warc") or []
    patterns = []
    for pattern, pline in items:
        if not pattern.lower().endswith((".warc", ".warc.gz", ".wacz")):
            report.error(
                pline,
                f"archive.warc {pattern!r}: only .warc, .warc.gz and .wacz files are web archives",
            )
            continue
        patterns.append(pattern)
    return tuple(patterns)


def _english_sections(report: Report, node: YMap) -> tuple[tuple[str | None, str], ...]:
    """Parse ``archive.english``: ``[host]/path`` prefixes whose banner is always English."""
    sections: list[tuple[str | None, str]] = []
    for text, tline in text_list(report, node, "english", "archive.english") or ():
        host_text, slash, path = text.partition("/")
        host = canonical_host(host_text) if host_text else None
        if not slash or (host_text and host is None) or "?" in path or "<" in path:
            report.error(
                tline,
                f"archive.english entry {text!r}: a path prefix, maybe after a host"
                " ('/tourism-en/', 'int.khabarovskadm.ru/')",
            )
            continue
        prefix = "/" + "/".join(s for s in path.lower().split("/") if s)
        sections.append((host, prefix))
    return tuple(sections)


# --- rules -----------------------------------------------------------------------------


@dataclass
class RuleContext:
    """What compiling rules needs: the site, the served hosts, and the rules so far."""

    site: Site
    hosts: dict[str, str]
    rules: list[Rule] = field(default_factory=list)

    def host(self, name: str) -> str | None:
        """Return the canonical served host for a name written in a rule, or None."""
        key = canonical_host(name)
        # Rules cannot be scoped to a wildcard (§1a): a subdomain with rules is declared.
        return self.hosts.get(key) if key and not is_wildcard(key) else None


def add_rule(
    ctx: RuleContext,
    report: Report,
    line: int,
    fields: dict[str, Any],
    field_lines: dict[str, int],
) -> None:
    """Compile one rule's fields (already type-checked) and append it, or report why not."""

    def fail(key: str, message: str) -> None:
        report.error(field_lines.get(key, line), message)

    source = f"{report.file}:{line}"
    status = fields.get("status")
    status = 301 if status is None else status
    if status not in STATUSES:
        fail("status", f"status must be one of {', '.join(map(str, STATUSES))}, not {status!r}")
        return
    to, see, keep_query = fields.get("to"), fields.get("see"), fields.get("keep_query")
    ok = True
    if status == 410:
        if to is not None:
            fail("to", "a 410 rule has no 'to' (use 'see:' for a suggested page)")
            ok = False
        if keep_query is not None:
            fail("keep_query", "keep_query is only for redirects, not 410 rules")
            ok = False
    else:
        if to is None:
            fail("from", "a redirect needs 'to' (or 'status: 410' for content with no equivalent)")
            ok = False
        if see is not None:
            fail("see", "'see' is only for 410 rules (the banner's suggested page)")
            ok = False
    try:
        parts = parse_from(
            fields["from"],
            case_sensitive=ctx.site.case_sensitive,
            is_ignored=ctx.site.is_ignored,
            canonical_host=ctx.host,
        )
    except RuleError as exc:
        fail("from", f"from: {exc}")
        return
    target: Target | None = None
    see_url: str | None = None
    try:
        if to is not None:
            target = parse_target(
                to,
                new_site=ctx.site.new_site,
                host_allowed=ctx.site.host_allowed,
                captures=parts.captures,
            )
    except RuleError as exc:
        fail("to", str(exc))
        ok = False
    try:
        if see is not None:
            see_target = parse_target(
                see,
                new_site=ctx.site.new_site,
                host_allowed=ctx.site.host_allowed,
                captures={},
                what="see",
            )
            see_url = see_target.constant
    except RuleError as exc:
        fail("see", str(exc))
        ok = False
    if not ok:
        return
    ctx.rules.append(
        Rule(
            source=source,
            order=len(ctx.rules),
            host=parts.host,
            from_text=fields["from"],
            path=parts.path,
            steps=parts.steps,
            conditions=parts.conditions,
            status=status,
            target=target,
            see=see_url,
            keep_query=bool(keep_query),
            note=fields.get("note") or "",
            examples=tuple(fields.get("examples") or ()),
            to_text=to or None,
            captures=parts.captures,
        )
    )


def compile_rule(
    site: Site, hosts: dict[str, str], file: str, line: int, fields: dict[str, Any]
) -> tuple[Rule | None, list[Problem]]:
    """Compile one rule's fields (from, to, status, see, note) exactly as the loader would."""
    # For tools that write rules (gateway import): one compiler, so a row that passes here
    # loads the same way from the table it is written to.
    problems: list[Problem] = []
    ctx = RuleContext(site, hosts)
    add_rule(ctx, Report(file, problems), line, fields, {})
    return (ctx.rules[0] if ctx.rules else None), problems


_RULE_TYPES: dict[str, type | tuple[type, ...]] = {
    "from": str,
    "to": str,
    "status": int,
    "see": str,
    "keep_query": bool,
    "note": str,
    "examples": YList,
}


def yaml_rules(ctx: RuleContext, report: Report, node: Any, line: int) -> None:
    """Type-check each rule of a ``rules:`` list and add it to the context, or report it."""
    if node is None:
        return
    if not isinstance(node, YList):
        report.error(line, f"'rules:' must be a list, not {describe(node)}")
        return
    for item, iline in zip(node, node.lines, strict=True):
        if not isinstance(item, YMap):
            report.error(iline, f"each rule must be a mapping with 'from', not {describe(item)}")
            continue
        report.unknown_keys(item, RULE_KEYS, "a rule")
        fields: dict[str, Any] = {}
        good = True
        for key, kind in _RULE_TYPES.items():
            if key in item:
                value = report.typed(item, key, kind, f"'{key}'")
                if value is None:
                    if item[key] is not None or key == "from":
                        good = False
                    continue
                fields[key] = value
        if "from" not in item:
            report.error(item.line, "a rule needs 'from'")
            continue
        if "examples" in fields:
            examples = text_list(report, item, "examples", "'examples'") or []
            fields["examples"] = [e for e, _ in examples]
        if good:
            add_rule(ctx, report, item.line, fields, item.key_lines)
