"""The ``gateway`` command line for the people who edit the map: thin click wrappers.

Each command parses its options and calls a plain function (in ``gateway.ops``;
the export commands are in ``gateway.cli_export``) that takes and returns values, so
it can be tested without click. Every command reads the map with the same loader, canonicaliser
and matcher as the server.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from gateway.cli_export import export
from gateway.cli_options import MAP_OPTION

if TYPE_CHECKING:
    from gateway.mapfile import RedirectMap


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Check, explain, import, replay and export the redirect map."""


main.add_command(export)


# --- ops (issue 3): check, explain, import, coverage --------------------------------------
# Thin wrappers: the work is in gateway.ops.*, imported inside each command to keep
# `gateway --help` fast.


def _ops_map(map_path: str) -> RedirectMap:
    """Load the map, or print its problems (FILE:LINE: error: ...) on stderr and exit 1."""
    from gateway.mapfile import MapError, load_map

    try:
        return load_map(map_path)
    except MapError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{map_path}: does not load; run `gateway check` for details", err=True)
        raise SystemExit(1) from None


def _served_host(redirect_map: RedirectMap, host: str | None) -> str | None:
    """Return --host as a served host, or stop with a usage error naming the hosts."""
    if host is None:
        return None
    served = redirect_map.host_of(host)
    if served is None:
        names = ", ".join(sorted(set(redirect_map.hosts.values())))
        raise click.BadParameter(f"{host!r} is not under hosts: ({names})", param_hint="--host")
    return served


def _echo_json(value: object) -> None:
    import json

    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _progress_wanted() -> bool:
    return sys.stderr.isatty()


