"""What a hostile header costs the gateway, as ratios to ordinary requests (issue 13).

In-process, through the whole WSGI stack (the middleware, the Flask view, the banner),
with the recorder off. Each request kind is timed in rounds, interleaved, and each
figure is the minimum CPU time per request over the rounds:

    .venv/bin/python bench/hostile_headers.py [--rounds 7] [--n 400]

The Accept-Language bomb is the issue's: 98 headers of 1,000 entries each, which a
server joins into one value of about 98,000 entries.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gateway.app import create_app

REPO = Path(__file__).resolve().parent.parent
BOMB = ", ".join(", ".join(f"x{i}-{j};q=0.{(i * j) % 10}" for j in range(1000)) for i in range(98))


def environ(target: str, **headers: str) -> dict[str, Any]:
    """Return a WSGI environ for GET target on the main host, as gunicorn builds it."""
    return {
        "REQUEST_METHOD": "GET",
        "RAW_URI": target,
        "PATH_INFO": target.partition("?")[0],
        "QUERY_STRING": target.partition("?")[2],
        "HTTP_HOST": "khabarovskadm.ru",
        "SERVER_NAME": "khabarovskadm.ru",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.7",
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        **headers,
    }


def per_request(app: Callable[..., Iterable[bytes]], env: dict[str, Any], n: int) -> float:
    """Return the CPU seconds of one request, averaged over n."""

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
        return None

    started = time.process_time()
    for _ in range(n):
        body = app(dict(env), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.process_time() - started) / n


def main() -> None:
    """Time each kind of request and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=400)
    args = parser.parse_args()
    app = create_app({"TESTING": True, "MAP_PATH": str(REPO / "redirects.yaml")})
    wsgi = app.wsgi_app
    wsgi.record = None  # type: ignore[attr-defined]
    kinds = {
        "redirect": environ("/"),
        "banner": environ("/no/such/page"),
        "banner + Accept-Language bomb": environ("/no/such/page", HTTP_ACCEPT_LANGUAGE=BOMB),
        "8 KiB Host (unknown host, 404)": environ("/", HTTP_HOST="ж" * 8000),
        "banner + 8 KiB User-Agent": environ("/no/such/page", HTTP_USER_AGENT="\xff" * 8192),
    }
    best = {k: float("inf") for k in kinds}
    for _ in range(args.rounds):
        for name, env in kinds.items():
            best[name] = min(best[name], per_request(wsgi, env, args.n))
    redirect, banner = best["redirect"], best["banner"]
    print(f"{'request':32} {'µs CPU':>9} {'x redirect':>11} {'x banner':>9}")
    for name, seconds in best.items():
        print(f"{name:32} {seconds * 1e6:9.1f} {seconds / redirect:11.1f} {seconds / banner:9.2f}")


if __name__ == "__main__":
    main()
