"""Debian's Chromium for browser tests: found, or installed with apt-get (CI runs as root).

Playwright (the Python package, a dev extra) drives it through `executable_path`;
`playwright install` is never used, since it downloads a browser of its own. Every
host name resolves to 127.0.0.1 (`--host-resolver-rules`), so a page can be asked
for by its real Host and nothing can leave the loopback interface; the other flags
turn off what Chromium would fetch by itself (updates, sync, QUIC, first-run pages).
"""

from __future__ import annotations

import os

from tests.support import apt_install

CHROMIUM = "/usr/bin/chromium"

LAUNCH_ARGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # a proxy from the environment would take traffic off loopback
    "--host-resolver-rules=MAP * 127.0.0.1",
)


def _usable() -> bool:
    return os.access(CHROMIUM, os.X_OK)


def install_chromium() -> str:
    """Install Debian's chromium; return why it could not be, or '' on success."""
    return apt_install("chromium")


def find_or_install_chromium() -> tuple[str | None, str]:
    """(path to chromium, '') or (None, why it is missing and could not be installed)."""
    if _usable():
        return CHROMIUM, ""
    why = install_chromium()
    if _usable():
        return CHROMIUM, ""
    return None, why or f"apt-get install chromium left no {CHROMIUM}"
