"""In-process micro-benchmarks: decision cost by map size, and map load time.

Owns the numbers that need no server: for maps of 1k/10k/100k exact and
10/100/1,000 pattern rules, the cost of one decision (``decide``: host,
canonical form, §4 match, target) and of canonicalise + match alone, for exact
hits, pattern hits and misses, each over thousands of distinct URLs (no URL is
timed twice in a row, so no cache of any kind can make a number look good); and
the time ``load_map`` takes on a 100k-rule map from CSV and from YAML.

    python bench/micro.py [--sizes 1000:10,10000:100,100000:1000] [--load-size 100000]
                          [--urls 2000] [--repeat 5] [--json FILE]

Timing is the best of ``--repeat`` passes over the URL list in CPU time, map sizes
interleaved pass by pass (the least disturbed by other processes on a shared machine),
with the garbage collector off as timeit does.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.genmap import generate
from gateway.canonical import parse_request
from gateway.decide import decide
from gateway.mapfile import RedirectMap, load_map
from gateway.outcomes import NotFound, Redirect

CLASSES = ("exact", "pattern", "miss")


def read_urls(path: Path, limit: int) -> list[tuple[str, str, int, str]]:
    """Read a URL list written by genmap: (host, target, status, location)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            host, target, status, location = line.rstrip("\n").split("\t")
            rows.append((host, target, int(status), location))
            if len(rows) >= limit:
                break
    return rows


def check(redirect_map: RedirectMap, rows: list[tuple[str, str, int, str]]) -> None:
    """Fail loudly unless every URL gets the answer the generator expects."""
    for host, target, status, location in rows:
        outcome = decide(redirect_map, "GET", host, target)
        if status == 301:
            ok = isinstance(outcome, Redirect) and outcome.location == location
        else:
            ok = isinstance(outcome, NotFound)
        if not ok:
            raise SystemExit(f"bench: wrong answer for {host}{target}: {outcome!r}")


def best_per_call(
    run: Callable[[], object],
    calls: int,
    repeat: int,
    *,
    before: Callable[[], object] | None = None,
    warm_up: bool = True,
) -> float:
    """Return the best time of `repeat` runs of `run` (which makes `calls` calls), in µs/call.

    `before` runs ahead of each timed run, untimed (to empty a cache, say).
    """
    if warm_up:
        run()
    times = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            if before is not None:
                before()
            # CPU time of this process: other processes on a shared machine slow it less
            # than they slow the wall clock.
            start = time.process_time()
            run()
            times.append(time.process_time() - start)
    finally:
        if enabled:
            gc.enable()
    return min(times) / calls * 1e6


def time_decisions(
    redirect_map: RedirectMap, rows: list[tuple[str, str, int, str]], repeat: int
) -> dict[str, float]:
    """Time decide() and canonicalise+match over the rows; µs per request."""
    pairs = [(h, t) for h, t, _, _ in rows]
    site = redirect_map.site
    matcher = redirect_map.matcher
    canonical = [(redirect_map.host_of(h) or "", t) for h, t in pairs]

    def run_decide() -> None:
        for host, target in pairs:
            decide(redirect_map, "GET", host, target)

    def run_match() -> None:
        for host, target in canonical:
            url = parse_request(
                host, target, case_sensitive=site.case_sensitive, is_ignored=site.is_ignored
            )
            matcher.match(url, host)

    return {
        "decide_us": best_per_call(run_decide, len(pairs), repeat),
        "canonicalise_match_us": best_per_call(run_match, len(pairs), repeat),
    }


def time_load(path: Path, repeat: int) -> dict[str, float]:
    """Time load_map on one map file; seconds."""
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        loaded = load_map(path)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        del loaded
        gc.collect()
    return {
        "best_s": min(times),
        "median_s": statistics.median(times),
        "cpu_best_s": min(cpu),
        "runs": len(times),
    }


