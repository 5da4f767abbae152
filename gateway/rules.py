"""Rules compiled once from the map's text: the ``from`` pattern, its conditions, the target.

Each rule is parsed into small immutable objects at load time, so that the
matcher only compares strings and runs pre-compiled, anchored, placeholder-only
regular expressions (no user regex: no ReDoS). Problems raise ``RuleError`` with
a message; the loader adds the file and line. Pure: no Flask.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from gateway import fastpaths
from gateway.canonical import Malformed, Param, decode, fold, resolve_segments
from gateway.segments import CONVERTERS, PLACEHOLDER, Placeholder, from_segments
from gateway.segments import RuleError as RuleError
from gateway.segments import SegmentPattern as SegmentPattern
from gateway.segments import Step as Step

_TARGET_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TARGET_SAFE = "/:@!$&'()*+,;=-._~%?#"
_VALID_ESCAPES = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class Condition:
    """A query condition from ``from``: a literal value, or a capture with a converter."""

    key: str
    name: str
    literal: str | None  # folded value, for a literal condition
    capture: str | None
    converter: str | None

    def signature(self) -> tuple[str, str, str]:
        """Return what makes two conditions the same (name and value, or name and converter)."""
        if self.literal is not None:
            return (self.key, "=", self.literal)
        return (self.key, "<>", self.converter or "")

    @staticmethod
    def of_literal(name: str, value: str, case_sensitive: bool) -> Condition:
        """Return the condition NAME=VALUE on decoded text, folded under the map's case rule."""
        # Interned: 50,000 rules on detail.php?ID=N share one "ID" and one "id".
        name = sys.intern(name)
        return Condition(sys.intern(name.lower()), name, fold(value, case_sensitive), None, None)


@dataclass(frozen=True, slots=True)
class Target:
    """A ``to`` (or ``see``) template: literal URL text with ``{name}`` inserts."""

    parts: tuple[str | tuple[str, str], ...]  # text, or (capture name, safe characters)
    query_keys: frozenset[str]  # folded names written in the target's query
    has_query: bool
    constant: str | None  # the whole URL when it has no inserts

    def build(self, captures: Mapping[str, str], extra: Sequence[Param] = ()) -> str:
        """Return the URL with each capture percent-encoded for its place, plus extra params.

        ``extra`` is appended as given, minus the names the target writes itself: the
        caller passes each name once (``LegacyURL.last_params``: its last value, §2).
        """
        if self.constant is not None:
            url = self.constant
        else:
            url = "".join(
                p if isinstance(p, str) else quote(captures[p[0]], safe=p[1]) for p in self.parts
            )
        kept = [p for p in extra if p.key not in self.query_keys]
        if not kept:
            return url
        query = "&".join(f"{quote(p.name, safe='')}={quote(p.value, safe='')}" for p in kept)
        base, hash_, fragment = url.partition("#")
        joiner = "&" if self.has_query else "?"
        return f"{base}{joiner}{query}{hash_}{fragment}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule. ``source`` is ``FILE:LINE``; ``order`` is its place in the map."""

    source: str
    order: int
    host: str | None  # canonical host, or None for every host
    from_text: str
    path: str  # canonical folded path (the exact key); for patterns, the pattern as written
    steps: tuple[Step, ...] | None  # None for an exact rule
    conditions: tuple[Condition, ...]
    status: int
    target: Target | None
    see: str | None
    keep_query: bool = False
    note: str = ""
    examples: tuple[str, ...] = ()
    to_text: str | None = None
    captures: dict[str, str | None] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_exact(self) -> bool:
        """Say whether the path has no placeholder (conditions may still capture)."""
        return self.steps is None

    @property
    def kind(self) -> str:
        """Name what the rule matches: exact, query or pattern (a 410 rule too)."""
        if self.steps is not None:
            return "pattern"
        return "query" if self.conditions else "exact"

    @property
    def report_kind(self) -> str:
        """Name the rule's kind for reports and counts: exact, query, pattern, or gone (410)."""
        return "gone" if self.status == 410 else self.kind

    @property
    def identity(self) -> tuple[object, ...]:
        """Return what the rule matches: rules with equal identities answer the same URLs."""
        path: object = self.path
        if self.steps is not None:
            path = tuple(s if isinstance(s, str) else s.identity for s in self.steps)
        signatures = (
            frozenset(c.signature() for c in self.conditions) if self.conditions else _NO_SIGNATURES
        )
        return self.host, path, signatures

    @property
    def file(self) -> str:
        """Return the file the rule was written in (``source`` without its line)."""
        return self.source.rpartition(":")[0]

    @property
    def line(self) -> int:
        """Return the line the rule starts on in its file."""
        return int(self.source.rpartition(":")[2])


