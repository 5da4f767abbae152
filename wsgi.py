"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`.

Owns nothing but the one application object; settings come from the environment
(GATEWAY_MAP) through gateway.create_app.
"""

from __future__ import annotations

from gateway import create_app

app = create_app()
