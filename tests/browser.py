"""Debian's Chromium for browser tests: found, or installed with apt-get (CI runs as root).

Playwright (the Python package, a dev extra) drives it through `executable_path`;
`playwright install` is never used, since it downloads a browser of its own. Every
host name resolves to 127.0.0.1 (`--host-resolver-rules`), so a page can be asked
for by its real Host and nothing can leave the loopback interface; the other flags
turn off what Chromium would fetch by itself (updates, sync, QUIC, first-run pages).
"""

from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM = "/usr/bin/chromium"
INSTALL_TIMEOUT = 400  # seconds, per apt-get step

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
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install chromium"
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine (not Debian or Ubuntu)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "chromium"],
    ):
        try:
            done = subprocess.run(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(cmd)}` failed: {exc}"
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-5:])
            return f"`{' '.join(cmd)}` exited with {done.returncode}:\n{tail}"
    return ""


def find_or_install_chromium() -> tuple[str | None, str]:
    """(path to chromium, '') or (None, why it is missing and could not be installed)."""
    if _usable():
        return CHROMIUM, ""
    why = install_chromium()
    if _usable():
        return CHROMIUM, ""
    return None, why or f"apt-get install chromium left no {CHROMIUM}"
