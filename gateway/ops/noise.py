"""What coverage skips when no rule answers it: page furniture and scanner noise.

Owns the lists (file extensions and names of css, js, images, fonts, favicons; path
segments and extensions scanners probe for, such as ``wp-admin``, ``phpmyadmin``,
``.env``) and ``skip_reason``, which names the list a path is on.
"""

from __future__ import annotations

from gateway.responses import FURNITURE  # the same words for the gateway's own files

FURNITURE_EXTENSIONS = frozenset(
    [
        "css",
        "js",
        "mjs",
        "map",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "bmp",
        "ico",
        "svg",
        "webp",
        "avif",
        "tif",
        "tiff",
        "woff",
        "woff2",
        "ttf",
        "otf",
        "eot",
    ]
)
FURNITURE_NAMES = frozenset(
    {"favicon.ico", "robots.txt", "sitemap.xml", "browserconfig.xml", "manifest.json"}
)
NOISE_SEGMENTS = frozenset(
    {
        "wp-admin",
        "wp-login.php",
        "wp-content",
        "wp-includes",
        "wp-json",
        "wp-config.php",
        "wlwmanifest.xml",
        "xmlrpc.php",
        "phpmyadmin",
        "pma",
        "myadmin",
        "mysqladmin",
        "phpinfo.php",
        ".env",
        ".git",
        ".svn",
        ".hg",
        ".aws",
        ".ds_store",
        ".vscode",
        ".idea",
        "cgi-bin",
        "boaform",
        "hnap1",
        "actuator",
        "server-status",
        "autodiscover",
        "owa",
        "vendor",
        "_ignition",
        "telescope",
        "eval-stdin.php",
        "shell.php",
        ".well-known",
    }
)
NOISE_EXTENSIONS = frozenset({"sql", "bak", "old", "swp", "asp", "aspx", "jsp", "cgi", "env"})


def skip_reason(path: str) -> str:
    """Say why an unanswered canonical path is page furniture or scanner noise, or ''."""
    segments = path.lower().split("/")
    last = segments[-1]
    extension = last.rpartition(".")[2] if "." in last else ""
    if last in FURNITURE_NAMES or extension in FURNITURE_EXTENSIONS:
        return FURNITURE
    if last.startswith("apple-touch-icon"):
        return FURNITURE
    if (
        any(s in NOISE_SEGMENTS or s.startswith("phpmyadmin") for s in segments)
        or extension in NOISE_EXTENSIONS
    ):
        return "scanner noise (wp-admin, phpmyadmin, .env, ...)"
    return ""
