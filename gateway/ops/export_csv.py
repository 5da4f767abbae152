"""``gateway export csv``: the flattened map, one rule a row, for spreadsheets and review."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from gateway.mapfile import RedirectMap
from gateway.rules import Condition

CSV_COLUMNS = (
    "source",
    "host",
    "from",
    "canonical_path",
    "conditions",
    "status",
    "to",
    "see",
    "keep_query",
    "note",
)


def _conditions_text(conditions: Iterable[Condition]) -> str:
    parts = []
    for c in conditions:
        if c.literal is not None:
            parts.append(f"{c.name}={c.literal}")
        else:
            parts.append(f"{c.name}=<{c.converter + ':' if c.converter else ''}{c.capture}>")
    return "&".join(parts)


def export_csv(redirect_map: RedirectMap) -> str:
    """Flatten the map into CSV, one rule a row, in map order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rule in redirect_map.rules:
        writer.writerow(
            (
                rule.source,
                rule.host or "*",
                rule.from_text,
                rule.path,
                _conditions_text(rule.conditions),
                rule.status,
                rule.to_text or "",
                rule.see or "",
                "true" if rule.keep_query else "false",
                rule.note,
            )
        )
    return buffer.getvalue()
