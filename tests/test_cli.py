"""Tests of the `gateway` command line (issue 3): each subcommand through click's runner,
and once as a real process (the installed console script, and `python -m gateway`).

The work behind each command is tested in tests/test_ops_*.py; here: arguments, output
streams, exit codes (0 fine, 1 problems, 2 bad usage) and that --help shows an example.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.support import BUNDLED_MAP, WriteMap
from tests.test_ops_coverage import LOG
from tests.test_ops_import import EXPECTED_TABLE, MAP, ROWS

CONSOLE_SCRIPT = Path(sys.executable).parent / "gateway"
BROKEN_MAP = "version: 1\nsite:\n  new_site: https://khv27.ru\nhosts:\n  a.example: {}\n"


def run(*args: str, input: bytes | str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def process(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway"] if module else [str(CONSOLE_SCRIPT)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", ["check", "explain", "import", "coverage"])
def test_help_shows_an_example(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0
    assert "Example:" in out and f"$ gateway {command}" in out and "--map FILE" in out


# --- check -------------------------------------------------------------------------------


def test_check_bundled_map_exits_0() -> None:
    code, out, _ = run("check", "--map", str(BUNDLED_MAP))
    assert code == 0
    assert out == (
        f"{BUNDLED_MAP}: 20 rules (11 exact, 2 query, 3 pattern, 4 gone),"
        " 18 hosts (+1 alias): 0 errors, 0 warnings\n"
    )


def test_check_map_option_defaults_to_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MAP", str(BUNDLED_MAP))
    code, out, _ = run("check")
    assert code == 0 and out.startswith(f"{BUNDLED_MAP}: 20 rules")


def test_check_a_map_that_does_not_load_exits_1(write_map: WriteMap) -> None:
    path = write_map(BROKEN_MAP)
    code, out, _ = run("check", "--map", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"{path}:1: error: 'archive:' is required: a mapping with notice.ru",
        f"{path}: does not load: 1 error, 0 warnings",
    ]


@pytest.mark.parametrize(
    ("strict", "code"),
    [pytest.param(False, 0, id="warning-passes"), pytest.param(True, 1, id="strict")],
)
def test_check_warnings_fail_only_with_strict(write_map: WriteMap, strict: bool, code: int) -> None:
    path = write_map(
        MAP.replace("include: [redirects.d/*.csv]\n", "")
        + "  - from: /x/<path:a>\n    status: 410\n  - from: /x/y/<b>\n    status: 410\n"
    )
    args = ["check", "--map", str(path), *(["--strict"] if strict else [])]
    exit_code, out, _ = run(*args)
    assert exit_code == code
    assert out.splitlines()[0].startswith(
        f"{path}:22: warning: pattern '/x/y/<b>' can never answer"
    )


def test_check_json(write_map: WriteMap) -> None:
    path = write_map(BROKEN_MAP)
    code, out, _ = run("check", "--map", str(path), "--json")
    data = json.loads(out)
    assert code == 1
    assert (data["ok"], data["loaded"], data["errors"]) == (False, False, 1)
    assert data["problems"][0]["line"] == 1


# --- explain -----------------------------------------------------------------------------


def test_explain_several_urls_and_json() -> None:
    code, out, _ = run(
        "explain",
        "--map",
        str(BUNDLED_MAP),
        "--json",
        "/contacts/",
        "/nowhere",
        "--host",
        "edu.khabarovskadm.ru",
    )
    assert code == 0
    data = json.loads(out)
    assert [d["response"]["status"] for d in data] == [301, 404]
    assert [d["host"]["served"] for d in data] == ["edu.khabarovskadm.ru"] * 2


def test_explain_text_separates_urls() -> None:
    code, out, _ = run("explain", "--map", str(BUNDLED_MAP), "/contacts/", "/nowhere")
    assert code == 0
    first, second = out.split("\n\n")
    assert first.startswith("/contacts/\n") and "Location: https://khv27.ru/contacts/" in first
    assert second.startswith("/nowhere\n") and "rule       none matches" in second


def test_explain_with_a_broken_map_exits_1(write_map: WriteMap) -> None:
    path = write_map(BROKEN_MAP)
    code, out, err = run("explain", "--map", str(path), "/")
    assert (code, out) == (1, "")
    assert err.startswith(f"{path}:1: error: ")


def test_explain_needs_a_url() -> None:
    assert run("explain", "--map", str(BUNDLED_MAP))[0] == 2


# --- import ------------------------------------------------------------------------------


@pytest.fixture
def import_case(write_map: WriteMap, tmp_path: Path) -> tuple[Path, Path]:
    csv_file = tmp_path / "old-site.csv"
    csv_file.write_bytes(("\r\n".join(ROWS) + "\r\n").encode("cp1251"))
    return write_map(MAP), csv_file


def test_import_with_errors_writes_nothing(import_case: tuple[Path, Path]) -> None:
    map_file, csv_file = import_case
    code, out, _ = run("import", "--map", str(map_file), str(csv_file))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"{csv_file}: 12 rows (windows-1251, semicolon, with a header row)"
    assert lines[-2] == "5 errors in 5 rows: lines 4, 5, 10, 11, 13"
    assert lines[-1] == (
        "nothing written: 5 rules would go to"
        f" {map_file.parent}/redirects.d/imported.csv (fix them, or --skip-bad to write the"
        " 5 good rows)"
    )
    assert not (map_file.parent / "redirects.d").exists()


def test_import_skip_bad_writes_and_reloads(import_case: tuple[Path, Path]) -> None:
    map_file, csv_file = import_case
    code, out, _ = run("import", "--map", str(map_file), "--skip-bad", str(csv_file))
    assert code == 0
    table = map_file.parent / "redirects.d" / "imported.csv"
    assert out.splitlines()[-2:] == [
        f"wrote 5 rules to {table}; skipped the bad rows: lines 4, 5, 10, 11, 13",
        f"{map_file} includes it and loads: 9 rules",
    ]
    assert table.read_text(encoding="utf-8") == EXPECTED_TABLE


def test_import_tells_how_to_include_the_table(import_case: tuple[Path, Path]) -> None:
    map_file, csv_file = import_case
    args = ["import", "--map", str(map_file), "--skip-bad", "--into", "new/t.csv", str(csv_file)]
    code, out, _ = run(*args)
    assert code == 0
    assert out.splitlines()[-2:] == [
        f"{map_file} does not include it yet: add it to include:, e.g.",
        "  include: [new/t.csv]",
    ]


def test_import_dry_run_and_bad_host(import_case: tuple[Path, Path]) -> None:
    map_file, csv_file = import_case
    assert run("import", "--map", str(map_file), "--dry-run", str(csv_file))[0] == 1
    assert not (map_file.parent / "redirects.d").exists()
    code, _, err = run("import", "--map", str(map_file), "--host", "evil.example", str(csv_file))
    assert code == 2 and "'evil.example' is not under hosts:" in err


# --- coverage ------------------------------------------------------------------------------


def test_coverage_from_stdin_as_json() -> None:
    code, out, _ = run("coverage", "--map", str(BUNDLED_MAP), "--json", "-", input=LOG)
    assert code == 0
    data = json.loads(out)
    assert data["requests"] == {
        "redirect": 6,
        "gone": 2,
        "archived": 0,
        "unmapped": 5,
        "skipped": 6,
    }


def test_coverage_html_and_top(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(LOG)
    html = tmp_path / "report.html"
    args = ["coverage", "--map", str(BUNDLED_MAP), "--top", "1", "--html", str(html), str(log)]
    code, out, err = run(*args)
    assert code == 0
    assert out.count("  - from: ") == 1
    assert err == f"wrote {html}\n"
    assert html.read_text(encoding="utf-8").startswith("<!doctype html>")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--host", "evil.example", "-"], id="host-not-served"),
        pytest.param(["/no/such/log"], id="missing-log"),
        pytest.param([], id="no-log"),
    ],
)
def test_coverage_bad_usage_exits_2(args: list[str]) -> None:
    assert run("coverage", "--map", str(BUNDLED_MAP), *args, input=b"")[0] == 2


# --- as real processes -----------------------------------------------------------------------


def test_console_script_check_and_explain(write_map: WriteMap) -> None:
    assert CONSOLE_SCRIPT.exists(), "pip install -e . installs the gateway console script"
    ok = process("check", "--map", str(BUNDLED_MAP))
    assert (ok.returncode, ok.stderr) == (0, "")
    assert ok.stdout.endswith(": 0 errors, 0 warnings\n")
    broken = process("check", "--map", str(write_map(BROKEN_MAP)))
    assert broken.returncode == 1
    explained = process("explain", "--map", str(BUNDLED_MAP), "/press-center/news/detail.php?ID=9")
    assert explained.returncode == 0
    assert "    Location: https://khv27.ru/news/9/" in explained.stdout


def test_python_m_gateway_import_and_coverage(
    import_case: tuple[Path, Path], tmp_path: Path
) -> None:
    map_file, csv_file = import_case
    failed = process("import", "--map", str(map_file), str(csv_file), module=True)
    assert failed.returncode == 1
    written = process("import", "--map", str(map_file), "--skip-bad", str(csv_file), module=True)
    assert written.returncode == 0, written.stderr
    log = tmp_path / "access.log"
    log.write_bytes(LOG)
    report = process("coverage", "--map", str(map_file), "--json", str(log), module=True)
    assert report.returncode == 0, report.stderr
    # The imported table answers nothing in this log; the counts are the bundled ones'.
    assert json.loads(report.stdout)["requests"]["redirect"] >= 1
