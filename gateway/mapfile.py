"""Read ``redirects.yaml`` and its includes into a validated ``RedirectMap``, or every problem.

Every problem is found here, at load time, and reported as ``FILE:LINE: error:
message`` — all of them, not just the first. YAML is read event by event (with
the C parser when present) so that line numbers, duplicate keys, anchors,
aliases, tags and nesting depth are all under our control: an alias bomb is
refused before anything is built. Pure: no Flask.
"""

from __future__ import annotations

import csv
import functools
import gc
import glob
import hashlib
import io
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from gateway import fastpaths
from gateway.canonical import canonical_host, ignore_matcher
from gateway.matcher import Matcher
from gateway.rules import (
    NO_CAPTURES,
    Condition,
    RuleError,
    Target,
    literal_path,
    parse_from,
    parse_target,
    plain_target,
)
from gateway.rules import Rule as Rule

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 16
MAX_PROBLEMS = 200  # a list longer than this is no help to anyone, and costs memory
STATUSES = (301, 302, 307, 308, 410)
DEFAULT_IGNORE_QUERY = (
    "utm_*",
    "gclid",
    "yclid",
    "_openstat",
    "sphrase_id",
    "PAGEN_*",
    "SHOWALL_*",
    "clear_cache",
    "bitrix_include_areas",
    "print",
)
TOP_KEYS = ("version", "site", "hosts", "archive", "rules", "include")
SITE_KEYS = ("new_site", "allow_targets", "redirect_max_age", "case_sensitive", "ignore_query")
RULE_KEYS = ("from", "to", "status", "see", "keep_query", "note", "examples")
CSV_HEADER = ("from", "to", "status", "note")
_ORIGIN = re.compile(r"https://([A-Za-z0-9.-]+)(:[0-9]{1,5})?/?\Z")


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a map file, at a line (0 when it concerns the whole file)."""

    file: str
    line: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message}"


class MapError(Exception):
    """A map that cannot be served; ``problems`` lists every error found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Site:
    """The ``site:`` section: where redirects go and how URLs are compared."""

    new_site: str
    allow_targets: tuple[str, ...]
    redirect_max_age: int = 86400
    case_sensitive: bool = False
    ignore_query: tuple[str, ...] = DEFAULT_IGNORE_QUERY
    is_ignored: Callable[[str], bool] = field(default=lambda name: False, compare=False)

    def host_allowed(self, host: str) -> bool:
        """Say whether a redirect may land on this host (``*.x`` means any subdomain of x)."""
        host = host.lower().rstrip(".")
        for allowed in self.allow_targets:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]) and len(host) > len(allowed) - 1:
                    return True
            elif host == allowed:
                return True
        return False


@dataclass(frozen=True)
class Archive:
    """The ``archive:`` section: the banner's notice and the archived-copy prefix."""

    notice_ru: str
    notice_en: str
    wayback: str | None = None


@dataclass(frozen=True)
class RedirectMap:
    """A loaded, validated map: everything the matcher and the banner need."""

    path: str
    site: Site
    hosts: dict[str, str]  # every served name (hosts and aliases) -> its canonical host
    archive: Archive
    rules: tuple[Rule, ...]
    files: tuple[str, ...]  # every file read, main first: what a reload watches
    version: str  # content hash of those files
    loaded_at: datetime
    matcher: Matcher = field(compare=False, repr=False)
    # The include globs joined to the map's folder: a reload re-globs them to see new files.
    include_patterns: tuple[str, ...] = ()

    @property
    def default_host(self) -> str:
        """Return the first host under ``hosts:``: the host of a request that names none."""
        return next(iter(self.hosts.values()))

    def host_of(self, name: str) -> str | None:
        """Return the canonical served host for a Host header, or None if not served."""
        host = canonical_host(name)
        return self.hosts.get(host) if host else None


# --- YAML with line numbers ---------------------------------------------------------


