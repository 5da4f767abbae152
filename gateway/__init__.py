"""legacy-gateway: keeps khabarovskadm.ru's links alive by redirecting them to khv27.ru.

The package imports nothing: the pure core (``canonical``, ``rules``, ``mapfile``,
``matcher``, ``outcomes``, ``responses``, ``decide``, ``banner``) loads without Flask,
click or prometheus_client. The app factory is ``gateway.app.create_app``.
"""

DEFAULT_MAP = "redirects.yaml"
