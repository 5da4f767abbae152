"""What a holder reports: the served map, how the last load went, and the problems in words.

Owns the ``Status`` value that ``/-/health`` and the metrics read, the ``SERVING_*``
names, the listener protocol told about every load, and how problems are shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gateway.mapfile import Problem, RedirectMap

MAX_PROBLEMS_SHOWN = 20  # problems kept in last_error (the log gets the same)

SERVING_MAP = "map"
SERVING_LAST_GOOD = "last-known-good"
SERVING_NONE = "none"


@dataclass(frozen=True)
class Status:
    """What is served and how the last load went: one value, replaced whole."""

    map: RedirectMap | None
    serving: str  # SERVING_MAP, SERVING_LAST_GOOD or SERVING_NONE
    last_attempt_at: datetime | None = None
    last_attempt_ok: bool | None = None
    last_error: str | None = None  # the last attempt's problems, one "FILE:LINE: ..." a line


class MapListener(Protocol):
    """Told about every load attempt (metrics use it)."""

    def map_event(self, status: Status, event: str) -> None:
        """Record an event: "loaded", "reloaded", "unchanged" or "failed"."""


def describe_problems(problems: tuple[Problem, ...] | list[Problem]) -> str:
    """Return the problems as `FILE:LINE: error: message` lines, the first few of them."""
    lines = [str(p) for p in problems[:MAX_PROBLEMS_SHOWN]]
    if len(problems) > MAX_PROBLEMS_SHOWN:
        lines.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problem(s)")
    return "\n".join(lines) or "the map did not load"


def indent(text: str) -> str:
    """Return `text` with every line indented, to sit under a log line."""
    return "\n".join("  " + line for line in text.splitlines())