class YMap(dict[str, Any]):
    """A YAML mapping that remembers its line and the line of each key."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}


class YList(list[Any]):
    """A YAML sequence that remembers its line and the line of each item."""

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.lines: list[int] = []


_resolver: Any = yaml.resolver.Resolver()
_constructor = yaml.constructor.SafeConstructor()
_NO_KEY = object()


@functools.lru_cache(maxsize=4096)
def _plain_tag(value: str) -> str:
    """Return the tag YAML gives a plain scalar: it depends on the text alone."""
    # Cached: a 100k-rule map repeats "from", "to", "status", 301 in every rule, and the
    # resolver tries its regexes in Python each time.
    tag: str = _resolver.resolve(yaml.ScalarNode, value, (True, False))
    return tag


def _scalar(event: Any) -> Any:
    if not event.implicit[0]:  # quoted: always text
        return event.value
    tag = _plain_tag(event.value)
    if tag == "tag:yaml.org,2002:str":
        return event.value
    try:
        return _constructor.yaml_constructors[tag](_constructor, yaml.ScalarNode(tag, event.value))
    except Exception:
        return event.value


def read_yaml(text: str, file: str) -> Any:
    """Compose one YAML document into YMap/YList/scalars, refusing anchors, aliases and tags."""
    problems: list[Problem] = []
    stack: list[list[Any]] = []  # [container, pending key, line of that key]
    root: Any = _NO_KEY
    documents = 0

    def add(value: Any, line: int) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        frame = stack[-1]
        container = frame[0]
        if isinstance(container, YList):
            container.append(value)
            container.lines.append(line)
        elif frame[1] is _NO_KEY:
            if not isinstance(value, str):
                problems.append(Problem(file, line, f"a key must be text, not {value!r}"))
                value = repr(value)
            frame[1] = value
            frame[2] = line
        else:
            # A key's line, not its value's: a block value starts on the line after the key.
            key, key_line = frame[1], frame[2]
            frame[1] = _NO_KEY
            if key in container:
                first = container.key_lines[key]
                problems.append(
                    Problem(file, key_line, f"duplicate key {key!r} (first at line {first})")
                )
            else:
                container[key] = value
                container.key_lines[key] = key_line

    try:
        for event in yaml.parse(text, Loader=_Loader):
            line = event.start_mark.line + 1 if event.start_mark else 0
            if len(problems) >= MAX_PROBLEMS:
                # 10 MB of "a: " lines would otherwise be 2.6 million problems (and 1 GB).
                raise _Refused(line, f"too many problems: stopped reading after {MAX_PROBLEMS}")
            if type(event) is yaml.ScalarEvent and event.anchor is None and event.tag is None:
                add(_scalar(event), line)  # the most common event, without the checks below
                continue
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(line, "YAML aliases (*name) are not allowed")
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _Refused(line, "only one YAML document is allowed (found '---')")
                continue
            if not isinstance(
                event, (yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent)
            ):
                if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                    container = stack.pop()[0]
                    add(container, container.line)
                continue
            if event.anchor is not None:
                raise _Refused(line, f"YAML anchors (&{event.anchor}) are not allowed")
            if event.tag is not None:
                raise _Refused(line, f"YAML tags ({event.tag}) are not allowed")
            if isinstance(event, yaml.ScalarEvent):
                add(_scalar(event), line)
            else:
                if len(stack) >= MAX_DEPTH:
                    raise _Refused(line, f"nesting deeper than {MAX_DEPTH} levels")
                stack.append(
                    [
                        YMap(line) if isinstance(event, yaml.MappingStartEvent) else YList(line),
                        _NO_KEY,
                        0,
                    ]
                )
    except _Refused as refused:
        return None, [*problems, Problem(file, refused.line, refused.message)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        message = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        return None, [*problems, Problem(file, line, f"YAML syntax: {message}")]
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 0
        # One line per problem: a ReaderError's text goes on with '\n  in "<unicode string>"'.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, [*problems, Problem(file, line, f"YAML: {first_line}")]
    except RecursionError:
        return None, [*problems, Problem(file, 0, "YAML nested too deeply")]
    if root is _NO_KEY or root is None:
        return None, [*problems, Problem(file, 1, "the file is empty: an empty map is not a map")]
    return root, problems


class _Refused(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def read_text(path: Path, file: str) -> tuple[str | None, bytes, list[Problem]]:
    """Read a map file as UTF-8 text (a BOM is allowed), or report why not."""
    try:
        # O_NONBLOCK and fstat: a FIFO put in the map's place would block a plain read until
        # a writer came (hanging startup or a reload), and /dev/zero would never end.
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                return (
                    None,
                    b"",
                    [Problem(file, 0, "not a regular file (a FIFO, socket or device)")],
                )
            data = stream.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            return None, b"", [Problem(file, 0, f"larger than {MAX_FILE_BYTES} bytes")]
    except IsADirectoryError:
        return None, b"", [Problem(file, 0, "is a directory, not a file")]
    except OSError as exc:
        return None, b"", [Problem(file, 0, f"cannot read: {exc.strerror or exc}")]
    try:
        return data.decode("utf-8-sig"), data, []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, data, [Problem(file, line, "not UTF-8 text")]


# --- the schema ----------------------------------------------------------------------


class _Report:
    """Collects problems for one file; ``line(node, key)`` finds where a value stands."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems

    def error(self, line: int, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(self.file, line, message))
        elif len(self.problems) == MAX_PROBLEMS:
            stop = f"too many problems: stopped reporting after {MAX_PROBLEMS}"
            self.problems.append(Problem(self.file, line, stop))

    def unknown_keys(self, node: YMap, allowed: tuple[str, ...], what: str) -> None:
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
                node.key_lines[key], f"{what} must be {_kind_name(kind)}, not {_describe(value)}"
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


