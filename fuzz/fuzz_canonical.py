"""Fuzz the canonical form and the order of decisions (pure, no Flask): `make fuzz`.

For any bytes as a request target on any served or foreign host: canonicalising gives
a LegacyURL or Malformed, nothing else; rebuilding the target and canonicalising again
gives the same URL (idempotence); ``decide`` returns an outcome; a Redirect's Location
is safe by tests/safety.py. The first byte picks the variant (case rule, Host, form).
"""

from __future__ import annotations

from _driver import REPO, instrumented, main

with instrumented():
    from gateway.canonical import Malformed, parse_request
    from gateway.decide import decide
    from gateway.mapfile import load_map
    from gateway.outcomes import Redirect

from tests.safety import location_problems

BUNDLED = load_map(REPO / "redirects.yaml")
SITE = BUNDLED.site
HOSTS = (
    "khabarovskadm.ru",
    "www.khabarovskadm.ru",
    "int.khabarovskadm.ru",
    "evil.example",
    "khabarovskadm.ru.",
    "",
    "khabarovskadm.ru:80",
    "[::1]",
)
PREFIXES = ("/", "", "http://khabarovskadm.ru/", "/search/?q=", "/press-center/news/detail.php?")


def test_one_input(data: bytes) -> None:
    """Check one input; raise (a finding) when a property fails."""
    if not data:
        return
    variant, raw = data[0], data[1:]
    case_sensitive = bool(variant & 1)
    target = PREFIXES[(variant >> 1) % len(PREFIXES)] + raw.decode("latin-1")
    host = HOSTS[(variant >> 4) % len(HOSTS)]
    try:
        url = parse_request(host, target, case_sensitive=case_sensitive, is_ignored=SITE.is_ignored)
    except Malformed:
        pass
    else:
        again = parse_request(
            host, url.to_target(), case_sensitive=case_sensitive, is_ignored=SITE.is_ignored
        )
        if (again.path, again.path_text, again.params) != (url.path, url.path_text, url.params):
            raise AssertionError(f"not idempotent: {target!r} -> {url} -> {again}")
    outcome = decide(BUNDLED, "GET", host, target)
    if isinstance(outcome, Redirect):
        problems = location_problems(outcome.location, SITE.host_allowed)
        if problems:
            raise AssertionError(f"unsafe Location for {target!r}: {problems}")


if __name__ == "__main__":
    main(test_one_input)
