"""Run a fuzz target with atheris (coverage-guided libFuzzer) or, without it, a byte mutator.

Owns the choice of engine and nothing else, so that each harness is only its
``test_one_input``. atheris is the `fuzz` extra (`pip install -e '.[fuzz]'`); it ships
wheels for CPython on x86-64 Linux and macOS. Where it cannot be installed, the fallback
below runs the same target on random mutations of the seeds for the same time: no
coverage guidance, and `fuzz/run.sh` says so in its output.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

Target = Callable[[bytes], None]


def _mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        choice = rng.random()
        at = rng.randint(0, len(out))
        if choice < 0.3 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice < 0.5:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif choice < 0.7 and out:
            del out[at : at + rng.randint(1, 16)]
        elif choice < 0.9 and pool:
            other = rng.choice(pool)
            start = rng.randint(0, len(other))
            out[at:at] = other[start : start + rng.randint(1, 64)]
        else:
            out[at:at] = out[at : at + rng.randint(1, 32)]  # repeat a piece
    return bytes(out)


def _fallback(target: Target, args: list[str]) -> None:
    options = {a[1:].split("=", 1)[0]: a.split("=", 1)[1] for a in args if a.startswith("-")}
    folders = [Path(a) for a in args if not a.startswith("-")]
    seconds = float(options.get("max_total_time", "60"))
    pool = [p.read_bytes() for d in folders if d.is_dir() for p in sorted(d.iterdir())]
    pool = pool or [b""]
    rng = random.Random(int(options.get("seed", "0")) or None)
    runs, start = 0, time.monotonic()
    for data in pool:  # the seeds themselves first
        target(data)
        runs += 1
    while time.monotonic() - start < seconds:
        target(_mutate(rng.choice(pool), rng, pool))
        runs += 1
    elapsed = time.monotonic() - start
    print(f"fallback mutator (no atheris): Done {runs} runs in {elapsed:.0f} second(s)")


def main(target: Target) -> None:
    """Fuzz `target` with the command line's libFuzzer options and corpus folders."""
    try:
        import atheris
    except ImportError:
        if os.environ.get("FUZZ_REQUIRE_ATHERIS"):
            raise
        _fallback(target, sys.argv[1:])
        return
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


def instrumented() -> contextlib.AbstractContextManager[object]:
    """Return a context in which imports are instrumented for coverage (when atheris is here)."""
    try:
        import atheris
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=["gateway", "yaml"])  # type: ignore[no-any-return]


# The harnesses run as scripts (fuzz/ on sys.path): make the repository importable too,
# for tests/safety.py, the one definition of a safe answer.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