def _describe(value: Any) -> str:
    if isinstance(value, YMap):
        return "a mapping"
    if isinstance(value, YList):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _text_list(report: _Report, node: YMap, key: str, what: str) -> list[tuple[str, int]] | None:
    value = report.typed(node, key, YList, what)
    if value is None:
        return None
    items = []
    for item, line in zip(value, value.lines, strict=True):
        if isinstance(item, str) and item.strip():
            items.append((item.strip(), line))
        else:
            report.error(line, f"each item of {what} must be non-empty text, not {_describe(item)}")
    return items


def _parse_site(report: _Report, node: Any, line: int) -> Site | None:
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
    allow = _text_list(report, node, "allow_targets", "site.allow_targets")
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
    ignore = _text_list(report, node, "ignore_query", "site.ignore_query")
    ignore_query = tuple(i for i, _ in ignore) if ignore is not None else DEFAULT_IGNORE_QUERY
    site = Site(
        new_site=new_site.rstrip("/"),
        allow_targets=allow_targets,
        redirect_max_age=86400 if max_age is None else max_age,
        case_sensitive=bool(case),
        ignore_query=ignore_query,
        is_ignored=ignore_matcher(ignore_query),
    )
    if not site.host_allowed(origin.group(1)):
        report.error(
            node.key_lines.get("allow_targets", node.line),
            "allow_targets must include the host of new_site",
        )
    return site


def _parse_hosts(report: _Report, node: Any, line: int) -> dict[str, str]:
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
            names += _text_list(report, value, "aliases", f"aliases of {name!r}") or []
        elif value is not None:
            report.error(
                hline,
                f"host {name!r} must map to {{}} or {{aliases: [...]}}, not {_describe(value)}",
            )
        canonical = canonical_host(name) if "/" not in name else None
        if canonical is None:
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


def _parse_archive(report: _Report, node: Any, line: int) -> Archive | None:
    if not isinstance(node, YMap):
        report.error(line, "'archive:' is required: a mapping with notice.ru")
        return None
    report.unknown_keys(node, ("notice", "wayback"), "archive")
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
    return Archive(notice_ru=ru.strip(), notice_en=(en or ru).strip(), wayback=wayback)


