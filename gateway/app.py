"""The app factory: ``create_app`` assembles settings, the served map, metrics and the web edge."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response
from flask.typing import ResponseReturnValue

from gateway import DEFAULT_MAP, accesslog, web
from gateway.maps import RELOAD_INTERVAL, MapHolder, default_state_dir
from gateway.metrics import Metrics


class GatewayFlask(Flask):
    """Flask with one view for every path: answers are decided by the map, not by routing."""

    def dispatch_request(self) -> ResponseReturnValue:
        """Render the decided outcome; Flask's URL routing plays no part."""
        answer: Callable[[], Response] = self.extensions["gateway.answer"]
        return answer()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the gateway app serving the map at MAP_PATH (env GATEWAY_MAP, else redirects.yaml)."""
    app = GatewayFlask(__name__)
    app.config.from_mapping(MAP_PATH=os.environ.get("GATEWAY_MAP", DEFAULT_MAP))
    if test_config is not None:
        app.config.from_mapping(test_config)
    _live_settings(app.config)
    accesslog.configure(app.config["ACCESS_LOG"])  # first: the map's load is logged
    metrics = Metrics()
    maps = MapHolder(
        app.config["MAP_PATH"],
        reload_interval=app.config["MAP_RELOAD_INTERVAL"],
        state_dir=app.config["STATE_DIR"],
        listener=metrics,
        compiled=app.config["COMPILED"],
    )
    web.init_app(app, maps, accesslog.RequestRecorder(metrics), app.config["SERVICE_ALLOW"])
    app.extensions["gateway.endpoints"]["metrics"] = metrics.endpoint
    return app


def _live_settings(config: dict[str, Any]) -> None:
    """Fill in reload, last-known-good and access-log settings: from the env, or off in tests.

    MAP_RELOAD_INTERVAL (env GATEWAY_RELOAD_INTERVAL, seconds, 0 = no reload; default 2),
    STATE_DIR (env GATEWAY_STATE_DIR, "off" = no last-known-good copy; default a private
    folder under the temp directory), ACCESS_LOG (env GATEWAY_ACCESS_LOG: "-" = stdout,
    a file path, or "off"), COMPILED (env GATEWAY_COMPILED, "on" or "off": serve the map
    from a table compiled once per version in STATE_DIR, not loaded by each worker;
    default on), SERVICE_ALLOW (env GATEWAY_SERVICE_ALLOW: the addresses, as
    comma-separated CIDRs, that see /-/health in full and /-/metrics; default loopback).
    TESTING apps default to no reload, no copy and no log.
    """
    testing = bool(config.get("TESTING"))
    env = os.environ.get
    if "MAP_RELOAD_INTERVAL" not in config:
        raw = "0" if testing else env("GATEWAY_RELOAD_INTERVAL", str(RELOAD_INTERVAL))
        try:
            config["MAP_RELOAD_INTERVAL"] = float(raw)
        except ValueError:
            raise ValueError(f"GATEWAY_RELOAD_INTERVAL must be seconds, not {raw!r}") from None
    if "STATE_DIR" not in config:
        config["STATE_DIR"] = None if testing else env("GATEWAY_STATE_DIR") or default_state_dir()
    if str(config["STATE_DIR"]).lower() == "off":
        config["STATE_DIR"] = None
    if "COMPILED" not in config:
        raw = "off" if testing else env("GATEWAY_COMPILED", "on")
        if raw.lower() not in ("on", "off"):
            raise ValueError(f"GATEWAY_COMPILED must be on or off, not {raw!r}")
        config["COMPILED"] = raw.lower() == "on"
    if "ACCESS_LOG" not in config:
        config["ACCESS_LOG"] = "off" if testing else env("GATEWAY_ACCESS_LOG", "-")
    if "SERVICE_ALLOW" not in config:
        config["SERVICE_ALLOW"] = env("GATEWAY_SERVICE_ALLOW", web.SERVICE_ALLOW_DEFAULT)
    config["SERVICE_ALLOW"] = web.parse_allow(config["SERVICE_ALLOW"])
