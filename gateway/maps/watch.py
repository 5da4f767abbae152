"""When a reload happens: the watcher thread, the interval, and waiting for files to settle.

Owns the timing of reloads: a daemon thread per worker process that asks its holder
to check every ``RELOAD_INTERVAL`` seconds, and the wait until changed files have
been quiet for ``SETTLE`` seconds (a half-written file is still changing).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Protocol

from gateway.maps.files import Fingerprint, Watched, newest_change

# The package's name, not this module's: operators grep their logs for "gateway.maps".
log = logging.getLogger("gateway.maps")

RELOAD_INTERVAL = 2.0  # seconds between two stats of the map's files
SETTLE = 0.5  # seconds a changed file must stay unchanged before it is loaded
MAX_SETTLE_WAIT = 3.0  # seconds one attempt waits for files that keep changing

# The pid of this process, updated in a forked child, so that a holder can tell a
# fresh worker (whose watcher thread did not survive the fork) with one comparison.
pid = os.getpid()


# The wall clock that files' ctimes are compared with (a name of its own for the tests).
_clock = time.time_ns


def _after_fork() -> None:
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


class Checkable(Protocol):
    """What the watcher thread drives: a holder that reloads when its files changed."""

    def check(self) -> bool:
        """Reload if the files changed; True if a new map is served."""


def start_thread(holder: Checkable, interval: float) -> None:
    """Start a daemon thread that checks `holder` every `interval` seconds while it lives."""
    thread = threading.Thread(
        target=_watch,
        args=(weakref.ref(holder), interval),
        name="gateway-map-watcher",
        daemon=True,
    )
    thread.start()


def _watch(ref: weakref.ref[Checkable], interval: float) -> None:
    """Check the holder's files every `interval` seconds, until the holder is gone."""
    while True:
        time.sleep(interval)
        holder = ref()
        if holder is None:
            return
        try:
            holder.check()
        except Exception:
            log.exception("checking the map for changes failed")
        del holder  # hold no reference while sleeping: the holder may be collected


def settle_deadline() -> float:
    """Return the monotonic time at which one load attempt stops waiting for quiet files."""
    return time.monotonic() + MAX_SETTLE_WAIT


def wait_until_quiet(watched: Watched, deadline: float) -> tuple[int, Fingerprint] | None:
    """Wait until the watched files are quiet; return when (ns) and how they were seen.

    None: they were still changing at `deadline`, and the next check tries again.
    """
    settle = int(SETTLE * 1e9)
    previous: Fingerprint | None = None
    while True:
        started = _clock()
        before = watched.fingerprint()
        # Quiet: no change for SETTLE, by the files' ctimes or (a clock ahead of ours,
        # e.g. on a network share) by looking twice, SETTLE apart.
        if newest_change(before) + settle > started and before != previous:
            if time.monotonic() + SETTLE > deadline:
                return None
            previous = before
            time.sleep(SETTLE)
            continue
        return started, before


def quiet_since(started: int) -> int:
    """Return since when (ns) a file must be unchanged to count as quiet at `started`."""
    return started - int(SETTLE * 1e9)
