"""``gateway export``: thin click wrappers around gateway.ops.export and nginx_conf."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from gateway.cli_options import MAP_OPTION

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    from gateway.mapfile import RedirectMap
    from gateway.ops.export import ExportReport

    F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def export() -> None:
    """Compile the map for engines that serve at scale (nginx, CDNs, spreadsheets)."""


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


def _service_allow(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """Check each --service-allow CIDR now: a bad one is a usage error (exit 2)."""
    from gateway.ops.export import ExportError
    from gateway.ops.nginx_conf import service_network

    try:
        return tuple(service_network(value) for value in values)
    except ExportError as exc:
        raise click.BadParameter(str(exc).partition(": ")[2], ctx, param) from None


def _front_int(flag: str, default: int, low: int, text: str) -> Callable[[F], F]:
    high = 300 if flag == "--client-timeout" else 250_000
    kind, helps = click.IntRange(low, high), f"--standalone: {text}"
    return click.option(flag, type=kind, default=default, show_default=True, help=helps)


@export.command("nginx")
@MAP_OPTION
@click.option(
    "--listen",
    required=True,
    multiple=True,
    help="What the server listens on: PORT or HOST:PORT, with ' ssl' for TLS; repeatable.",
)
@click.option("--upstream", required=True, help="The gateway behind nginx: HOST:PORT.")
@click.option(
    "--standalone",
    is_flag=True,
    help="Write a whole nginx.conf for `nginx -p DIR -c FILE` (a hardened front), "
    "not an include for your own http { }.",
)
@_front_int("--max-connections", 4096, 16, "client connections it is sized to hold at once.")
@_front_int("--per-address", 64, 1, "requests in progress per client address; 429 past that.")
@_front_int("--client-timeout", 10, 1, "seconds for the header, between body reads, writes.")
@click.option(
    "--service-allow",
    multiple=True,
    metavar="CIDR",
    callback=_service_allow,
    help="--standalone: who may read /-/ (health, metrics); repeatable. "
    "Default 127.0.0.1/32 and ::1/128; others get 404.",
)
@OUTPUT_OPTION
@click.option("-v", "--verbose", is_flag=True, help="List every rule handed on, and why.")
@click.pass_context
def export_nginx_command(
    ctx: click.Context,
    /,
    map_path: str,
    listen: tuple[str, ...],
    upstream: str,
    standalone: bool,
    output: str | None,
    verbose: bool,
    **front: Any,
) -> None:
    """Write an nginx include (maps + one server) that answers what it can, proxies the rest.

    With --standalone, a whole nginx.conf around the same server: client timeouts,
    connection sizing, a per-address limit, /-/ for an allow-list only.
    """
    from click.core import ParameterSource

    from gateway.ops.export import ExportError, export_nginx
    from gateway.ops.nginx_conf import DEFAULT_SERVICE_ALLOW, Front, export_standalone

    given = [n for n in front if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE]
    if given and not standalone:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(f"{flags}: only with --standalone")
    front["service_allow"] = front["service_allow"] or DEFAULT_SERVICE_ALLOW
    try:
        redirect_map = _export_map(map_path)
        if standalone:
            options = Front(**front)
            text, report = export_standalone(
                redirect_map, listen=listen, upstream=upstream, front=options
            )
        else:
            text, report = export_nginx(redirect_map, listen=listen, upstream=upstream)
    except ExportError as exc:
        raise click.BadParameter(str(exc)) from None
    _export_write(text, output)
    _export_report(report, verbose)


@export.command("cloudflare")
@MAP_OPTION
@OUTPUT_OPTION
def export_cloudflare_command(map_path: str, output: str | None) -> None:
    """Write a Cloudflare Bulk Redirects CSV; list on stderr the rules it cannot carry."""
    from gateway.ops.export import export_cloudflare

    text, report = export_cloudflare(_export_map(map_path))
    _export_write(text, output)
    _export_report(report, True)


@export.command("csv")
@MAP_OPTION
@OUTPUT_OPTION
def export_csv_command(map_path: str, output: str | None) -> None:
    """Write the flattened map as CSV, one rule a row (for spreadsheets and audits)."""
    from gateway.ops.export_csv import export_csv

    _export_write(export_csv(_export_map(map_path)), output)