@dataclass(frozen=True, slots=True)
class FromParts:
    """The parsed ``from``: scope, canonical path and its steps, conditions, capture names."""

    host: str | None
    path: str
    steps: tuple[Step, ...] | None
    conditions: tuple[Condition, ...]
    captures: dict[str, str | None]  # capture name -> converter


def _split_from(text: str) -> tuple[str | None, str, str]:
    """Split ``from`` into (host as written or None, path, query)."""
    rest = text.strip()
    lowered = rest[:8].lower()
    if lowered.startswith(("http://", "https://")):
        rest = rest[rest.index("//") + 2 :]
        if not rest:
            raise RuleError("a full URL in 'from' needs a host")
    host = None
    if not rest.startswith("/"):
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        host, rest = rest[:cut], rest[cut:] or "/"
        if not host:
            raise RuleError("'from' must start with '/' or a host")
        if not rest.startswith("/"):
            rest = "/" + rest
    path, _, query = rest.partition("?")
    if "#" in path or "#" in query:
        raise RuleError("'from' cannot have a fragment ('#'): browsers never send it")
    return host, path, query


def _decode_rule_text(text: str, where: str) -> str:
    if text.isascii() and "%" not in text and not _CONTROL_CHAR.search(text):
        return text  # what decode() returns for it, without the bytes round trip
    try:
        return decode(text.encode("utf-8"))
    except Malformed as exc:
        raise RuleError(f"{where}: {exc}") from None


def _compile_segment(
    texts: list[str],
    holders: list[Placeholder],
    case_sensitive: bool,
    captures: dict[str, str | None],
    is_last: bool,
) -> Step:
    """Compile one segment (decoded texts around its placeholders) to a literal or a pattern."""
    if not holders:
        return fold(texts[0], case_sensitive)
    regex = ["(?s)" if case_sensitive else "(?si)", re.escape(texts[0])]
    names: list[str] = []
    is_tail = False
    for i, (converter_name, name) in enumerate(holders):
        converter = CONVERTERS.get(converter_name)
        if converter is None:
            raise RuleError(
                f"unknown converter {converter_name!r}: use <name>, <int:name> or <path:name>"
            )
        if converter.spans_segments:
            # The last placeholder of the last segment, with nothing after it.
            if not is_last or i + 1 != len(holders) or texts[-1]:
                raise RuleError("<path:...> may only be the last element of the path")
            is_tail = True
        regex.append(f"({converter.pattern})")
        if name in captures:
            raise RuleError(f"capture <{name}> is used twice")
        captures[name] = converter_name
        names.append(name)
        regex.append(re.escape(texts[i + 1]))
    return SegmentPattern(
        regex=re.compile("".join(regex) + r"\Z"),
        names=tuple(names),
        head=fold(texts[0], case_sensitive),
        is_tail=is_tail,
        literals=tuple(texts),
        converters=tuple(c for c, _ in holders),
    )


