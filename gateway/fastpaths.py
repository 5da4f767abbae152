"""The one switch of the core's fast paths: off, each takes the general path it shortcuts.

The shortcuts of issue 5 give the general code's answers faster for the common case:
the ASCII request parse (``canonical.parse_split``), the placeholder-free ``from``
and the plain constant target (``rules``), the literal-condition index
(``matcher``) and the common CSV row (``mapfile``). Each reads ``ENABLED`` at the
moment it would be taken, so that tests/test_fast_paths.py can compare it with the
path it bypasses. Production never turns it off. Pure: imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

ENABLED = True


@contextmanager
def disabled() -> Iterator[None]:
    """Run the block with every fast path off, then restore the switch."""
    global ENABLED
    saved, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = saved
