"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`.

Owns nothing but the one application object; settings come from the environment
(GATEWAY_MAP) through gateway.app.create_app.
"""

from __future__ import annotations

from gateway.app import create_app

app = create_app()