def parse_from(
    text: str,
    *,
    case_sensitive: bool,
    is_ignored: Callable[[str], bool],
    canonical_host: Callable[[str], str | None],
) -> FromParts:
    """Parse a rule's ``from`` into its scope, canonical path or steps, and conditions."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("'from' must be a non-empty string")
    host_text, raw_path, raw_query = _split_from(text)
    host = None
    if host_text is not None:
        host = canonical_host(host_text)
        if host is None:
            raise RuleError(f"host {host_text!r} in 'from' is not declared under 'hosts:'")
    captures: dict[str, str | None] = {}
    exact_path = literal_path(raw_path, case_sensitive) if fastpaths.ENABLED else None
    if exact_path is not None:
        conditions = _parse_conditions(raw_query, case_sensitive, is_ignored, captures)
        return FromParts(host, exact_path, None, conditions, captures or NO_CAPTURES)
    segments = from_segments(raw_path)
    steps = tuple(
        _compile_segment(texts, holders, case_sensitive, captures, i == len(segments) - 1)
        for i, (texts, holders) in enumerate(segments)
    )
    if all(isinstance(s, str) for s in steps):
        path = "/" + "/".join(s for s in steps if isinstance(s, str))
        exact_steps: tuple[Step, ...] | None = None
    else:
        path = raw_path
        exact_steps = steps
    conditions = _parse_conditions(raw_query, case_sensitive, is_ignored, captures)
    return FromParts(host, path, exact_steps, conditions, captures)


@functools.lru_cache(maxsize=4096)
def literal_path(raw_path: str, case_sensitive: bool) -> str | None:
    """Return the canonical path of a ``from`` path with no placeholder, else None."""
    # Placeholders as written (§2): a '%3C' is a literal '<', so a path without a raw
    # '<' or '>' has none; one with them goes the general way (a placeholder, or an error).
    if "<" in raw_path or ">" in raw_path:
        return None
    # Cached: half the rules of a Bitrix map share a few paths (detail.php?ID=N).
    decoded = _decode_rule_text(raw_path, "path")
    # Each segment is the literal step _compile_segment would return for it.
    path = "/" + "/".join([fold(s, case_sensitive) for s in resolve_segments(decoded)])
    # One string for equal paths, and the rule's own text when it is already canonical:
    # a 100k-rule map keeps every byte of each.
    return sys.intern(raw_path if path == raw_path else path)


def _parse_conditions(
    raw_query: str,
    case_sensitive: bool,
    is_ignored: Callable[[str], bool],
    captures: dict[str, str | None],
) -> tuple[Condition, ...]:
    conditions: list[Condition] = []
    seen: set[str] = set()
    for pair in re.split(r"[&;]", raw_query) if raw_query else ():
        if not pair:
            continue
        if "=" not in pair:
            raise RuleError(f"query condition {pair!r} must be NAME=VALUE")
        raw_name, _, raw_value = pair.partition("=")
        if "<" in raw_name or ">" in raw_name:
            raise RuleError(f"a placeholder cannot stand in a query name ({raw_name!r})")
        name = sys.intern(_decode_rule_text(raw_name.replace("+", " "), "query name"))
        if not name:
            # Dropped, as a request's empty name is (§2, §3): no condition could hold on it.
            if not PLACEHOLDER.fullmatch(raw_value):
                _decode_rule_text(raw_value.replace("+", " "), "query value")
            continue
        if is_ignored(name):
            raise RuleError(f"condition on {name!r}, a query name the map ignores (ignore_query)")
        if name.lower() in seen:
            raise RuleError(f"query name {name!r} has two conditions")
        seen.add(name.lower())
        placeholder = PLACEHOLDER.fullmatch(raw_value)
        if placeholder:
            converter, capture = placeholder.groups()
            known = CONVERTERS.get(converter)
            if known is None or not known.in_query:
                raise RuleError(f"<{converter}:...> is not allowed in a query value")
            if capture in captures:
                raise RuleError(f"capture <{capture}> is used twice")
            captures[capture] = converter
            conditions.append(Condition(sys.intern(name.lower()), name, None, capture, converter))
        elif "<" in raw_value or ">" in raw_value:
            raise RuleError(f"a query placeholder must be the whole value, not {raw_value!r}")
        else:
            value = _decode_rule_text(raw_value.replace("+", " "), "query value")
            conditions.append(Condition.of_literal(name, value, case_sensitive))
    return tuple(conditions)


# A constant path target ("/news/123/"), the usual row of a big table: characters that
# need no escape, no query, fragment or insert. On a plain origin every check below is a
# check of new_site alone, made once by _plain_origin.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*\Z")
_PLAIN_ORIGIN = re.compile(r"https://[A-Za-z0-9.-]+(?::[0-9]+)?\Z")


def parse_target(
    text: str,
    *,
    new_site: str,
    host_allowed: Callable[[str], bool],
    captures: Mapping[str, str | None],
    what: str = "to",
) -> Target:
    """Compile a ``to``/``see`` into a template whose every URL is https on an allowed host."""
    if fastpaths.ENABLED and isinstance(text, str):  # others get the general path's error
        plain = plain_target(text, new_site=new_site, host_allowed=host_allowed)
        if plain is not None:
            return plain
    return _parse_target(
        text, new_site=new_site, host_allowed=host_allowed, captures=captures, what=what
    )


def plain_target(text: str, *, new_site: str, host_allowed: Callable[[str], bool]) -> Target | None:
    """Return the target of a plain constant path, or None when it needs parse_target's checks."""
    path = text.strip()
    if (
        _PLAIN_PATH.match(path)
        and not path.startswith("//")
        and _plain_origin(new_site, host_allowed)
    ):
        url = new_site + path
        return Target(parts=(url,), query_keys=_NO_KEYS, has_query=False, constant=url)
    return None