def run_micro(
    work: Path,
    sizes: list[tuple[int, int]],
    *,
    load_size: int,
    n_urls: int,
    repeat: int,
    load_repeat: int,
) -> dict[str, object]:
    """Run every micro-benchmark in `work`; return the results as a JSON-able dict."""
    by_size: list[dict[str, object]] = []
    loaded: list[tuple[dict[str, object], RedirectMap, dict[str, list[tuple[str, str, int, str]]]]]
    loaded = []
    for n_exact, n_patterns in sizes:
        folder = work / f"map-{n_exact}-{n_patterns}"
        generate(folder, n_exact=n_exact, n_patterns=n_patterns, n_urls=n_urls)
        start = time.perf_counter()
        redirect_map = load_map(folder / "redirects.yaml")
        load_s = time.perf_counter() - start
        entry: dict[str, object] = {
            "n_exact": n_exact,
            "n_patterns": n_patterns,
            "rules": len(redirect_map.rules),
            "load_s": load_s,
        }
        rows_by_class = {}
        for cls in CLASSES:
            rows = read_urls(folder / f"urls-{cls}.tsv", n_urls)
            if rows:
                check(redirect_map, rows)
                rows_by_class[cls] = rows
        loaded.append((entry, redirect_map, rows_by_class))
        by_size.append(entry)
    # Sizes interleaved, pass by pass: a load from other processes that comes and goes
    # then touches every size alike, and the best pass of each is compared.
    for _ in range(repeat):
        for entry, redirect_map, rows_by_class in loaded:
            for cls, rows in rows_by_class.items():
                timed = time_decisions(redirect_map, rows, 1)
                best = entry.setdefault(cls, timed | {"urls": len(rows)})
                assert isinstance(best, dict)
                for key, value in timed.items():
                    best[key] = min(best[key], value)
    del loaded
    gc.collect()
    flat: dict[str, float] = {}
    small, large = by_size[0], by_size[-1]
    for cls in CLASSES:
        if cls in small and cls in large:
            s, g = small[cls], large[cls]
            assert isinstance(s, dict) and isinstance(g, dict)
            flat[cls] = g["canonicalise_match_us"] / s["canonicalise_match_us"]
            flat[f"{cls}_decide"] = g["decide_us"] / s["decide_us"]
    loads: dict[str, object] = {}
    for layout in ("csv", "yaml"):
        folder = work / f"load-{layout}"
        generate(folder, n_exact=load_size, n_patterns=1000, n_urls=10, layout=layout)
        loads[layout] = time_load(folder / "redirects.yaml", load_repeat) | {
            "rules": load_size + 1000 + 1
        }
    return {"sizes": by_size, "flatness": flat, "load": loads}


def table(result: dict[str, object]) -> str:
    """Format the micro results as a plain-text table."""
    lines = [
        "decision cost, CPU µs per request (best of passes over distinct URLs)",
        f"{'map (exact/patterns)':<22}{'class':<9}{'canon+match':>12}{'decide':>10}",
    ]
    sizes = result["sizes"]
    assert isinstance(sizes, list)
    for entry in sizes:
        for cls in CLASSES:
            if cls in entry:
                d = entry[cls]
                lines.append(
                    f"{entry['n_exact']:>9,} / {entry['n_patterns']:<9,}  {cls:<9}"
                    f"{d['canonicalise_match_us']:>12.2f}{d['decide_us']:>10.2f}"
                )
    flat = result["flatness"]
    assert isinstance(flat, dict)
    lines.append(
        "largest / smallest map (target ≤ 1.5x): "
        + ", ".join(f"{k} {v:.2f}x" for k, v in flat.items())
    )
    loads = result["load"]
    assert isinstance(loads, dict)
    for layout, d in loads.items():
        lines.append(
            f"load {d['rules']:,} rules from {layout.upper()}: best {d['best_s']:.2f} s, "
            f"median {d['median_s']:.2f} s over {d['runs']}, CPU {d['cpu_best_s']:.2f} s (target ≤ "
            f"{'1.5' if layout == 'csv' else '5'} s)"
        )
    return "\n".join(lines)


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """Parse "1000:10,10000:100" into [(1000, 10), (10000, 100)]."""
    sizes = []
    for item in text.split(","):
        exact, _, patterns = item.partition(":")
        sizes.append((int(exact), int(patterns)))
    return sizes


def main() -> None:
    """Parse the command line, run, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=parse_sizes("1000:10,10000:100,100000:1000")
    )
    parser.add_argument("--load-size", type=int, default=100_000)
    parser.add_argument("--urls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--load-repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        result = run_micro(
            Path(tmp),
            args.sizes,
            load_size=args.load_size,
            n_urls=args.urls,
            repeat=args.repeat,
            load_repeat=args.load_repeat,
        )
    print(table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
