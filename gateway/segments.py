"""Placeholder converters and the compiled path segment that uses them (``news-<int:id>.html``).

This module owns the one table of converters (``<name>``, ``<int:name>``,
``<path:name>``): the regex text a segment is compiled with, the character runs
the backtracking-free matcher scans, and where each converter may stand. Rules
(``gateway.rules``), the matcher and ``gateway check`` all ask it, never the
regex text. Pure: no Flask.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from gateway.canonical import Malformed, decode_parts, resolve_segments


@dataclass(frozen=True, slots=True)
class Converter:
    """A placeholder converter: what a capture of it may hold, and where it may stand."""

    name: str | None  # None for a plain <name>
    pattern: str  # the regex text of one capture
    run: re.Pattern[str]  # the same characters, for scanning runs of them
    in_query: bool  # may stand as a query value (``?ID=<int:id>``)
    spans_segments: bool  # matches the rest of the path, slashes included


CONVERTERS: dict[str | None, Converter] = {
    c.name: c
    for c in (
        Converter(None, r"[^/]+", re.compile(r"[^/]+"), in_query=True, spans_segments=False),
        Converter("int", r"[0-9]+", re.compile(r"[0-9]+"), in_query=True, spans_segments=False),
        Converter("path", r".+", re.compile(r".+", re.S), in_query=False, spans_segments=True),
    )
}


@dataclass(frozen=True, slots=True)
class SegmentPattern:
    """A path segment with placeholders (``news-<int:id>.html``), or the ``<path:>`` tail."""

    regex: re.Pattern[str]
    names: tuple[str, ...]
    head: str  # folded literal text before the first placeholder: the index key
    is_tail: bool  # a <path:> element: matches the rest of the path, slashes included
    # The literal text around the placeholders (one more than names) and each converter,
    # for matching segments with two or more placeholders without backtracking.
    literals: tuple[str, ...]
    converters: tuple[str | None, ...]

    @property
    def identity(self) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
        """Return what the step matches, capture names aside: equal identities, equal matches."""
        # The regex is built from exactly these (under the map's one case rule).
        return self.literals, self.converters

    @property
    def is_whole_segment(self) -> bool:
        """Say whether the step is a lone ``<name>``: it matches every non-empty segment."""
        return not self.is_tail and self.literals == ("", "") and self.converters == (None,)

    @property
    def is_whole_tail(self) -> bool:
        """Say whether the step is a lone ``<path:name>``: any non-empty rest of the path."""
        return self.is_tail and self.literals == ("", "") and self.converters == ("path",)

    def match(self, text: str) -> tuple[str, ...] | None:
        """Return the captures when the text matches (as the regex would), else None."""
        if len(self.names) < 2:
            found = self.regex.match(text)
            return found.groups() if found else None
        return _match_without_backtracking(self, text)


Step = str | SegmentPattern  # a literal segment (folded) or a pattern


def _match_without_backtracking(step: SegmentPattern, text: str) -> tuple[str, ...] | None:
    """Match a segment with several placeholders in O(n log n), with the regex's captures.

    The regex ``(a)-(b)-(c)\\.html`` backtracks in O(n^k) on a segment that almost
    matches: 8 KiB of dashes held a worker for minutes. The regex's greedy choice is
    "each capture as long as the rest can still match", so compute, from the right,
    where each literal can stand with the rest matching (``ends``), then take the
    longest capture that reaches one of those places.
    """
    flags = re.S | (step.regex.flags & re.I)
    n = len(text)
    k = len(step.names)
    # starts[j]: sorted positions where literal j can start with everything after it matching.
    starts: list[list[int]] = [[] for _ in range(k + 1)]
    ends: list[dict[int, int]] = [{} for _ in range(k + 1)]  # start -> end of literal j there
    reach: list[list[int]] = [[] for _ in range(k + 1)]  # run end of converter j from p

    def run_ends(converter: str | None) -> list[int]:
        """Return, for each position, where the converter's run of characters from it ends."""
        out = list(range(n + 1))
        for run in CONVERTERS[converter].run.finditer(text):
            start, end = run.span()
            out[start:end] = [end] * (end - start)
        return out

    def capture_end(j: int, p: int) -> int | None:
        """Return the end of the longest capture j from p after which literal j can stand."""
        limit = reach[j][p]
        i = bisect.bisect_right(starts[j], limit) - 1
        if i < 0 or starts[j][i] <= p:
            return None
        return starts[j][i]

    first = re.compile(re.escape(step.literals[0]), flags).match(text)
    if first is None:
        return None
    for j in range(k, 0, -1):
        literal = re.compile(f"(?=({re.escape(step.literals[j])}))", flags)
        for found in literal.finditer(text):
            q, e = found.start(), found.end(1)
            if (e == n) if j == k else capture_end(j + 1, e) is not None:
                starts[j].append(q)
                ends[j][q] = e
        reach[j] = run_ends(step.converters[j - 1])
    captures: list[str] = []
    p = first.end()
    for j in range(1, k + 1):
        stop = capture_end(j, p)
        if stop is None:
            return None
        captures.append(text[p:stop])
        p = ends[j][stop]
    return tuple(captures)


class RuleError(ValueError):
    """A rule that cannot be compiled; the message says why."""


PLACEHOLDER = re.compile(r"<(?:([a-z]+):)?([A-Za-z_][A-Za-z0-9_]*)>")

# Where a placeholder stood in a decoded ``from`` path: decoded text never holds a control
# character (decode refuses them), so this marker cannot be mistaken for the rule's text.
_MARK = "\x00"
_MARKED = re.compile("\x00([0-9]+)\x00")

Placeholder = tuple[str | None, str]  # (converter, capture name)


def from_segments(raw_path: str) -> list[tuple[list[str], list[Placeholder]]]:
    """Split a ``from`` path into its canonical segments: literal texts around placeholders.

    Placeholders are found in the text as written, before any decoding (§2): ``%3C`` is
    a literal ``<``. Then the literal pieces are decoded (together, as one path, §3),
    and the dot segments resolved and the empty ones dropped by ``resolve_segments``,
    the function requests go through, with each placeholder held by a marker. Each
    segment comes back as its decoded texts (one more than its placeholders) and its
    placeholders.
    """
    raw = PLACEHOLDER.split(raw_path)  # text, conv, name, text, conv, name, ..., text
    raw_texts = raw[0::3]
    for text in raw_texts:
        if "<" in text or ">" in text:
            raise RuleError(
                f"malformed placeholder in {raw_path!r}: use <name>, <int:name>, <path:name>"
                " (a literal '<' or '>' is written %3C, %3E)"
            )
    try:
        texts = decode_parts([text.encode("utf-8") for text in raw_texts])
    except Malformed as exc:
        raise RuleError(f"path: {exc}") from None
    holders: list[Placeholder] = list(zip(raw[1::3], raw[2::3], strict=True))
    marked = texts[0] + "".join(f"{_MARK}{n}{_MARK}{text}" for n, text in enumerate(texts[1:]))
    segments: list[tuple[list[str], list[Placeholder]]] = []
    for segment in resolve_segments(marked):
        pieces = _MARKED.split(segment)  # text, placeholder number, text, ...
        segments.append((pieces[0::2], [holders[int(n)] for n in pieces[1::2]]))
    return segments
