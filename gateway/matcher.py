"""Find the rule that answers a canonical URL: the precedence of spec §4, written once.

Exact rules are found by one dict lookup on (scope, canonical path). Pattern
rules live in a trie of path segments per scope: literal segments are dict
lookups, and segments with placeholders are indexed by their literal head, so a
match visits only the rules that could fire, whatever the map's size. Among
the candidates the earliest in the file wins. Pure: no Flask.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gateway import fastpaths
from gateway.canonical import LegacyURL
from gateway.rules import Rule, SegmentPattern


@dataclass(frozen=True, slots=True)
class Match:
    """The rule that answers, the values it captured and the parameters its conditions used."""

    rule: Rule
    captures: dict[str, str]
    consumed: frozenset[str]


class RuleMatcher(Protocol):
    """What ``decide`` and the reports ask of a map's rules: the in-memory ``Matcher``
    or the compiled table's (``gateway.table.TableMatcher``)."""

    case_sensitive: bool

    def match(self, url: LegacyURL, host: str) -> Match | None:
        """Return the rule that answers this URL on this (canonical) host, or None."""

    def exact_rules(self) -> Iterable[Rule]:
        """Yield every exact rule (for exports and reports)."""


@dataclass(slots=True)
class _Node:
    """A trie node: literal children, pattern children by literal head, and rules ending here."""

    literal: dict[str, _Node] = field(default_factory=dict)
    # By (length of head, length of tail), then (head, tail): the literal text before the
    # first placeholder and after the last. Several hundred rules like doc<int:id>_vN.pdf
    # share a head; their tails tell them apart without running every regex.
    patterns: dict[tuple[int, int], dict[tuple[str, str], list[tuple[SegmentPattern, _Node]]]] = (
        field(default_factory=dict)
    )
    tails: dict[int, dict[str, list[tuple[SegmentPattern, Rule]]]] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)


def conditions_hold(
    rule: Rule, values: dict[str, str], case_sensitive: bool, captures: dict[str, str]
) -> bool:
    """Check a rule's query conditions on the request's last values, adding their captures."""
    for condition in rule.conditions:
        value = values.get(condition.key)
        if value is None:
            return False
        if condition.literal is not None:
            if (value if case_sensitive else value.lower()) != condition.literal:
                return False
        elif not value or (
            condition.converter == "int" and not (value.isascii() and value.isdigit())
        ):
            return False
        else:
            captures[condition.capture or ""] = value
    return True


# One rule as itself, several as a tuple: most paths and literal values have one rule,
# and a 1-tuple for each of 100,000 of them costs 5 MB of a worker's memory.
Rules = Rule | tuple[Rule, ...]


def _pack(rules: list[Rule]) -> Rules:
    return rules[0] if len(rules) == 1 else tuple(rules)


def _unpack(rules: Rules) -> tuple[Rule, ...]:
    return (rules,) if isinstance(rules, Rule) else rules


def _rank(rule: Rule) -> tuple[int, int]:
    """Order exact candidates: the most conditions first, then the earliest in the map."""
    return (-len(rule.conditions), rule.order)


# Buckets up to this size are scanned; bigger ones are indexed by a literal condition.
INDEX_FROM = 8


@dataclass(frozen=True, slots=True)
class _LiteralIndex:
    """The rules of one exact path, by their first literal condition (name, folded value)."""

    by_value: dict[str, dict[str, Rules]]  # folded name -> folded value -> rules
    unindexed: tuple[Rule, ...]  # rules with no literal condition: always candidates

    @staticmethod
    def build(candidates: Sequence[Rule]) -> _LiteralIndex:
        by_value: dict[str, dict[str, list[Rule]]] = {}
        unindexed: list[Rule] = []
        for rule in candidates:  # already in rank order, so each list is too
            literal = next((c for c in rule.conditions if c.literal is not None), None)
            if literal is None:
                unindexed.append(rule)
            else:
                values = by_value.setdefault(literal.key, {})
                values.setdefault(literal.literal or "", []).append(rule)
        return _LiteralIndex(
            {name: {v: _pack(r) for v, r in values.items()} for name, values in by_value.items()},
            tuple(unindexed),
        )

    def candidates(self, values: dict[str, str], case_sensitive: bool) -> Sequence[Rule]:
        """Return, in rank order, every rule whose conditions could hold for these values."""
        # A rule holds only if the request's value for its indexed condition equals the
        # literal, so the rules under the request's own (name, value) pairs are all that can.
        found: Sequence[Rule] = self.unindexed
        for name, value in values.items():
            by_value = self.by_value.get(name)
            packed = by_value.get(value if case_sensitive else value.lower()) if by_value else None
            hits = _unpack(packed) if packed is not None else None
            if hits:
                found = hits if not found else sorted([*found, *hits], key=_rank)
        return found


def _index_tail(step: SegmentPattern) -> str:
    """Return the literal after a step's last placeholder as the index compares it, or ""."""
    tail = step.literals[-1] if len(step.literals) > 1 else ""
    if not tail.isascii():
        return ""  # indexed under "" (every tail): only ASCII folds the same in both places
    return tail.lower() if step.regex.flags & re.IGNORECASE else tail