@functools.lru_cache(maxsize=64)
def _plain_origin(new_site: str, host_allowed: Callable[[str], bool]) -> bool:
    """Say whether new_site + a plain path is always a valid target that needs no escape."""
    if not _PLAIN_ORIGIN.match(new_site):
        return False
    try:
        probe = _parse_target("/", new_site=new_site, host_allowed=host_allowed, captures={})
    except RuleError:
        return False
    return probe.constant == new_site + "/"


def _parse_target(
    text: str,
    *,
    new_site: str,
    host_allowed: Callable[[str], bool],
    captures: Mapping[str, str | None],
    what: str = "to",
) -> Target:
    """Compile a ``to``/``see`` by the general path: every check, every escape."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"'{what}' must be a non-empty string")
    text = text.strip()
    if _CONTROL_OR_SPACE.search(text):
        raise RuleError(f"'{what}' contains a space or control character; escape it as %20")
    if text.startswith("//"):
        raise RuleError(f"'{what}' is protocol-relative; write a path or an https:// URL")
    if text.startswith("/"):
        url = new_site + text
    elif text[:8].lower() == "https://":
        url = text
    elif text[:7].lower() == "http://":
        raise RuleError(f"'{what}' must be https://, not http://")
    else:
        raise RuleError(f"'{what}' must be a path starting with '/' or an https:// URL")
    try:
        split = urlsplit(url)
        split.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise RuleError(f"'{what}' is not a valid URL: {exc}") from None
    # The authority ends at the first '/', '?' or '#' (RFC 3986 §3.2), as urlsplit reads it.
    ends = [i for i in (url.find(ch, len("https://")) for ch in "/?#") if i >= 0]
    authority_end = min(ends, default=len(url))
    authority = url[len("https://") : authority_end]
    if "{" in authority or "}" in authority:
        raise RuleError(f"'{what}' may not insert a capture into the host")
    if "@" in authority or "\\" in url:
        raise RuleError(f"'{what}' may not contain userinfo ('@') or a backslash")
    host = (split.hostname or "").rstrip(".")
    if not host_allowed(host):
        raise RuleError(f"'{what}' points at {host!r}, which is not in allow_targets")
    if url[authority_end : authority_end + 1] != "/":
        # "https://khv27.ru?x=1" means "https://khv27.ru/?x=1": the path is "/".
        url = f"{url[:authority_end]}/{url[authority_end:]}"
    if _VALID_ESCAPES.search(url):
        raise RuleError(f"'{what}' has a '%' that is not a %XX escape")
    parts: list[str | tuple[str, str]] = []
    query_at = url.find("?")
    position = 0
    for match in _TARGET_NAME.finditer(url):
        name = match.group(1)
        if name not in captures:
            raise RuleError(f"'{what}' uses {{{name}}}, which 'from' does not capture")
        fragment_at = url.find("#")
        if 0 <= fragment_at < match.start():
            raise RuleError(f"'{what}' may not insert a capture into the fragment")
        in_query = 0 <= query_at < match.start()
        spans_segments = CONVERTERS[captures[name]].spans_segments
        safe = "/" if spans_segments and not in_query else ""
        parts.append(quote(url[position : match.start()], safe=_TARGET_SAFE))
        parts.append((name, safe))
        position = match.end()
    rest = url[position:]
    if "{" in rest or "}" in rest or any("{" in p or "}" in p for p in parts if isinstance(p, str)):
        raise RuleError(f"'{what}' has a brace that is not a {{name}} insert")
    parts.append(quote(rest, safe=_TARGET_SAFE))
    query = url[query_at + 1 :].partition("#")[0] if query_at >= 0 else ""
    query_keys = (
        frozenset(
            _decode_rule_text(pair.partition("=")[0], "query name").lower()
            for pair in re.split(r"[&;]", query)
            if pair
        )
        or _NO_KEYS
    )
    text_parts = tuple(p for p in parts if p != "")
    constant = "".join(p for p in text_parts if isinstance(p, str))
    return Target(
        parts=text_parts,
        query_keys=query_keys,
        has_query=query_at >= 0,
        constant=constant if all(isinstance(p, str) for p in text_parts) else None,
    )


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_CONTROL_CHAR = re.compile("[\x00-\x1f\x7f]")
# Shared by every rule that has none (never mutated): an empty frozenset costs 216 bytes
# and an empty dict 64, each, for each of 100,000 rules.
_NO_KEYS: frozenset[str] = frozenset()
NO_CAPTURES: dict[str, str | None] = {}
_NO_SIGNATURES: frozenset[tuple[str, str, str]] = frozenset()
