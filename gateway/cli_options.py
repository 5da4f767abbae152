"""Options every ``gateway`` command shares (the map to read)."""

from __future__ import annotations

import os

import click

from gateway import DEFAULT_MAP

MAP_OPTION = click.option(
    "--map",
    "map_path",
    default=lambda: os.environ.get("GATEWAY_MAP", DEFAULT_MAP),
    show_default="$GATEWAY_MAP, else ./redirects.yaml",
    type=click.Path(dir_okay=False),
    help="The map file to read.",
)
