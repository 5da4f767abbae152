"""gateway.decide: the one order of decisions, and gateway.responses: what each outcome answers."""

from __future__ import annotations

import pytest

from gateway import outcomes
from gateway.decide import decide, fallback
from gateway.mapfile import RedirectMap
from gateway.outcomes import (
    BadRequest,
    Gone,
    MethodNotAllowed,
    NotFound,
    Redirect,
    ServiceEndpoint,
    Unavailable,
    UnknownHost,
)
from gateway.responses import ANSWERS, NO_STORE, Body, answer_of, plain_text, status_of

MAIN = "khabarovskadm.ru"


@pytest.mark.parametrize(
    ("method", "host", "target", "expected"),
    [
        pytest.param(
            "POST",
            "evil.example",
            "/-/health",
            ServiceEndpoint,
            id="service-before-method-and-host",
        ),
        pytest.param("POST", "evil.example", "/", MethodNotAllowed, id="method-before-host"),
        pytest.param("GET", "evil.example", "/%zz", UnknownHost, id="host-before-well-formedness"),
        pytest.param("GET", MAIN, "/%zz", BadRequest, id="bad-escape-on-a-served-host"),
        pytest.param("GET", MAIN, "/", Redirect, id="home-is-a-rule"),
        pytest.param("HEAD", MAIN, "/", Redirect, id="head-decides-like-get"),
        pytest.param("GET", MAIN, "/no/such/page-at-all", NotFound, id="no-rule"),
        pytest.param("GET", "", "/", UnknownHost, id="no-host-header"),
        pytest.param(
            "GET", "evil.example", f"http://{MAIN}/", Redirect, id="absolute-form-names-the-host"
        ),
    ],
)
def test_order_of_decisions(
    bundled: RedirectMap, method: str, host: str, target: str, expected: type
) -> None:
    assert type(decide(bundled, method, host, target)) is expected


def test_a_gone_rule_is_gone(bundled: RedirectMap) -> None:
    gone = next(r for r in bundled.rules if r.status == 410 and r.is_exact and not r.conditions)
    outcome = decide(bundled, "GET", gone.host or MAIN, gone.path)
    assert isinstance(outcome, Gone) and outcome.rule is gone


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param("/-/health", ServiceEndpoint, id="service-still-answers-without-a-map"),
        pytest.param("/", Unavailable, id="legacy-url-without-a-map-is-503"),
        pytest.param("/%zz", Unavailable, id="even-a-malformed-one"),
    ],
)
def test_no_map_is_decided_here(target: str, expected: type) -> None:
    assert type(decide(None, "GET", MAIN, target)) is expected


def test_a_fault_in_matching_reaches_the_caller(
    bundled: RedirectMap, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The commands (check, import, coverage) must see a matcher bug, not "no rule".
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(bundled.matcher, "match", broken)
    with pytest.raises(RuntimeError, match="boom"):
        decide(bundled, "GET", MAIN, "/")


@pytest.mark.parametrize(
    ("host", "target", "expected", "reason"),
    [
        pytest.param(
            MAIN, "/x", NotFound, "internal error while matching", id="readable-url-gets-the-banner"
        ),
        pytest.param("evil.example", "/x", UnknownHost, None, id="unknown-host-stays-unknown"),
        pytest.param(MAIN, "/%zz", BadRequest, None, id="unreadable-url-is-400"),
    ],
)
def test_fallback_after_a_fault(
    bundled: RedirectMap, host: str, target: str, expected: type, reason: str | None
) -> None:
    outcome = fallback(bundled, host, target)
    assert type(outcome) is expected
    if reason is not None:
        assert isinstance(outcome, NotFound) and outcome.reason == reason


def test_every_outcome_has_one_row() -> None:
    kinds = set(outcomes.Outcome.__args__)  # type: ignore[attr-defined]
    assert set(ANSWERS) == kinds
    names = [a.name for a in ANSWERS.values()]
    assert len(names) == len(set(names)), "two outcomes share a name in logs and metrics"


@pytest.mark.parametrize(
    ("outcome_type", "status", "cache", "body"),
    [
        pytest.param(
            Gone, 410, "public, max-age=3600", Body.BANNER, id="gone-banner-cached-an-hour"
        ),
        pytest.param(NotFound, 404, "public, max-age=3600", Body.BANNER, id="not-found-banner"),
        pytest.param(UnknownHost, 404, NO_STORE, Body.PLAIN, id="unknown-host-never-cached"),
        pytest.param(BadRequest, 400, NO_STORE, Body.PLAIN, id="bad-request-never-cached"),
        pytest.param(MethodNotAllowed, 405, NO_STORE, Body.PLAIN, id="405-never-cached"),
        pytest.param(Unavailable, 503, NO_STORE, Body.PLAIN, id="503-never-cached"),
    ],
)
def test_fixed_rows(outcome_type: type, status: int, cache: str, body: Body) -> None:
    row = ANSWERS[outcome_type]
    assert (row.status, row.cache_control(86400), row.body) == (status, cache, body)


def test_a_redirect_takes_its_rules_status_and_the_maps_max_age(bundled: RedirectMap) -> None:
    outcome = decide(bundled, "GET", MAIN, "/")
    assert isinstance(outcome, Redirect)
    assert status_of(outcome) == outcome.rule.status
    assert answer_of(outcome).cache_control(123) == "public, max-age=123"


@pytest.mark.parametrize(
    ("outcome", "text"),
    [
        pytest.param(BadRequest("bad escape"), "Bad request: bad escape.", id="reason-is-shown"),
        pytest.param(
            Unavailable(), "Service unavailable: no valid redirect map is loaded.", id="503"
        ),
        pytest.param(UnknownHost("x"), "This host is not served here.", id="host-not-echoed"),
    ],
)
def test_plain_text(outcome: outcomes.Outcome, text: str) -> None:
    assert plain_text(outcome) == text


def test_outcomes_carry_no_status_of_their_own() -> None:
    # The table decides the status; a value with its own would be a second source.
    for kind in ANSWERS:
        assert kind is Redirect or not hasattr(kind, "status"), kind