# --- rules -----------------------------------------------------------------------------


@dataclass
class _RuleContext:
    site: Site
    hosts: dict[str, str]
    rules: list[Rule] = field(default_factory=list)

    def host(self, name: str) -> str | None:
        key = canonical_host(name)
        return self.hosts.get(key) if key else None


def _compile_rule(
    ctx: _RuleContext,
    report: _Report,
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
    ctx = _RuleContext(site, hosts)
    _compile_rule(ctx, _Report(file, problems), line, fields, {})
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


def _yaml_rules(ctx: _RuleContext, report: _Report, node: Any, line: int) -> None:
    if node is None:
        return
    if not isinstance(node, YList):
        report.error(line, f"'rules:' must be a list, not {_describe(node)}")
        return
    for item, iline in zip(node, node.lines, strict=True):
        if not isinstance(item, YMap):
            report.error(iline, f"each rule must be a mapping with 'from', not {_describe(item)}")
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
            examples = _text_list(report, item, "examples", "'examples'") or []
            fields["examples"] = [e for e, _ in examples]
        if good:
            _compile_rule(ctx, report, item.line, fields, item.key_lines)


def _csv_rules(ctx: _RuleContext, report: _Report, text: str) -> None:
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
        rule = _fast_csv_rule(ctx, report.file, line, row) if fastpaths.ENABLED else None
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
        _compile_rule(ctx, report, line, fields, {})
    if header is None:
        report.error(1, "the table is empty: it needs the header from,to,status,note")


# The usual row of a big table: a path (maybe after a host; no placeholder), one plain
# query condition, a plain constant target. _fast_csv_rule builds for it the Rule that
# _compile_rule would (tests/test_fast_paths.py compares them); any other row, or any
# doubt, goes the general way, which also reports the problems.
_FAST_STATUSES = {"": 301, "301": 301, "302": 302, "307": 307, "308": 308, "410": 410}
_SIMPLE_QUERY = re.compile(r"([A-Za-z0-9_.\-]+)=([A-Za-z0-9_.\-]*)\Z")


def _fast_csv_rule(ctx: _RuleContext, file: str, line: int, row: list[str]) -> Rule | None:
    """Return the rule a common CSV row compiles to, or None to take the general path."""
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
        order=len(ctx.rules),
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


def _include_files(
    report: _Report,
    node: Any,
    line: int,
    base: Path,
    shown_base: str,
    patterns: list[str] | None = None,
) -> Iterator[tuple[Path, str]]:
    if node is None:
        return
    if isinstance(node, str):
        node_items = [(node, line)]
    elif isinstance(node, YList):
        node_items = list(zip(node, node.lines, strict=True))
    else:
        report.error(line, f"'include:' must be a list of file patterns, not {_describe(node)}")
        return
    for pattern, pline in node_items:
        if not isinstance(pattern, str) or not pattern.strip():
            report.error(pline, f"each include must be a file pattern, not {_describe(pattern)}")
            continue
        if not pattern.endswith((".yaml", ".yml", ".csv")):
            report.error(
                pline, f"include {pattern!r}: only .yaml, .yml and .csv files can be included"
            )
            continue
        if patterns is not None:
            patterns.append(str(base / pattern))
        matches = sorted(glob.glob(str(base / pattern)))
        if not matches and not glob.has_magic(pattern):
            report.error(pline, f"include {pattern!r}: no such file")
        for match in matches:
            relative = os.path.relpath(match, base)
            yield Path(match), os.path.normpath(os.path.join(shown_base, relative))


def load_map(path: str | os.PathLike[str]) -> RedirectMap:
    """Load and validate a map and its includes; raise MapError listing every problem."""
    # The cyclic collector off while loading: a 100k-rule map makes about a million
    # objects and no cycles, and the collections their allocation triggers cost a third
    # of the load time (measured, issue 5). Garbage is still freed by reference counts.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_map(path)
    finally:
        if enabled:
            gc.enable()


def _load_map(path: str | os.PathLike[str]) -> RedirectMap:
    """Do the work of load_map."""
    main = Path(path)
    shown = os.fspath(path)
    problems: list[Problem] = []
    text, data, read_problems = read_text(main, shown)
    problems += read_problems
    digest = hashlib.sha256(data)
    files = [shown]
    if text is None:
        raise MapError(problems)
    if not text.strip():
        raise MapError([Problem(shown, 1, "the file is empty: an empty map is not a map")])
    root, yaml_problems = read_yaml(text, shown)
    problems += yaml_problems
    if root is None:
        raise MapError(problems)
    report = _Report(shown, problems)
    if not isinstance(root, YMap):
        report.error(
            1,
            "the map must be a mapping (version, site, hosts, archive, rules),"
            f" not {_describe(root)}",
        )
        raise MapError(problems)
    report.unknown_keys(root, TOP_KEYS, "the map")
    version = report.typed(root, "version", int, "version")
    if version is not None and version != 1:
        report.error(root.key_lines["version"], f"version must be 1, not {version}")
    key_line = root.key_lines.get
    site = _parse_site(report, root.get("site"), key_line("site", 1))
    hosts = _parse_hosts(report, root.get("hosts"), key_line("hosts", 1))
    archive = _parse_archive(report, root.get("archive"), key_line("archive", 1))
    if site is None or not hosts:
        raise MapError(problems)
    ctx = _RuleContext(site, hosts)
    _yaml_rules(ctx, report, root.get("rules"), key_line("rules", 1))
    base, shown_base = main.parent, os.path.dirname(shown)
    include_patterns: list[str] = []
    for file, shown_file in _include_files(
        report, root.get("include"), key_line("include", 1), base, shown_base, include_patterns
    ):
        sub_text, sub_data, sub_problems = read_text(file, shown_file)
        problems += sub_problems
        # Named relative to the map's folder: the same files give the same version however
        # the map's path is spelled (and a last-known-good copy keeps its version).
        digest.update(b"\0" + os.path.relpath(file, base).encode() + b"\0" + sub_data)
        files.append(shown_file)
        if sub_text is None:
            continue
        sub_report = _Report(shown_file, problems)
        if file.suffix == ".csv":
            _csv_rules(ctx, sub_report, sub_text)
            continue
        sub_root, sub_yaml_problems = read_yaml(sub_text, shown_file)
        problems += sub_yaml_problems
        if sub_root is None:
            continue
        if not isinstance(sub_root, YMap):
            sub_report.error(1, "an included YAML file must be a mapping with only 'rules:'")
            continue
        sub_report.unknown_keys(sub_root, ("rules",), "an included file (includes hold only rules)")
        _yaml_rules(ctx, sub_report, sub_root.get("rules"), sub_root.key_lines.get("rules", 1))
    problems += _duplicates(ctx.rules)
    if problems or archive is None:
        raise MapError(problems)
    rules = tuple(ctx.rules)
    return RedirectMap(
        path=shown,
        site=site,
        hosts=hosts,
        archive=archive,
        rules=rules,
        files=tuple(files),
        version=digest.hexdigest()[:16],
        loaded_at=datetime.now(UTC),
        matcher=Matcher(rules, case_sensitive=site.case_sensitive),
        include_patterns=tuple(include_patterns),
    )


def _duplicates(rules: list[Rule]) -> list[Problem]:
    """Report exact rules with the same scope, canonical path and conditions."""
    seen: dict[tuple[object, ...], Rule] = {}
    problems = []
    for rule in rules:
        if not rule.is_exact:
            continue
        first = seen.setdefault(rule.identity, rule)
        if first is not rule:
            problems.append(
                Problem(
                    rule.file,
                    rule.line,
                    f"duplicate of the rule at {first.source} (same host, path and conditions)",
                )
            )
    return problems
