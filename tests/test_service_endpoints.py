"""Who sees /-/health in full and /-/metrics: the allow-list (GATEWAY_SERVICE_ALLOW)."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from gateway import web
from gateway.app import create_app
from tests.support import BUNDLED_MAP


def get(client: FlaskClient, target: str, address: str) -> tuple[int, dict[str, object] | str, str]:
    response = client.get(target, environ_base={"REMOTE_ADDR": address})
    body = response.get_data(as_text=True)
    parsed = json.loads(body) if response.mimetype == "application/json" else body
    return response.status_code, parsed, response.headers["Cache-Control"]


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("127.0.0.1", id="loopback"),
        pytest.param("127.8.9.10", id="all-of-127/8"),
        pytest.param("::1", id="ipv6-loopback"),
    ],
)
def test_allowed_addresses_see_everything(client: FlaskClient, address: str) -> None:
    status, health, cache = get(client, "/-/health", address)
    assert (status, cache) == (200, "no-store")
    assert isinstance(health, dict) and {"version", "rules", "map", "pid"} <= set(health)
    status, metrics, cache = get(client, "/-/metrics", address)
    assert (status, cache) == (200, "no-store")
    assert isinstance(metrics, str) and "gateway_" in metrics


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("203.0.113.7", id="the-internet"),
        pytest.param("10.1.2.3", id="a-private-address-is-not-loopback"),
        pytest.param("::ffff:8.8.8.8", id="mapped-ipv6"),
        pytest.param("", id="no-address"),
        pytest.param("not-an-address", id="garbage"),
    ],
)
def test_others_get_a_bare_status_and_no_metrics(client: FlaskClient, address: str) -> None:
    status, health, cache = get(client, "/-/health", address)
    assert (status, health, cache) == (200, {"status": "ok"}, "no-store")
    status, metrics, cache = get(client, "/-/metrics", address)
    assert (status, cache) == (404, "no-store")
    assert "gateway_" not in str(metrics)


def test_the_allow_list_is_configurable() -> None:
    app = create_app(
        {"TESTING": True, "MAP_PATH": str(BUNDLED_MAP), "SERVICE_ALLOW": "10.0.0.0/8, 192.0.2.1"}
    )
    client = app.test_client()
    assert get(client, "/-/metrics", "10.200.0.1")[0] == 200
    assert get(client, "/-/metrics", "192.0.2.1")[0] == 200
    assert get(client, "/-/metrics", "127.0.0.1")[0] == 404, "loopback is no longer listed"


@pytest.mark.parametrize("text", ["10.0.0.0/33", "example.com", "10.0.0.1,,nope"])
def test_a_bad_allow_list_is_refused_at_start(text: str) -> None:
    with pytest.raises(ValueError, match=r"GATEWAY_SERVICE_ALLOW: '.*' is not an address or CIDR"):
        web.parse_allow(text)
