"""The benchmark code runs: map generator, URL lists and micro-benchmarks at a tiny size.

No timing is asserted (speed is measured by `make bench`, never by the tests); what is
asserted is that the generated map loads, that every generated URL gets the answer the
generator expects, and that the micro-benchmark and the baseline app produce their
results. Costs about 2 s.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from bench import micro
from bench.genmap import generate
from gateway.decide import decide
from gateway.mapfile import load_map
from gateway.outcomes import NotFound, Redirect


@pytest.fixture(scope="module")
def bench_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench") / "map"
    generate(folder, n_exact=400, n_patterns=20, n_urls=60)
    return folder


@pytest.mark.parametrize("layout", ["csv", "yaml"], ids=["most-rules-in-csv", "all-in-yaml"])
def test_generated_map_loads_with_every_rule(tmp_path: Path, layout: str) -> None:
    summary = generate(tmp_path, n_exact=300, n_patterns=10, n_urls=5, layout=layout)
    loaded = load_map(tmp_path / "redirects.yaml")
    assert len(loaded.rules) == 300 + 10 + 1  # plus the home page rule
    assert summary["exact_in_csv"] == (0 if layout == "yaml" else 270)
    assert sorted({r.host for r in loaded.rules}, key=str) == sorted(
        {None, "int.khabarovskadm.ru", "edu.khabarovskadm.ru", "dms.khabarovskadm.ru"}, key=str
    )


@pytest.mark.parametrize("cls", ["exact", "pattern", "miss"])
def test_every_generated_url_gets_the_expected_answer(bench_map: Path, cls: str) -> None:
    redirect_map = load_map(bench_map / "redirects.yaml")
    rows = micro.read_urls(bench_map / f"urls-{cls}.tsv", 10_000)
    assert len({(h, t) for h, t, _, _ in rows}) == len(rows) == 60  # distinct URLs
    for host, target, status, location in rows:
        outcome = decide(redirect_map, "GET", host, target)
        if status == 301:
            assert isinstance(outcome, Redirect), (host, target, outcome)
            assert outcome.location == location
        else:
            assert isinstance(outcome, NotFound), (host, target, outcome)


def test_micro_benchmark_produces_every_figure(tmp_path: Path) -> None:
    result = micro.run_micro(
        tmp_path, [(100, 10), (300, 20)], load_size=200, n_urls=30, repeat=1, load_repeat=1
    )
    sizes = result["sizes"]
    assert isinstance(sizes, list) and len(sizes) == 2
    assert set(sizes[0]) >= {"exact", "pattern", "miss", "load_s"}
    assert set(result["flatness"]) >= {"exact", "pattern", "miss"}  # type: ignore[arg-type]
    assert set(result["load"]) == {"csv", "yaml"}  # type: ignore[arg-type]
    json.dumps(result)  # what bench/out/ receives
    assert "rules from CSV" in micro.table(result)


def test_baseline_app_answers_from_the_exact_table(
    bench_map: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_EXACT_TABLE", str(bench_map / "exact-table.tsv"))
    sys.modules.pop("bench.baseline_app", None)
    baseline = importlib.import_module("bench.baseline_app")
    target, _, location = (
        (bench_map / "exact-table.tsv").read_text(encoding="utf-8").splitlines()[0].partition("\t")
    )
    answers: list[tuple[str, dict[str, str]]] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answers.append((status, dict(headers)))

    body = b"".join(baseline.app({"RAW_URI": target}, start_response))
    assert answers[0][0] == "301 Moved Permanently"
    assert answers[0][1]["Location"] == location
    assert answers[0][1]["Cache-Control"] == "public, max-age=86400"
    assert location.encode() in body
    b"".join(baseline.app({"RAW_URI": "/nowhere"}, start_response))
    assert answers[1][0] == "404 Not Found"
