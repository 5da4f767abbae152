"""Reading the spreadsheets people have: CSV bytes to rows of cells by field.

Owns what ``gateway import`` accepts as input: ``old_url,new_url[,status][,note]``,
a header row or none (header names in several spellings), UTF-8 with or without
BOM or windows-1251, comma, semicolon or tab. Nothing here knows the map.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

# Header names people use, by column: old, new, status, note.
_COLUMNS = {
    "old": ("old_url", "old url", "old", "from", "source", "source_url", "url", "legacy_url"),
    "new": ("new_url", "new url", "new", "to", "target", "target_url", "destination"),
    "status": ("status", "code", "status_code", "http_status"),
    "note": ("note", "notes", "comment", "comments"),
}
_ORDER = ("old", "new", "status", "note")


class ImportFailed(Exception):
    """The input cannot be read at all (not a file, not text, no columns)."""


@dataclass(frozen=True)
class Sheet:
    """A spreadsheet as read: how it was written and its non-blank data rows."""

    encoding: str
    delimiter: str
    header: bool
    rows: tuple[tuple[int, dict[str, str], int], ...]  # (line, cells by field, cells)


def read_sheet(path: str) -> Sheet:
    """Read a spreadsheet file (``-``: nothing) into its rows; ImportFailed if it cannot be."""
    try:
        data = Path(path).read_bytes() if path != "-" else b""
    except OSError as exc:
        raise ImportFailed(f"cannot read {path}: {exc.strerror or exc}") from None
    text, encoding = decode_table(data)
    delimiter = sniff_delimiter(text)
    header, rows = read_rows(text, delimiter)
    return Sheet(encoding, delimiter, header, tuple(rows))


def decode_table(data: bytes) -> tuple[str, str]:
    """Return the text and its encoding: UTF-8 (a BOM allowed) first, else windows-1251."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8 (BOM)"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1251"), "windows-1251"
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ImportFailed(f"line {line}: neither UTF-8 nor windows-1251 text") from None


def sniff_delimiter(text: str) -> str:
    """Choose the separator that gives the most rows of 2 to 4 columns: ',', ';' or tab."""
    sample = [line for line in text.splitlines()[:50] if line.strip()]
    best, best_score = ",", (-1, -1)
    for delimiter in (",", ";", "\t"):
        widths = [len(row) for row in csv.reader(sample, delimiter=delimiter)]
        good = sum(2 <= w <= 4 for w in widths)
        consistent = max((widths.count(w) for w in set(widths)), default=0)
        if (good, consistent) > best_score:
            best, best_score = delimiter, (good, consistent)
    return best


def _header_columns(row: list[str]) -> dict[str, int] | None:
    """Return the column of each field when the row is a header, or None for a data row."""
    cells = [c.strip().lower().lstrip("\ufeff") for c in row]
    if not cells or "/" in cells[0] or "." in cells[0]:
        return None  # a URL or a path: data
    columns: dict[str, int] = {}
    for i, cell in enumerate(cells):
        for field, names in _COLUMNS.items():
            if cell in names and field not in columns:
                columns[field] = i
    if "old" in columns:
        columns.setdefault("new", 1 if columns["old"] != 1 else 0)
        return columns
    # An unknown header: its columns are in the documented order.
    return {field: i for i, field in enumerate(_ORDER) if i < len(cells)}


def read_rows(text: str, delimiter: str) -> tuple[bool, list[tuple[int, dict[str, str], int]]]:
    """Return (has header, [(line, cells by field, number of cells)]) for each non-blank row."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, dict[str, str], int]] = []
    columns: dict[str, int] | None = None
    header = False
    last_line = 0
    for row in reader:
        line, last_line = last_line + 1, reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:
            found = _header_columns(row)
            columns = found or {field: i for i, field in enumerate(_ORDER)}
            if found is not None:
                header = True
                continue
        cells = {f: row[i].strip() for f, i in columns.items() if i < len(row)}
        rows.append((line, cells, len(row)))
    return header, rows
