"""The baseline: a bare WSGI callable that answers 301 from a plain dict, no Flask.

Owns what "the least a Python server can do" means for the benchmark: one dict
lookup on the raw request target and the same headers and body the gateway sends
for a redirect. Served by gunicorn with the project's own gunicorn.conf.py, so
the ratio gateway/baseline is the cost of the gateway's own work per request.

The table is BENCH_EXACT_TABLE (TARGET<TAB>LOCATION lines, written by genmap.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from html import escape
from typing import Any

MAX_AGE = "public, max-age=86400"
NOT_FOUND = b"Not found.\n"


def load_table(path: str) -> dict[str, str]:
    """Read TARGET<TAB>LOCATION lines into a dict (targets as a client sends them)."""
    table: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            target, _, location = line.rstrip("\n").partition("\t")
            table[target] = location
    return table


TABLE = load_table(os.environ["BENCH_EXACT_TABLE"])


def app(
    environ: dict[str, Any], start_response: Callable[[str, list[tuple[str, str]]], Any]
) -> Iterable[bytes]:
    """Answer a known target with a 301 and its tiny HTML body; anything else with 404."""
    location = TABLE.get(environ.get("RAW_URI") or environ.get("PATH_INFO", ""))
    if location is None:
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(NOT_FOUND)))],
        )
        return [NOT_FOUND]
    href = escape(location)
    body = f'<!doctype html><title>Moved</title><a href="{href}">{href}</a>\n'.encode()
    start_response(
        "301 Moved Permanently",
        [
            ("Location", location),
            ("Cache-Control", MAX_AGE),
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ],
    )
    return [body]