class Matcher:
    """The compiled rules of one map and the one precedence that chooses among them."""

    def __init__(
        self, rules: Sequence[Rule], *, case_sensitive: bool, index_from: int = INDEX_FROM
    ) -> None:
        self.case_sensitive = case_sensitive
        buckets: dict[str | None, dict[str, list[Rule]]] = {}
        self._tries: dict[str | None, _Node] = {}
        for rule in rules:
            if rule.is_exact:
                buckets.setdefault(rule.host, {}).setdefault(rule.path, []).append(rule)
            else:
                self._insert(self._tries.setdefault(rule.host, _Node()), rule)
        # Within a scope the rule with the most conditions wins; at equal counts, the earlier.
        # A path shared by many rules told apart by a literal condition (`detail.php?ID=N`
        # for 30,000 news items) is indexed by that condition, so its cost stays flat.
        # Scope, then path, to tuples: no key tuple and no spare list slots for each of
        # 100,000 exact rules.
        self._exact: dict[str | None, dict[str, Rules]] = {}
        self._by_literal: dict[tuple[str | None, str], _LiteralIndex] = {}
        for scope, by_path in buckets.items():
            exact = self._exact[scope] = {}
            for path, candidates in by_path.items():
                if len(candidates) > 1:
                    candidates.sort(key=_rank)
                exact[path] = _pack(candidates)
                if fastpaths.ENABLED and len(candidates) > index_from:
                    self._by_literal[(scope, path)] = _LiteralIndex.build(candidates)

    @staticmethod
    def _insert(node: _Node, rule: Rule) -> None:
        for step in rule.steps or ():
            if isinstance(step, str):
                node = node.literal.setdefault(step, _Node())
            elif step.is_tail:
                by_head = node.tails.setdefault(len(step.head), {})
                by_head.setdefault(step.head, []).append((step, rule))
                return
            else:
                tail = _index_tail(step)
                by_ends = node.patterns.setdefault((len(step.head), len(tail)), {})
                bucket = by_ends.setdefault((step.head, tail), [])
                for existing, child in bucket:
                    if existing == step:  # the same text and capture names: one child
                        node = child
                        break
                else:
                    child = _Node()
                    bucket.append((step, child))
                    node = child
        node.rules.append(rule)

    def match(self, url: LegacyURL, host: str) -> Match | None:
        """Return the rule that answers this URL on this (canonical) host, or None."""
        # A repeated name counts by its last value (§2), for conditions and captures.
        values = url.last_values() if url.params else {}
        for scope in (host, None):
            index = self._by_literal.get((scope, url.path)) if self._by_literal else None
            candidates: Sequence[Rule]
            if index is None:
                by_path = self._exact.get(scope)
                packed = by_path.get(url.path) if by_path else None
                candidates = _unpack(packed) if packed is not None else ()
            else:
                candidates = index.candidates(values, self.case_sensitive)
            for rule in candidates:
                captures: dict[str, str] = {}
                if conditions_hold(rule, values, self.case_sensitive, captures):
                    return self._found(rule, captures)
        if not self._tries:
            return None
        keys = url.path.split("/")[1:] if url.path != "/" else []
        texts = url.path_text.split("/")[1:] if url.path != "/" else []
        if len(keys) != len(texts):  # lower-casing changed the segmentation: compare as written
            keys = texts
        for scope in (host, None):
            trie = self._tries.get(scope)
            if trie is None:
                continue
            best: tuple[Rule, dict[str, str]] | None = None
            for rule, captures in self._walk(trie, keys, texts, 0, {}):
                if best is not None and rule.order >= best[0].order:
                    continue
                if conditions_hold(rule, values, self.case_sensitive, captures):
                    best = (rule, captures)
            if best is not None:
                return self._found(*best)
        return None

    @staticmethod
    def _found(rule: Rule, captures: dict[str, str]) -> Match:
        consumed = frozenset(c.key for c in rule.conditions)
        return Match(rule, captures, consumed)

    def _walk(
        self,
        node: _Node,
        keys: list[str],
        texts: list[str],
        i: int,
        captures: dict[str, str],
    ) -> Iterable[tuple[Rule, dict[str, str]]]:
        """Yield every pattern rule below ``node`` that the segments from ``i`` on satisfy."""
        if i == len(keys):
            for rule in node.rules:
                yield rule, dict(captures)
            return
        key, text = keys[i], texts[i]
        if node.tails:
            rest = "/".join(texts[i:])
            for length, by_head in node.tails.items():
                for step, rule in by_head.get(key[:length], ()):
                    found = step.match(rest)
                    if found is not None:
                        yield (
                            rule,
                            {**captures, **dict(zip(step.names, found, strict=True))},
                        )
        child = node.literal.get(key)
        if child is not None:
            yield from self._walk(child, keys, texts, i + 1, captures)
        for (head_length, tail_length), by_ends in node.patterns.items():
            head = key[:head_length]
            if not tail_length:
                bucket = by_ends.get((head, ""), ())
            elif text.isascii():
                end = text[len(text) - tail_length :]
                bucket = by_ends.get((head, end if self.case_sensitive else end.lower()), ())
            else:  # lower() and the regex's case rule may differ beyond ASCII: every tail
                bucket = [
                    entry for (h, _), steps in by_ends.items() if h == head for entry in steps
                ]
            for step, grandchild in bucket:
                found = step.match(text)
                if found is not None:
                    inner = {**captures, **dict(zip(step.names, found, strict=True))}
                    yield from self._walk(grandchild, keys, texts, i + 1, inner)

    def exact_rules(self) -> Iterable[Rule]:
        """Yield every exact rule (for exports and reports)."""
        for by_path in self._exact.values():
            for candidates in by_path.values():
                yield from _unpack(candidates)
