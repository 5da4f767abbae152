"""Fuzz the map loader: any bytes give a map or FILE:LINE problems, never a traceback.

libFuzzer's own limits time-box each input and bound its memory (`fuzz/run.sh` passes
-timeout and -rss_limit_mb): a hang (a FIFO-like block, an alias bomb) or an unbounded
allocation is reported as a finding, like an exception. The map is written to a file
because the loader's contract starts at a path (stat, read, decode, include globs).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from _driver import instrumented, main

with instrumented():
    from gateway.mapfile import MapError, load_map

_SHM = Path("/dev/shm")
FOLDER = Path(tempfile.mkdtemp(prefix="fuzz-map-", dir=_SHM if _SHM.is_dir() else None))
PATH = FOLDER / "redirects.yaml"
PROBLEM = re.compile(r"\A" + re.escape(str(PATH)) + r":\d+: error: [^\n]+\Z")


def test_one_input(data: bytes) -> None:
    """Load one map; raise (a finding) on anything but a map or FILE:LINE problems."""
    PATH.write_bytes(data)
    try:
        load_map(PATH)
    except MapError as exc:
        if not exc.problems:
            raise AssertionError("MapError with no problem in it") from exc
        for problem in exc.problems:
            if not PROBLEM.match(str(problem)):
                raise AssertionError(f"not one FILE:LINE line: {str(problem)!r}") from exc


if __name__ == "__main__":
    main(test_one_input)
