"""The compiled exact-rule table (issue 14): each map version compiled once, mapped by every worker.

Not yet switched on: the server still builds the in-memory ``Matcher`` in every
worker. This module is the table, its atomic build and a matcher over it that
answers exactly as ``Matcher`` does (``tests/test_table.py`` compares them).

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
- ``\\x00!meta`` -> the table's format, the map's version, its files.

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

Where and when. The table of a map version is ``STATE_DIR/rules-VERSION.lmdb``
(``table_path``): built once by the process that loaded and validated the map
(``load_map`` first: every problem is still reported as FILE:LINE with the same
messages, and a map with problems is never compiled). ``ensure_table`` builds
into a temporary name in the same directory, fsyncs it, renames it into place
and fsyncs the directory: a compile killed half-way leaves only a temporary
file, never a table under the served name; a build that fails leaves the table
being served in place. A worker started later, or a restart with an unchanged
map, finds the file of that version and opens it (``open_table``, read-only, no
lock file) without compiling; a table whose meta does not name the version is
rebuilt.

Not yet done (see the report on issue 14): a worker holding the map without
its exact Rule objects (``RedirectMap.rules`` and the loader build them all,
which is the cost this table exists to remove), the build off the request path
on reload, and the switch in the server.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lmdb

from gateway.canonical import LegacyURL
from gateway.mapfile import RedirectMap, compile_rule
from gateway.matcher import Match, Matcher, conditions_hold
from gateway.rules import Rule

FORMAT = 1
_META = b"\x00!meta"
_MAX_KEY = 400
# A sparse upper bound: LMDB grows the file to what is written; the copy is compacted.
_MAP_SIZE = 1 << 36
CACHE = 4096


class TableError(Exception):
    """The table cannot be built or opened (the caller keeps serving what it has)."""


def table_path(state_dir: str | os.PathLike[str], version: str) -> Path:
    """Return where the table of one map version lives."""
    return Path(state_dir) / f"rules-{version}.lmdb"


def _key(scope: str | None, path: str, name: str | None = None, value: str | None = None) -> bytes:
    parts = [scope or "", path] if name is None else [scope or "", path, name, value or ""]
    key = "\0".join(parts).encode("utf-8", "surrogatepass")
    if len(key) > _MAX_KEY:
        return b"\x01" + hashlib.blake2b(key, digest_size=32).digest()
    return key


def _record(rule: Rule, file_index: dict[str, int]) -> list[Any]:
    record: list[Any] = [
        rule.order,
        len(rule.conditions),
        file_index.setdefault(rule.file, len(file_index)),
        rule.line,
        rule.from_text,
        rule.status,
        rule.to_text,
        rule.see,
        rule.keep_query,
        rule.note,
        list(rule.examples),
    ]
    while record[-1] in (None, False, "", []):  # defaults are left off: bytes per rule
        record.pop()
    return record


def _entries(redirect_map: RedirectMap) -> tuple[dict[bytes, list[Any]], list[str]]:
    """Return every key of the table and its JSON value, and the files rules came from."""
    file_index: dict[str, int] = {}
    entries: dict[bytes, list[Any]] = {}
    names: dict[bytes, list[str]] = {}
    for rule in redirect_map.matcher.exact_rules():
        base = _key(rule.host, rule.path)
        literal = next((c for c in rule.conditions if c.literal is not None), None)
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
    files = sorted(file_index, key=file_index.__getitem__)
    return entries, files


def build_table(redirect_map: RedirectMap, path: str | os.PathLike[str]) -> Path:
    """Write the table of a validated map to ``path`` atomically (temp name, fsync, rename)."""
    target = Path(path)
    entries, files = _entries(redirect_map)
    meta = {"format": FORMAT, "version": redirect_map.version, "files": files}
    rows = [(k, _dumps(v)) for k, v in entries.items()]
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


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def ensure_table(redirect_map: RedirectMap, state_dir: str | os.PathLike[str]) -> Path:
    """Return the table of this map version, building it only if no valid one is there."""
    path = table_path(state_dir, redirect_map.version)
    if path.exists():
        try:
            open_table(path, redirect_map).close()
            return path
        except TableError:
            pass  # not this version's, or unreadable: built again, then renamed over it
    return build_table(redirect_map, path)


def open_table(path: str | os.PathLike[str], redirect_map: RedirectMap) -> TableMatcher:
    """Open a table read-only for the map it was built from (its version is checked)."""
    try:
        env = lmdb.open(
            str(path), subdir=False, readonly=True, lock=False, readahead=False, max_readers=512
        )
    except lmdb.Error as exc:
        raise TableError(f"cannot open the rule table {path}: {exc}") from exc
    with env.begin() as txn:
        raw = txn.get(_META)
    meta = json.loads(raw) if raw is not None else {}
    if meta.get("format") != FORMAT or meta.get("version") != redirect_map.version:
        env.close()
        raise TableError(
            f"the rule table {path} is not the one of map version {redirect_map.version}"
        )
    return TableMatcher(env, redirect_map, tuple(meta["files"]))


def _rank(rule: Rule) -> tuple[int, int]:
    return (-len(rule.conditions), rule.order)


class TableMatcher:
    """``Matcher.match`` over the table: exact rules built on demand, patterns in memory."""

    def __init__(self, env: Any, redirect_map: RedirectMap, files: Sequence[str]) -> None:
        self._env = env
        self._site = redirect_map.site
        self._hosts = redirect_map.hosts
        self._files = files
        self.case_sensitive = redirect_map.site.case_sensitive
        patterns = [r for r in redirect_map.rules if not r.is_exact]
        self._patterns = Matcher(patterns, case_sensitive=self.case_sensitive)
        self._rules = functools.lru_cache(maxsize=CACHE)(self._build)

    def close(self) -> None:
        """Release the map of the file."""
        self._env.close()

    def _build(self, raw: bytes) -> tuple[tuple[str, ...], tuple[Rule, ...]]:
        """Return the names a path is indexed by and the rules of one value, from its bytes."""
        items = json.loads(raw)
        names: tuple[str, ...] = ()
        if items and isinstance(items[0], list) and items[0] and isinstance(items[0][0], str):
            names = tuple(items.pop(0))
        return names, tuple(self._rule(record) for record in items)

    def _rule(self, record: list[Any]) -> Rule:
        record = record + [None] * (11 - len(record))
        order, _, file_index, line, from_text, status, to_text, see, keep, note, examples = record
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
        """Yield every exact rule in the table (for exports and reports)."""
        with self._env.begin(buffers=False) as txn:
            for key, raw in txn.cursor():
                if key != _META:
                    yield from self._rules(raw)[1]