HOST_OPTION = click.option(
    "--host",
    metavar="HOST",
    help="The host of URLs given as a path (default: the first host under hosts:).",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")


@main.command("check")
@MAP_OPTION
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@JSON_OPTION
def check_command(map_path: str, strict: bool, as_json: bool) -> None:
    """Check the map: every problem as FILE:LINE, then a one-line summary.

    The map's `nginx -t`: the loader's errors, then warnings about rules that load
    but are wrong (a pattern an earlier rule always answers first, an exact rule a
    pattern answers the same way, rules that differ only by encoding or case, a
    target on a legacy host), and an error for each `examples:` URL that its rule
    does not answer.

    Exit status: 0 fine; 1 errors (or warnings, with --strict); 2 bad usage.

    \b
    Example:
      $ gateway check --map redirects.yaml
      redirects.yaml:177: error: example '/press-center/photo/15/' is answered
      by redirects.yaml:173 (/press-center/<path:rest>)
      redirects.yaml:177: warning: pattern '/press-center/photo/<int:id>' can
      never answer: the earlier rule at redirects.yaml:173 (...) answers ...
      redirects.yaml: 18 rules (10 exact, 2 query, 2 pattern, 4 gone), 4 hosts
      (+1 alias): 1 error, 1 warning
      $ gateway check --strict --json > check.json   # in CI
    """
    from gateway.ops.check import check, summary_line, to_json

    report = check(map_path)
    if as_json:
        _echo_json(to_json(report, strict))
    else:
        for problem in report.problems:
            click.echo(str(problem))
        click.echo(summary_line(report))
    raise SystemExit(1 if report.failed(strict) else 0)


@main.command("explain")
@MAP_OPTION
@click.argument("urls", nargs=-1, required=True, metavar="URL...")
@HOST_OPTION
@JSON_OPTION
def explain_command(map_path: str, urls: tuple[str, ...], host: str | None, as_json: bool) -> None:
    """Show which rule answers each URL, and why, step by step.

    A URL is a full URL, host/path, or a path (taken on --host). For each: the
    host, path and query in canonical form, the rule that answers (FILE:LINE,
    from, to) and the response (status and Location, or the banner and why),
    decided by the same code as the server.

    Exit status: 0 explained (whatever the answer); 1 the map does not load.

    \b
    Example:
      $ gateway explain '/press-center/news/detail.php?ID=12345&utm_source=vk'
      $ gateway explain --host int.khabarovskadm.ru /en/about_city/friend_cities/
      $ gateway explain --json https://www.khabarovskadm.ru/upload/a.pdf
    """
    from gateway.ops.explain import explain, render, to_json

    redirect_map = _ops_map(map_path)
    explanations = [explain(redirect_map, url, host) for url in urls]
    if as_json:
        _echo_json([to_json(e) for e in explanations])
        return
    click.echo("\n\n".join(render(e) for e in explanations))


@main.command("import")
@MAP_OPTION
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False), metavar="FILE.csv")
@click.option(
    "--into",
    default="redirects.d/imported.csv",
    show_default=True,
    help="The table to write, relative to the map's folder.",
)
@click.option(
    "--host",
    metavar="HOST",
    help="The host of rows whose old URL is a path (default: every host, like /path in the map).",
)
@click.option("--skip-bad", is_flag=True, help="Write the good rows even when some are bad.")
@click.option("--dry-run", is_flag=True, help="Check the rows; write nothing.")
def import_command(
    map_path: str,
    csv_file: str,
    into: str,
    host: str | None,
    skip_bad: bool,
    dry_run: bool,
) -> None:
    """Import a spreadsheet of old -> new URLs as a rule table the map includes.

    Columns old_url,new_url[,status][,note], a header row or none, comma or
    semicolon, UTF-8 (BOM or not) or windows-1251. A blank new_url or status 410
    means "no equivalent" (a 410 banner). Each row is canonicalised and compiled
    with the map's own rule compiler (declared hosts, allowed targets); among rows
    for the same rule the first wins and each later conflicting row is an error;
    rows that the map already has, or already answers the same way, are dropped.

    Nothing is written while there are errors, unless --skip-bad (the bad rows are
    listed). The map file itself is never edited: if its include: does not name
    the table yet, the line to add is printed. If it does, the map is reloaded and
    the old table put back should the new one break it.

    Exit status: 0 written (or, with --dry-run, no errors); 1 errors, nothing
    written; 2 bad usage.

    \b
    Example:
      $ gateway import old-site.csv --into redirects.d/news.csv
      $ gateway import --host edu.khabarovskadm.ru --skip-bad edu.csv
    """
    from gateway.ops.importer import ImportFailed, plan_import, write_table

    redirect_map = _ops_map(map_path)
    _served_host(redirect_map, host)
    try:
        if os.path.getsize(csv_file) > 1 << 18 and _progress_wanted():
            with open(csv_file, "rb") as counted:
                rows = sum(1 for _ in counted)
            with click.progressbar(length=rows, label="checking rows", file=sys.stderr) as bar:
                plan = plan_import(
                    redirect_map, csv_file, into=into, host=host, progress=bar.update
                )
        else:
            plan = plan_import(redirect_map, csv_file, into=into, host=host)
    except ImportFailed as exc:
        raise click.ClickException(str(exc)) from None
    header = "with a header row" if plan.header else "no header row"
    delimiter = {",": "comma", ";": "semicolon", "\t": "tab"}[plan.delimiter]
    click.echo(f"{csv_file}: {plan.rows_read} rows ({plan.encoding}, {delimiter}, {header})")
    for problem in plan.problems:
        click.echo(str(problem))
    errors, bad = len(plan.errors), plan.bad_lines
    if errors:
        click.echo(f"{errors} error{'s' * (errors != 1)} in {len(bad)} rows: lines {_lines(bad)}")
    if dry_run or (errors and not skip_bad):
        verdict = "dry run" if dry_run else "nothing written"
        hint = (
            "" if dry_run else f" (fix them, or --skip-bad to write the {len(plan.rows)} good rows)"
        )
        click.echo(f"{verdict}: {len(plan.rows)} rules would go to {plan.into_shown}{hint}")
        raise SystemExit(1 if errors else 0)
    if not plan.rows:
        click.echo("nothing written: no good rows")
        raise SystemExit(1)
    result = write_table(redirect_map, plan)
    if result.problems:
        for problem in result.problems:
            click.echo(str(problem))
        click.echo(f"{result.shown} not written: the map would not load with it (undone)")
        raise SystemExit(1)
    skipped = f"; skipped the bad rows: lines {_lines(bad)}" if bad else ""
    click.echo(f"wrote {result.rows} rules to {result.shown}{skipped}")
    if result.included:
        click.echo(f"{redirect_map.path} includes it and loads: {result.map_rules} rules")
    else:
        relative = os.path.relpath(result.path, os.path.dirname(redirect_map.path) or ".")
        click.echo(
            f"{redirect_map.path} does not include it yet: add it to include:, e.g.\n"
            f"  include: [{relative}]"
        )


