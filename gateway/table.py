"""The compiled map (issue 14): each map version compiled once, mapped by every worker.

``build_table`` writes a validated map into one LMDB file; ``open_table`` gives back a
``RedirectMap`` from that file alone, without reading or validating the map's files:
its sections and pattern rules from the table's meta, its exact rules looked up by
canonical key and built on demand (``TableMatcher``, a ``matcher.RuleMatcher``, which
answers exactly as the in-memory ``Matcher``: ``tests/test_table.py`` compares them).
When each version is compiled, and by which process, is ``gateway.maps.compiled``'s job.

The store is LMDB (pip ``lmdb``), chosen by ``bench/table.py`` on 980,000 exact
rules of a ``bench/genmap.py`` map, against SQLite (WITHOUT ROWID, immutable,
mmap) and marisa-trie (BytesTrie, mmap)::

    store     build s  B/rule  open ms   µs 1k  µs full  ratio  anon MB  file MB
    sqlite        2.1     167      0.2    1.53     2.07   1.35      0.0    158.5
    lmdb          0.9     174      0.6    0.20     0.40   2.05      0.0     43.9
    marisa        3.2      87      0.2    0.66     1.11   1.68      0.0     88.9

LMDB builds fastest, looks up 5x faster than SQLite at 1M rules (its 1k to 1M
ratio is over 1.5 only in sub-microsecond terms: +0.2 µs of a ~30 µs decision),
fits the 200-byte budget, opens in under a millisecond and keeps nothing
private per worker: its pages are the file's, shared by the OS. marisa-trie is
half the size but slower to build and to look up; SQLite needs no dependency
but costs 2 µs a lookup and touches more pages.

What is stored. One LMDB file (``subdir=False``), keys as bytes:

- ``SCOPE NUL PATH`` (scope: the rule's canonical host, or "" for every host;
  path: the canonical folded path, ``Rule.path``) -> a JSON list: first the
  names (folded, ``Condition.key``) under which rules of this path are indexed
  by a literal condition, then the records of the path's rules that have no
  literal condition (no condition, or only captures such as ``ID=<int:id>``);
- ``SCOPE NUL PATH NUL NAME NUL VALUE`` -> a JSON list of the records of the
  rules whose first literal condition is NAME=VALUE (the value folded under the
  map's case rule, ``Condition.literal``): ``detail.php?ID=N`` for 300,000 N is
  one lookup, whatever N;
- a key longer than 400 bytes (LMDB's limit is 511) is stored as ``\\x01`` and
  its BLAKE2b-256 digest;
- ``\\x02`` and a capture key -> a capture of the map's web archives (spec §8), as
  ``gateway.archive.table`` writes and reads them;
- ``\\x00!meta`` -> the table's format, the map's version, the files rules came
  from, the map's sections (site, hosts, archive, the files a reload watches), the
  records of its pattern rules, and the number of rules of each kind.

A rule's record is what rebuilds it through the loader's own compiler
(``mapfile.compile_rule``): [order, number of conditions, file index, line,
from, status, to, see, keep_query, note, examples]. So a Rule built on demand
is the Rule the loader built (its ``order`` restored), with the same source
FILE:LINE; the match compares conditions exactly as ``Matcher`` does, in the
same rank (most conditions first, then map order). Recently built rules are
kept (a bounded cache per worker). Pattern rules stay in memory, in an
in-memory ``Matcher`` of their own: they are few (1,000 in the benchmark) and
their trie is what makes them flat. Exact rules with capture conditions are in
the table with the others of their path, since rank mixes them.

Atomic. ``build_table`` writes under a temporary name in the same directory, fsyncs
it, renames it into place and fsyncs the directory: a compile killed half-way leaves
only a temporary file, never a table under the served name; a build that fails leaves
the table being served in place. A table is never written again once renamed, so
workers open it read-only without a lock file.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lmdb

from gateway import fastpaths
from gateway.archive.index import EMPTY, ArchiveIndex
from gateway.archive.table import PREFIX as _CAPTURE
from gateway.archive.table import TableCaptures, bounded_key, capture_rows
from gateway.canonical import LegacyURL
from gateway.mapfile import Archive, RedirectMap, Site, compile_rule
from gateway.mapfile.schema import RuleContext
from gateway.mapfile.tables import compile_common_row
from gateway.matcher import Match, Matcher, conditions_hold
from gateway.rules import Rule

FORMAT = 2
_META = b"\x00!meta"
# A sparse upper bound: LMDB grows the file to what is written; the copy is compacted.
_MAP_SIZE = 1 << 36
# Rules built from the table, kept per worker: about 1 KB each, so 16 MB at most. A
# working set of 16,384 paths answers without rebuilding a rule (5.9 µs when it must).
CACHE = 16384
_RECORD_FIELDS = 11


class TableError(Exception):
    """The table cannot be built or opened (the caller keeps serving what it has)."""


def table_path(state_dir: str | os.PathLike[str], version: str) -> Path:
    """Return where the table of one map version lives."""
    return Path(state_dir) / f"rules-{version}.lmdb"


def _key(scope: str | None, path: str, name: str | None = None, value: str | None = None) -> bytes:
    parts = [scope or "", path] if name is None else [scope or "", path, name, value or ""]
    return bounded_key("\0".join(parts).encode("utf-8", "surrogatepass"))


def _record(rule: Rule, file_index: dict[str, int]) -> list[Any]:
    file, _, line = rule.source.rpartition(":")
    number = file_index.get(file)
    if number is None:
        number = file_index[file] = len(file_index)
    record: list[Any] = [rule.order, len(rule.conditions), number, int(line), rule.from_text]
    record.append(rule.status)
    if rule.see is None and not rule.keep_query and not rule.note and not rule.examples:
        if rule.to_text is not None:  # the common row: defaults are left off (bytes per rule)
            record.append(rule.to_text)
        return record
    record += [rule.to_text, rule.see, rule.keep_query, rule.note, list(rule.examples)]
    while record[-1] in (None, False, "", []):
        record.pop()
    return record


def _entries(redirect_map: RedirectMap, file_index: dict[str, int]) -> dict[bytes, list[Any]]:
    """Return every key of the table and its JSON value (file_index gains the rules' files)."""
    entries: dict[bytes, list[Any]] = {}
    names: dict[bytes, list[str]] = {}
    for rule in redirect_map.matcher.exact_rules():
        base = _key(rule.host, rule.path)
        literal = None
        for condition in rule.conditions:
            if condition.literal is not None:
                literal = condition
                break
        entry = entries.setdefault(base, [])
        if literal is None:
            entry.append(_record(rule, file_index))
        else:
            indexed = names.setdefault(base, [])
            if literal.key not in indexed:
                indexed.append(literal.key)
            key = _key(rule.host, rule.path, literal.key, literal.literal)
            entries.setdefault(key, []).append(_record(rule, file_index))
    for base in entries:
        if base in names:
            entries[base] = [names[base], *entries[base]]
    return entries


def _sections(redirect_map: RedirectMap) -> dict[str, Any]:
    """Return what a worker needs of the map besides its rules, as JSON values."""
    site = redirect_map.site
    return {
        "path": redirect_map.path,
        "site": {f.name: getattr(site, f.name) for f in dataclasses.fields(Site) if f.init},
        "hosts": redirect_map.hosts,
        "archive": dataclasses.asdict(redirect_map.archive),
        "files": redirect_map.files,
        "include_patterns": redirect_map.include_patterns,
        "archive_files": redirect_map.archive_files,
        "archive_patterns": redirect_map.archive_patterns,
        "archive_names": redirect_map.archive_names,
        "files_version": redirect_map.files_version,
    }


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def build_table(redirect_map: RedirectMap, path: str | os.PathLike[str]) -> Path:
    """Write the table of a validated map to ``path`` atomically (temp name, fsync, rename)."""
    # The cyclic collector off, as load_map does: a million rules make millions of lists
    # and no cycle, and the collections their allocation triggers cost 60 % of the build.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _build_table(redirect_map, Path(path))
    finally:
        if enabled:
            gc.enable()


def _build_table(redirect_map: RedirectMap, target: Path) -> Path:
    """Do the work of build_table."""
    file_index: dict[str, int] = {}
    entries = _entries(redirect_map, file_index)
    patterns = [_record(r, file_index) for r in redirect_map.rules if not r.is_exact]
    meta = {
        "format": FORMAT,
        "version": redirect_map.version,
        "files": sorted(file_index, key=file_index.__getitem__),
        "map": _sections(redirect_map),
        "patterns": patterns,
        "count": len(redirect_map.rules),
        "by_kind": redirect_map.rules_by_kind,
    }
    rows = [(k, _dumps(v)) for k, v in entries.items()]
    if redirect_map.captures.captures:
        captured, meta["captures"] = capture_rows(redirect_map.captures)
        rows += [(k, _dumps(v)) for k, v in captured]
    rows.append((_META, _dumps(meta)))
    rows.sort()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, raw_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".raw", dir=target.parent)
    os.close(fd)
    raw = Path(raw_name)
    compact = raw.with_suffix(".tmp")
    try:
        env = lmdb.open(str(raw), map_size=_MAP_SIZE, subdir=False, lock=False, sync=False)
        try:
            with env.begin(write=True) as txn:
                txn.cursor().putmulti(rows, append=True)
            env.copy(str(compact), compact=True)
        finally:
            env.close()
        with open(compact, "rb") as written:
            os.fsync(written.fileno())
        os.replace(compact, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except (lmdb.Error, OSError) as exc:
        raise TableError(f"cannot build the rule table {target}: {exc}") from exc
    finally:
        for leftover in (raw, compact, Path(str(raw) + "-lock")):
            leftover.unlink(missing_ok=True)
    return target


# One encoder: json.dumps with any option builds a new one per call (a third of a
# million-rule build's JSON time).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(value: object) -> bytes:
    return _ENCODE(value).encode("utf-8", "surrogatepass")


def ensure_table(redirect_map: RedirectMap, state_dir: str | os.PathLike[str]) -> Path:
    """Return the table of this map version, building it only if no valid one is there."""
    path = table_path(state_dir, redirect_map.version)
    if path.exists():
        try:
            open_table(path, version=redirect_map.version)
            return path
        except TableError:
            pass  # not this version's, or unreadable: built again, then renamed over it
    return build_table(redirect_map, path)


def open_table(
    path: str | os.PathLike[str],
    *,
    version: str | None = None,
    rename: Callable[[str], str] | None = None,
) -> RedirectMap:
    """Open a table read-only as the map it was built from (of `version`, when given).

    `rename` maps each of the map's files to another place (a last-known-good copy of
    them): the map and its rules then name those.
    """
    try:
        env = _environment(path)
        with env.begin() as txn:
            raw = txn.get(_META)
        meta = json.loads(raw) if raw is not None else {}
    except (lmdb.Error, OSError, ValueError) as exc:
        raise TableError(f"cannot open the rule table {path}: {exc}") from exc
    if meta.get("format") != FORMAT or (version is not None and meta.get("version") != version):
        raise TableError(f"the rule table {path} is not the one of map version {version}")
    try:
        return _redirect_map(env, meta, rename or str)
    except (KeyError, TypeError, ValueError) as exc:
        raise TableError(f"the rule table {path} is damaged: {exc!r}") from exc


# LMDB refuses to open one file twice in a process, and a worker opens the table of
# its version again on a restart of its holder, or as the last-known-good copy: one
# environment per file, for as long as a map holds it (then closed as it is collected).
# Keyed by inode, size and mtime: a table is never written once renamed into place, and
# a new file that reuses a removed table's inode is not taken for it.
_OPEN: weakref.WeakValueDictionary[tuple[int, ...], Any] = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()


def _environment(path: str | os.PathLike[str]) -> Any:
    """Return the open read-only environment of a table file, opening it if need be."""
    with _OPEN_LOCK:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        env = _OPEN.get(key)
        if env is None:
            env = lmdb.open(
                str(path), subdir=False, readonly=True, lock=False, readahead=False, max_readers=512
            )
            _OPEN[key] = env
        return env


def _redirect_map(env: Any, meta: dict[str, Any], rename: Callable[[str], str]) -> RedirectMap:
    sections = meta["map"]
    site = Site(**{k: _tuples(v) for k, v in sections["site"].items()})
    archive = Archive(**{k: _tuples(v) for k, v in sections["archive"].items()})
    hosts = dict(sections["hosts"])
    rule_files = tuple(rename(f) for f in meta["files"])
    matcher = TableMatcher(env, site, hosts, rule_files, meta["patterns"])
    return RedirectMap(
        path=rename(sections["path"]),
        site=site,
        hosts=hosts,
        archive=archive,
        rules=TableRules(matcher, meta["count"], meta["by_kind"]),
        files=tuple(rename(f) for f in sections["files"]),
        version=meta["version"],
        loaded_at=datetime.now(UTC),
        matcher=matcher,
        include_patterns=tuple(sections["include_patterns"]),
        archive_files=tuple(sections["archive_files"]),
        archive_patterns=tuple(sections["archive_patterns"]),
        archive_names=tuple(sections["archive_names"]),
        files_version=sections["files_version"],
        captures=ArchiveIndex(TableCaptures(env, meta["captures"]))
        if "captures" in meta
        else EMPTY,
    )


def _rank(rule: Rule) -> tuple[int, int]:
    return (-len(rule.conditions), rule.order)


class TableMatcher:
    """``Matcher.match`` over the table: exact rules built on demand, patterns in memory."""

    def __init__(
        self,
        env: Any,
        site: Site,
        hosts: dict[str, str],
        files: Sequence[str],
        patterns: Iterable[list[Any]],
    ) -> None:
        self._env = env
        self._site = site
        self._hosts = hosts
        self._files = files
        self.case_sensitive = site.case_sensitive
        self._context = RuleContext(site, hosts)
        self.patterns = tuple(self._rule(record) for record in patterns)
        self._patterns = Matcher(self.patterns, case_sensitive=self.case_sensitive)
        self._rules = functools.lru_cache(maxsize=CACHE)(self._build)

    def _build(self, raw: bytes) -> tuple[tuple[str, ...], tuple[Rule, ...]]:
        """Return the names a path is indexed by and the rules of one value, from its bytes."""
        items = json.loads(raw)
        names: tuple[str, ...] = ()
        if items and isinstance(items[0], list) and items[0] and isinstance(items[0][0], str):
            names = tuple(items.pop(0))
        return names, tuple(self._rule(record) for record in items)

    def _rule(self, record: list[Any]) -> Rule:
        record = record + [None] * (_RECORD_FIELDS - len(record))
        order, _, file_index, line, from_text, status, to_text, see, keep, note, examples = record
        if fastpaths.ENABLED and see is None and not keep and not examples:
            # A common table row, as the loader builds it from CSV (tests/test_fast_paths.py
            # checks that it is add_rule's rule); None, or text it would strip: the general way.
            row = [from_text, to_text or "", str(status), note or ""]
            if all(cell == cell.strip() for cell in row):
                fast = compile_common_row(self._context, self._files[file_index], line, row, order)
                if fast is not None:
                    return fast
        fields: dict[str, Any] = {"from": from_text, "status": status}
        if to_text is not None:
            fields["to"] = to_text
        if see is not None:
            fields["see"] = see
        if keep:
            fields["keep_query"] = True
        if note:
            fields["note"] = note
        if examples:
            fields["examples"] = examples
        rule, problems = compile_rule(
            self._site, self._hosts, self._files[file_index], line, fields
        )
        if rule is None:  # the map validated when the table was built: a corrupt table
            raise TableError(
                f"rule at {self._files[file_index]}:{line} no longer compiles: {problems}"
            )
        return dataclasses.replace(rule, order=order)

    def _candidates(
        self, txn: Any, scope: str | None, url: LegacyURL, values: dict[str, str]
    ) -> Sequence[Rule]:
        raw = txn.get(_key(scope, url.path))
        if raw is None:
            return ()
        names, found = self._rules(raw)
        extra: list[Rule] = []
        for name in names:
            value = values.get(name)
            if value is None:
                continue
            folded = value if self.case_sensitive else value.lower()
            hit = txn.get(_key(scope, url.path, name, folded))
            if hit is not None:
                extra.extend(self._rules(hit)[1])
        if not extra:
            return found
        return sorted([*found, *extra], key=_rank)

    def match(self, url: LegacyURL, host: str) -> Match | None:
        """Return the rule that answers this URL on this (canonical) host, or None."""
        values = url.last_values() if url.params else {}
        with self._env.begin(buffers=False) as txn:
            for scope in (host, None):
                for rule in self._candidates(txn, scope, url, values):
                    captures: dict[str, str] = {}
                    if conditions_hold(rule, values, self.case_sensitive, captures):
                        return Match(rule, captures, frozenset(c.key for c in rule.conditions))
        return self._patterns.match(url, host)

    def exact_rules(self) -> Iterable[Rule]:
        """Yield every exact rule in the table, in key order (for exports and reports)."""
        with self._env.begin(buffers=False) as txn:
            for key, raw in txn.cursor():
                if key != _META and not key.startswith(_CAPTURE):
                    # Through the cache, though a walk of a million rules replaces what it
                    # holds: a walk asks decide() of each rule next (the sitemap), which
                    # then finds it built (38 -> 28 s of CPU for a host of a 1M map).
                    yield from self._rules(raw)[1]


class TableRules(Collection[Rule]):
    """A compiled map's rules: counted in the table, built from it as they are iterated."""

    def __init__(self, matcher: TableMatcher, count: int, by_kind: Mapping[str, int]) -> None:
        self._matcher = matcher
        self._count = count
        self.by_kind = dict(by_kind)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Rule]:
        yield from self._matcher.exact_rules()
        yield from self._matcher.patterns

    def __contains__(self, item: object) -> bool:
        return any(rule == item for rule in self)
