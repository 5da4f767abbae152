"""The map being served: one reference to a loaded ``RedirectMap``, replaced whole.

A request reads ``current()`` once and keeps that map to the end, so a request
is always answered by exactly one complete map version.
"""

from __future__ import annotations

import os

from gateway.mapfile import RedirectMap, load_map


class MapHolder:
    """Hold the served map and the last load error."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._current = load_map(self.path)
        self.last_error: str | None = None

    def current(self) -> RedirectMap:
        """Return the map to answer the next request with."""
        return self._current
