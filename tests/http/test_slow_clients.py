"""Slow and idle clients cannot stall gunicorn alone (issue 13), with the project's settings.

Attack connections bind 127.0.0.2-127.0.0.9; the legitimate client is 127.0.0.1. While
they hold their connections, GET / must get the same 301 (status, Location and
Cache-Control) as on a quiet server, each within 2 s, and the server must close every
attack connection itself: a slow or idle head at GATEWAY_HEADER_TIMEOUT, a slow body
right after its answer. With plain gthread every legitimate request here times out.
The full version, with figures: python bench/slow_clients.py.
"""

from __future__ import annotations

import time

import pytest

from bench.slow_clients import Attack
from tests.support import BUNDLED_MAP, StartServer, raw_request

HEADER_TIMEOUT = 2.0  # seconds; the project's default is 10
PROBE_SECONDS = 3.0
ANSWER_WITHIN = 2.0

ATTACKS = {
    "slow-header": {"slow_headers": 256, "idle": 0, "slow_bodies": 0},
    "idle": {"slow_headers": 0, "idle": 64, "slow_bodies": 0},
    "slow-body": {"slow_headers": 0, "idle": 0, "slow_bodies": 64},
}


def home(port: int) -> tuple[int, str | None, str | None]:
    response = raw_request(port, "/", timeout=ANSWER_WITHIN)
    return (response.status, response.header("Location"), response.header("Cache-Control"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ATTACKS)
def test_legitimate_requests_are_answered_and_attackers_closed(
    gunicorn_factory: StartServer, kind: str
) -> None:
    server = gunicorn_factory(
        BUNDLED_MAP, workers=2, env={"GATEWAY_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}
    )
    expected = home(server.port)
    assert expected[0] == 301 and (expected[1] or "").startswith("https://khv27.ru")
    assert expected[2]

    with Attack(server.port, interval=0.5, **ATTACKS[kind]) as attack:
        failures = []
        answered = 0
        end = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                got = home(server.port)
            except (OSError, ValueError) as e:
                failures.append(f"{type(e).__name__}: {e}")
            else:
                took = time.monotonic() - start
                if got != expected or took > ANSWER_WITHIN:
                    failures.append(f"{got} after {took:.2f} s")
                answered += 1
            time.sleep(0.2)
        assert not failures, f"{len(failures)} of {answered + len(failures)}: {failures[:3]}"

        # The deadline works: the server itself closes every attack connection.
        opened = sum(ATTACKS[kind].values())
        deadline = time.monotonic() + HEADER_TIMEOUT + 3.0
        while attack.stats().closed.get(kind, 0) < opened and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = attack.stats()
    assert stats.closed.get(kind, 0) == opened, stats.line()
    assert max(stats.closed_after[kind]) < HEADER_TIMEOUT + 2.0, stats.line()
    if kind == "slow-body":
        assert stats.answered.get(kind, 0) == opened, stats.line()  # the 405, then the close
