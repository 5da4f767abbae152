"""The ``gateway`` command line for the people who edit the map: thin click wrappers.

Each command parses its options and calls a plain function (in ``gateway.ops``
or ``gateway.export``) that takes and returns values, so it can be tested
without click. Every command reads the map with the same loader, canonicaliser
and matcher as the server.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from gateway import DEFAULT_MAP

if TYPE_CHECKING:
    from gateway.export import ExportReport
    from gateway.mapfile import RedirectMap

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


# --- export (issue 7): the map compiled for nginx, Cloudflare and spreadsheets -----------


def _export_write(text: str, output: str | None) -> None:
    """Write an export to FILE (whole, by rename: a reader never sees half) or stdout."""
    if output is None:
        click.echo(text, nl=False)
        return
    partial = f"{output}.partial"
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    os.replace(partial, output)


def _export_map(map_path: str) -> RedirectMap:
    """Load the map for an export, or print its problems and exit with status 1."""
    from gateway.mapfile import MapError, load_map

    try:
        return load_map(map_path)
    except MapError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read {map_path}: {exc.strerror}") from None


def _export_report(report: ExportReport, details: bool) -> None:
    for line in report.summary():
        click.echo(line, err=True)
    if details:
        for line in report.details():
            click.echo(line, err=True)


OUTPUT_OPTION = click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout."
)


@export.command("nginx")
@MAP_OPTION
@click.option("--listen", required=True, help="What the server listens on: PORT or HOST:PORT.")
@click.option("--upstream", required=True, help="The gateway behind nginx: HOST:PORT.")
@OUTPUT_OPTION
@click.option("-v", "--verbose", is_flag=True, help="List every rule handed on, and why.")
def export_nginx_command(
    map_path: str, listen: str, upstream: str, output: str | None, verbose: bool
) -> None:
    """Write an nginx include (maps + one server) that answers what it can, proxies the rest."""
    from gateway.export import ExportError, export_nginx

    try:
        text, report = export_nginx(_export_map(map_path), listen=listen, upstream=upstream)
    except ExportError as exc:
        raise click.BadParameter(str(exc)) from None
    _export_write(text, output)
    _export_report(report, verbose)


@export.command("cloudflare")
@MAP_OPTION
@OUTPUT_OPTION
def export_cloudflare_command(map_path: str, output: str | None) -> None:
    """Write a Cloudflare Bulk Redirects CSV; list on stderr the rules it cannot carry."""
    from gateway.export import export_cloudflare

    text, report = export_cloudflare(_export_map(map_path))
    _export_write(text, output)
    _export_report(report, True)


@export.command("csv")
@MAP_OPTION
@OUTPUT_OPTION
def export_csv_command(map_path: str, output: str | None) -> None:
    """Write the flattened map as CSV, one rule a row (for spreadsheets and audits)."""
    from gateway.export import export_csv

    _export_write(export_csv(_export_map(map_path)), output)
