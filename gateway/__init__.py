"""legacy-gateway: keeps khabarovskadm.ru's links alive by redirecting them to khv27.ru.

``create_app`` assembles the pieces: settings, the map, the web edge.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response
from flask.typing import ResponseReturnValue

from gateway import web
from gateway.maps import MapHolder

DEFAULT_MAP = "redirects.yaml"


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
    maps = MapHolder(app.config["MAP_PATH"])
    web.init_app(app, maps)
    return app