def _lines(lines: tuple[int, ...]) -> str:
    shown = ", ".join(map(str, lines[:20]))
    return shown + (f", ... ({len(lines)} in all)" if len(lines) > 20 else "")


@main.command("coverage")
@MAP_OPTION
@click.argument(
    "logs",
    nargs=-1,
    metavar="[LOG...]",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@HOST_OPTION
@click.option(
    "--archive",
    "with_archive",
    is_flag=True,
    help="Also replay every URL the map's web archive holds: the whole old site's inventory.",
)
@click.option("--top", default=20, show_default=True, help="How many draft rules to show.")
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Forked processes that decide distinct URLs, for very large logs on idle cores.",
)
@JSON_OPTION
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False),
    help="Also write a self-contained HTML report here.",
)
def coverage_command(
    map_path: str,
    logs: tuple[str, ...],
    host: str | None,
    with_archive: bool,
    top: int,
    jobs: int,
    as_json: bool,
    html_file: str | None,
) -> None:
    """Replay access logs through the map: what redirects, what is gone, what falls through.

    Reads combined or common log format (a leading virtual host too), the
    gateway's JSON access-log lines, or plain lists of URLs; .gz files; - for
    stdin. Requests without a host are taken on --host. Page furniture and scanner
    noise that no rule answers are skipped and counted. The unmapped URLs with the
    most hits are grouped into draft rules (numbers collapsed into <int:id>).

    Exit status: 0 done; 1 the map does not load; 2 bad usage.

    \b
    Example:
      $ gateway coverage /var/log/nginx/access.log*.gz --top 30
      $ zcat old-*.log.gz | gateway coverage - --json > coverage.json
      $ gateway coverage --html coverage.html access.log
      $ gateway coverage --archive          # what each captured URL of the old site answers
    """
    from gateway.ops.coverage import PARALLEL_MIN, read_logs, render, to_json
    from gateway.ops.coverage_html import render_html

    if not logs and not with_archive:
        raise click.UsageError("give a LOG, or --archive")
    redirect_map = _ops_map(map_path)
    _served_host(redirect_map, host)
    size = sum(os.path.getsize(name) for name in logs if name != "-")
    if _progress_wanted() and size > 1 << 24:
        with click.progressbar(length=size, label="reading ", file=sys.stderr) as bar:
            replay = read_logs(
                redirect_map, logs, host=host, progress=bar.update, archive=with_archive
            )
    else:
        replay = read_logs(redirect_map, logs, host=host, archive=with_archive)
    if _progress_wanted() and len(replay.hits) >= PARALLEL_MIN:
        with click.progressbar(length=len(replay.hits), label="deciding", file=sys.stderr) as bar:
            replay.decide(jobs=jobs, progress=bar.update)
    else:
        replay.decide(jobs=jobs)
    report = replay.report(top)
    if html_file is not None:
        with open(html_file, "w", encoding="utf-8") as out:
            out.write(render_html(report, redirect_map.path, list(logs)))
        click.echo(f"wrote {html_file}", err=True)
    if as_json:
        _echo_json(to_json(report))
    else:
        click.echo(render(report, top))
