"""Draft rules for unmapped URLs: URLs of one shape grouped, numbers collapsed into ``<int:id>``.

Owns how coverage turns the URLs no rule answers into rules to paste under
``rules:``: the shape a URL belongs to (per host, numeric segments and values
collapsed), the grouping by shape, and the YAML a draft is written as.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.canonical import LegacyURL, fold
from gateway.ops.urls import from_text


class Unmapped(Protocol):
    """One raw form of an unmapped URL, as the replay decided it."""

    @property
    def shape(self) -> tuple[object, ...] | None:
        """The draft it belongs to (``shape_of``)."""

    @property
    def names(self) -> tuple[str, ...]:
        """The shape's query names as sent (ID, not id)."""

    @property
    def shown(self) -> str | None:
        """The URL as a report shows it."""


@dataclass(frozen=True)
class Draft:
    """A draft rule for unmapped URLs that share a shape (numbers collapsed into ``<int:id>``)."""

    host: str
    from_text: str
    hits: int
    urls: int
    examples: tuple[tuple[str, int], ...]  # (URL as shown, hits), most hit first

    def yaml(self, comment: bool = True) -> str:
        """Return the draft as a YAML rule to paste under ``rules:`` (a 410 until edited)."""
        shown = ", ".join(url for url, _ in self.examples)
        head = f"  # {_plural(self.hits, 'hit')}, {_plural(self.urls, 'URL')}; e.g. {shown}\n"
        return (
            (head if comment else "")
            + f"  - from: {json.dumps(self.from_text, ensure_ascii=False)}\n"
            f"    status: 410  # or, once the new page is known: to: /...\n"
            f"    note: draft from gateway coverage"
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def shape_of(url: LegacyURL, case_sensitive: bool) -> tuple[object, ...]:
    """Return the draft an unmapped URL belongs to: host, numbers collapsed to None."""
    segments = url.path.split("/")[1:] if url.path != "/" else []
    values = url.last_values() if url.params else {}
    return (
        url.host,
        tuple(None if _numeric(s) else s for s in segments),
        tuple(
            (k, None if _numeric(v) else fold(v, case_sensitive)) for k, v in sorted(values.items())
        ),
    )


def query_names(url: LegacyURL) -> tuple[str, ...]:
    """Return the first spelling of each significant query name, in the shape's (sorted) order."""
    first: dict[str, str] = {}
    for p in url.params:
        first.setdefault(p.key, p.name)
    return tuple(first[k] for k in sorted(first))


def _numeric(text: str) -> bool:
    return text.isascii() and text.isdigit()


def drafts(groups: Iterable[Sequence[tuple[Unmapped, int]]]) -> list[Draft]:
    """Group unmapped URLs by shape (host, numbers collapsed) into drafts, most hits first.

    Each group holds the raw forms of one canonical URL with their hits.
    """
    shapes: dict[tuple[object, ...], list[tuple[int, str]]] = {}
    spelled: dict[tuple[object, ...], tuple[str, ...]] = {}
    for group in groups:
        hits = sum(h for _, h in group)
        best = max(group, key=lambda pair: pair[1])[0]
        assert best.shape is not None and best.shown is not None
        shapes.setdefault(best.shape, []).append((hits, best.shown))
        spelled.setdefault(best.shape, best.names)
    out = []
    for shape, urls in shapes.items():
        host, segments, keyed = shape
        assert isinstance(segments, tuple) and isinstance(keyed, tuple)
        # Names are matched ignoring case: write them as the first URL spelled them.
        params = tuple((n, v) for n, (_, v) in zip(spelled[shape], keyed, strict=True))
        names = iter(("id", *(f"id{n}" for n in range(2, 1000))))
        written_segments = [s if s is not None else f"<int:{next(names)}>" for s in segments]
        written_params = [(k, v if v is not None else f"<int:{next(names)}>") for k, v in params]
        text = from_text(
            str(host),
            written_segments,
            written_params,
            raw_segments=frozenset(i for i, s in enumerate(segments) if s is None),
            raw_values=frozenset(i for i, (_, v) in enumerate(params) if v is None),
        )
        urls.sort(key=lambda pair: (-pair[0], pair[1]))
        out.append(
            Draft(
                host=str(host),
                from_text=text,
                hits=sum(h for h, _ in urls),
                urls=len(urls),
                examples=tuple((u, h) for h, u in urls[:3]),
            )
        )
    out.sort(key=lambda d: (-d.hits, d.from_text))
    return out
