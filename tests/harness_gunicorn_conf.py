"""The project's gunicorn.conf.py without its map check, for the harness's own tests.

The harness is tested with a trivial app, so it must not depend on the gateway
package loading a map; every other setting is the project's own.
"""

from __future__ import annotations

import runpy
from pathlib import Path

_settings = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update(
    {k: v for k, v in _settings.items() if not k.startswith("_") and k != "on_starting"}
)
