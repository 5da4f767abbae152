"""Fuzz the whole request path in-process (WSGI: middleware, decide, banner): `make fuzz`.

For any bytes as the raw request target (gunicorn's RAW_URI), with a Host and an
Accept-Language picked by the first byte: no 5xx, a safe Location or none, no request
markup in a banner (tests/safety.py judges, as for the corpus and the properties).
"""

from __future__ import annotations

from _driver import REPO, instrumented, main

with instrumented():
    from gateway.app import create_app
    from gateway.mapfile import load_map

from tests.safety import Shape, baseline_shapes, response_problems

APP = create_app({"TESTING": True, "MAP_PATH": str(REPO / "redirects.yaml")})
CLIENT = APP.test_client()
SITE = load_map(REPO / "redirects.yaml").site
HOSTS = ("khabarovskadm.ru", "int.khabarovskadm.ru", "evil.example", "")
LANGUAGES = ("ru", "en", "", "en;q=0.9,ru;q=0.1")
METHODS = ("GET", "HEAD", "POST", "TRACE")


def _request(
    target: str, host: str, language: str, method: str
) -> tuple[int, dict[str, str], bytes]:
    response = CLIENT.open(
        "/",
        method=method,
        headers={"Host": host, "Accept-Language": language, "X-Forwarded-Host": "evil.example"},
        environ_overrides={"RAW_URI": target},
    )
    return response.status_code, dict(response.headers), response.get_data()


SHAPES: frozenset[Shape] = baseline_shapes(
    lambda target, language: _request(target, HOSTS[0], language, "GET")[2].decode()
)


def test_one_input(data: bytes) -> None:
    """Check one request; raise (a finding) when the answer is unsafe."""
    if not data:
        return
    variant, raw = data[0], data[1:]
    target = "/" + raw.decode("latin-1")
    method = METHODS[(variant >> 6) % len(METHODS)]
    status, headers, body = _request(
        target, HOSTS[variant % len(HOSTS)], LANGUAGES[(variant >> 2) % len(LANGUAGES)], method
    )
    problems = response_problems(
        status, headers, body, host_allowed=SITE.host_allowed, known_shapes=SHAPES, method=method
    )
    if problems:
        raise AssertionError(f"{method} {target!r}: {problems}")


if __name__ == "__main__":
    main(test_one_input)
