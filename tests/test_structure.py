"""The package's shape: the pure core loads without the web and CLI frameworks.

Each check runs in a fresh interpreter (``sys.executable -c``), so that what this pytest
process already imported cannot hide an import. Forbidden in the pure core: flask,
click, prometheus_client and their submodules. werkzeug is allowed (gateway.banner
reads Accept-Language with it; it is not Flask). ``gateway --help`` may load click,
of course, but neither Flask nor prometheus_client.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO

FORBIDDEN = ("flask", "click", "prometheus_client")
WEB_ONLY = ("flask", "prometheus_client")

PURE_CORE = [
    "gateway",
    "gateway.canonical",
    "gateway.rules",
    "gateway.mapfile",
    "gateway.matcher",
    "gateway.outcomes",
    "gateway.responses",
    "gateway.decide",
    "gateway.banner",
]

# Imports the modules named in argv, then prints the top-level names of every loaded module.
IMPORT_AND_LIST = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""

# `gateway [ARGS] --help` in-process, then the loaded modules (exit status and output too).
HELP_AND_LIST = """
import contextlib, io, json, sys
from gateway.cli import main
out = io.StringIO()
code = None
with contextlib.redirect_stdout(out):
    try:
        main([*sys.argv[1:], "--help"])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def loaded_after_import(*modules: str) -> list[str]:
    return list(json.loads(run_python("-c", IMPORT_AND_LIST, *modules).stdout))


def among(modules: list[str], packages: tuple[str, ...]) -> list[str]:
    """The modules that are one of `packages` or inside one."""
    return [m for m in modules if m.partition(".")[0] in packages]


@pytest.mark.parametrize("module", PURE_CORE, ids=[m.replace(".", "-") for m in PURE_CORE])
def test_pure_core_module_loads_no_framework(module: str) -> None:
    loaded = loaded_after_import(module)
    assert module in loaded
    assert among(loaded, FORBIDDEN) == []


def test_the_whole_pure_core_together_loads_no_framework() -> None:
    assert among(loaded_after_import(*PURE_CORE), FORBIDDEN) == []


@pytest.mark.parametrize(
    ("module", "framework"),
    [
        pytest.param("gateway.app", "flask", id="app-factory-loads-flask"),
        pytest.param("gateway.cli", "click", id="cli-loads-click"),
    ],
)
def test_the_check_sees_a_framework_import(module: str, framework: str) -> None:
    # The control: were the listing blind, the tests above would pass whatever was imported.
    assert framework in among(loaded_after_import(module), FORBIDDEN)


def test_gateway_help_loads_neither_flask_nor_prometheus() -> None:
    result = json.loads(run_python("-c", HELP_AND_LIST).stdout)
    assert result["code"] == 0
    assert "Usage:" in result["out"] and "explain" in result["out"]
    assert among(result["modules"], WEB_ONLY) == []


def test_python_m_gateway_help_imports_no_flask() -> None:
    # The real command line, as `python -m gateway --help` runs it; -X importtime lists on
    # stderr every module imported, its name last on each line.
    done = run_python("-X", "importtime", "-m", "gateway", "--help")
    assert "Usage:" in done.stdout
    imported = [
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "gateway.cli" in imported and "click" in imported
    assert among(imported, WEB_ONLY) == []
