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
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.archive.cdxj import default_index_dir
from gateway.archive.index import build_index
from gateway.archive.reader import ArchiveError
from gateway.archive.values import KeySettings
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


def load_map(
    path: str | os.PathLike[str],
    *,
    archive_base: str | None = None,
    index_dir: str | None = None,
    archive_optional: bool = False,
) -> RedirectMap:
    """Load and validate a map and its includes; raise MapError listing every problem.

    The web archives of ``archive.warc`` (spec §8) are found relative to `archive_base`
    (default: the map's folder; a last-known-good copy passes the original's), indexed
    with the cache in `index_dir` (default: ``archive-index`` in the state directory).
    With `archive_optional` an archive file that does not read is left out and named in
    ``archive_problems`` instead of failing the load (a last-known-good copy serves on).
    """
    # The cyclic collector off while loading: a 100k-rule map makes about a million
    # objects and no cycles, and the collections their allocation triggers cost a third
    # of the load time (measured, issue 5). Garbage is still freed by reference counts.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _load_map(path, archive_base, index_dir, archive_optional)
    finally:
        if enabled:
            gc.enable()


def _load_map(
    path: str | os.PathLike[str],
    archive_base: str | None,
    index_dir: str | None,
    archive_optional: bool,
) -> RedirectMap:
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
        raise MapError(problems, files, include_patterns)
    rules = tuple(ctx.rules)
    files_version = digest.hexdigest()[:16]
    warc_base = Path(archive_base) if archive_base is not None else base
    warc_shown = shown_base if archive_base is None else archive_base
    warc_files, warc_patterns = _archive_files(archive.warc, warc_base, warc_shown)
    for warc_file, _ in warc_files:
        # By path, size and mtime: hashing gigabytes at each reload would be slow (§8).
        try:
            st = os.stat(warc_file)
            state = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            state = "missing"
        relative = os.path.relpath(warc_file, warc_base)
        digest.update(b"\0warc\0" + relative.encode() + b"\0" + state.encode())
    redirect_map = RedirectMap(
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
        archive_files=tuple(f for f, _ in warc_files),
        archive_names=tuple(name for _, name in warc_files),
        archive_patterns=warc_patterns,
        files_version=files_version,
    )
    return with_captures(
        redirect_map, tuple(warc_files), index_dir, archive_optional=archive_optional
    )


def with_captures(
    redirect_map: RedirectMap,
    warc_files: tuple[tuple[str, str], ...],
    index_dir: str | None,
    *,
    archive_optional: bool = False,
) -> RedirectMap:
    """Return the map with the captures of its web archives (path, shown name) attached.

    Each archive's index comes from the cache in `index_dir` when the file is unchanged.
    Without `archive_optional` an archive that does not read fails the map (MapError).
    """
    if not warc_files:
        return redirect_map
    site = redirect_map.site
    captures, errors = build_index(
        list(warc_files),
        KeySettings(
            redirect_map.host_of,
            site.case_sensitive,
            site.is_ignored,
            _settings_fingerprint(redirect_map),
        ),
        index_dir if index_dir is not None else default_index_dir(),
    )
    archive_problems = tuple(
        Problem(e.file, -1 if e.offset is None else e.offset, _archive_message(e)) for e in errors
    )
    if archive_problems and not archive_optional:
        raise MapError(list(archive_problems), redirect_map.files, redirect_map.include_patterns)
    return replace(redirect_map, captures=captures, archive_problems=archive_problems)


def _archive_message(error: ArchiveError) -> str:
    if error.offset is None:
        return error.message
    return f"the record at byte {error.offset}: {error.message}"


def _archive_files(
    patterns: tuple[str, ...], base: Path, shown_base: str
) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """Return the archive files (path, shown name) the patterns name, and the globs joined.

    A path that is no glob is listed even when missing (a load error, §8); a glob that
    matches nothing is not an error. Each file once, in the order the patterns list them.
    """
    found: dict[str, str] = {}
    globs = []
    for pattern in patterns:
        joined = str(base / pattern)
        if glob.has_magic(pattern):
            globs.append(joined)
            matches = sorted(glob.glob(joined))
        else:
            matches = [joined]
        for match in matches:
            relative = os.path.relpath(match, base)
            found.setdefault(match, os.path.normpath(os.path.join(shown_base, relative)))
    return list(found.items()), tuple(globs)


def _settings_fingerprint(redirect_map: RedirectMap) -> str:
    """Return a hash of what shapes a capture's key: hosts, case rule, ignored names."""
    site = redirect_map.site
    text = json.dumps(
        [sorted(redirect_map.hosts.items()), site.case_sensitive, list(site.ignore_query)]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
