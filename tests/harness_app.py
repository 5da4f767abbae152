"""A trivial WSGI app for the harness's own tests: it echoes what gunicorn received."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/-/health":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"status": "ok"}']
    if path == "/chunked":
        # No Content-Length: gunicorn has to send an HTTP/1.1 response chunked.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([b"one ", b"two ", b"three"])
    body = json.dumps(
        {
            "method": environ["REQUEST_METHOD"],
            "raw_uri": environ["RAW_URI"],  # the request target as gunicorn read it
            "host": environ.get("HTTP_HOST"),
            "pid": os.getpid(),
        }
    ).encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("X-Dup", "a"),
            ("X-Dup", "b"),
        ],
    )
    return [body]
