"""The ``gateway`` command line for the people who edit the map: thin click wrappers.

Each command parses its options and calls a plain function (in ``gateway.ops``
or ``gateway.export``) that takes and returns values, so it can be tested
without click. Every command reads the map with the same loader, canonicaliser
and matcher as the server.
"""

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Check, explain, import, replay and export the redirect map."""


@main.group()
def export() -> None:
    """Compile the map for engines that serve at scale (nginx, CDNs, spreadsheets)."""
