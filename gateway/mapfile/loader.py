"""Load ``redirects.yaml`` and its includes into a validated ``RedirectMap``, or every problem.

Every problem is found here, at load time, and reported as ``FILE:LINE: error:
message``: all of them, not just the first. This module reads the files (main map,
then includes in glob order), hashes them into the map's version, and refuses
duplicate rules. Pure: no Flask.
"""

from __future__ import annotations

import gc
import glob
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.crawlers import RESERVED_PATHS
from gateway.mapfile.schema import (
    TOP_KEYS,
    Report,
    RuleContext,
    describe,
    parse_archive,
    parse_hosts,
    parse_site,
    yaml_rules,
)
from gateway.mapfile.tables import csv_rules
from gateway.mapfile.values import MapError, Problem, RedirectMap
from gateway.mapfile.yamltext import YList, YMap, read_text, read_yaml
from gateway.matcher import Matcher
from gateway.rules import Rule


def _include_files(
    report: Report,
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
        report.error(line, f"'include:' must be a list of file patterns, not {describe(node)}")
        return
    for pattern, pline in node_items:
        if not isinstance(pattern, str) or not pattern.strip():
            report.error(pline, f"each include must be a file pattern, not {describe(pattern)}")
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
    report = Report(shown, problems)
    if not isinstance(root, YMap):
        report.error(
            1,
            "the map must be a mapping (version, site, hosts, archive, rules),"
            f" not {describe(root)}",
        )
        raise MapError(problems)
    report.unknown_keys(root, TOP_KEYS, "the map")
    version = report.typed(root, "version", int, "version")
    if version is not None and version != 1:
        report.error(root.key_lines["version"], f"version must be 1, not {version}")
    key_line = root.key_lines.get
    site = parse_site(report, root.get("site"), key_line("site", 1))
    hosts = parse_hosts(report, root.get("hosts"), key_line("hosts", 1))
    archive = parse_archive(report, root.get("archive"), key_line("archive", 1))
    if site is None or not hosts:
        raise MapError(problems)
    ctx = RuleContext(site, hosts)
    yaml_rules(ctx, report, root.get("rules"), key_line("rules", 1))
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
        sub_report = Report(shown_file, problems)
        if file.suffix == ".csv":
            csv_rules(ctx, sub_report, sub_text)
            continue
        sub_root, sub_yaml_problems = read_yaml(sub_text, shown_file)
        problems += sub_yaml_problems
        if sub_root is None:
            continue
        if not isinstance(sub_root, YMap):
            sub_report.error(1, "an included YAML file must be a mapping with only 'rules:'")
            continue
        sub_report.unknown_keys(sub_root, ("rules",), "an included file (includes hold only rules)")
        yaml_rules(ctx, sub_report, sub_root.get("rules"), sub_root.key_lines.get("rules", 1))
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
    """Report exact rules with the same scope, canonical path and conditions.

    And rules for the files the gateway answers itself on every host (spec §9).
    """
    seen: dict[tuple[object, ...], Rule] = {}
    problems = []
    for rule in rules:
        if not rule.is_exact:
            continue
        if rule.path.lower() in RESERVED_PATHS:
            problems.append(
                Problem(
                    rule.file,
                    rule.line,
                    f"from: {rule.path} is answered by the gateway itself on every host"
                    " (spec §9); a rule cannot take it",
                )
            )
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
