"""Issue 14's figures that need a compiled map: compile time, table size, memory, match cost.

Owns the measurements ``bench/run.py`` makes of the compiled table at each map size:

- ``compile_cold``: the first compile of a map into an empty state directory, timed in a
  fresh interpreter making the call gunicorn's ``on_starting`` makes
  (``Compiled.of(MAP, STATE_DIR).compile_now()``): wall time of the whole child (imports
  included), the compile call alone, the child's CPU time and peak RSS (``wait4``), and
  the table's bytes on disk per rule;
- ``smaps``: a process's memory from ``/proc/PID/smaps``: total Rss and Pss, and the Rss
  and Pss of its mappings of ``rules-*.lmdb`` (the table, file-backed and shared);
  "beyond the table" is total Rss minus the table's Rss;
- ``probe`` (run as ``python bench/scale.py probe ...`` in a fresh process): the import
  time of the app, then per map the time of ``MapHolder(MAP, state_dir=..., compiled=True)``
  on an already compiled map (what a worker does at its start, imports apart), a check
  of every URL's answer, and the CPU cost per lookup of ``decide()`` and of
  canonicalise + ``TableMatcher.match`` for exact hits, pattern hits and misses. Sizes are
  interleaved pass by pass; the table's cache of built rules is emptied before every
  pass, so each lookup reads and builds its rule from the table (a warm-up pass first
  faults the pages in, as a serving worker has them).

    python bench/scale.py probe --map MAP_DIR:STATE_DIR [--map ...] [--urls 2000]
                                [--repeat 5] --json FILE
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

CLASSES = ("exact", "pattern", "miss")
TABLE_NAME = re.compile(r"/rules-[^/]*\.lmdb$")
_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")

COMPILE_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from gateway.maps.compiled import Compiled
t1 = time.perf_counter()
result = Compiled.of(sys.argv[1], sys.argv[2]).compile_now()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "compile_now_s": t2 - t1, "table": result.table,
                  "problems": len(result.problems), "root": str(Compiled.of(sys.argv[1],
                  sys.argv[2]).root)}))
"""


def compile_cold(map_dir: Path, state_dir: Path, rules: int) -> dict[str, object]:
    """Compile the map into an empty state directory in a fresh interpreter; time it."""
    if state_dir.exists() and any(state_dir.iterdir()):
        raise RuntimeError(f"{state_dir} is not empty: the compile would not be cold")
    out_path = state_dir.parent / f"compile-{state_dir.name}.json"
    started = time.perf_counter()
    with out_path.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", COMPILE_CHILD, "redirects.yaml", str(state_dir)],
            cwd=map_dir,  # as the server runs: the map named relative to its folder
            env=os.environ | {"PYTHONPATH": str(REPO)},
            stdout=out,
        )
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"the compile of {map_dir} exited with {child.returncode}")
    found = json.loads(out_path.read_text())
    if found["table"] is None:
        raise RuntimeError(f"the map in {map_dir} has {found['problems']} problem(s)")
    table = Path(found["root"]) / "tables" / found["table"]
    size = table.stat().st_size
    return {
        "what": "fresh interpreter: Compiled.of(map, state_dir).compile_now(), cold state dir",
        "wall_s": wall,
        "compile_now_s": found["compile_now_s"],
        "import_s": found["import_s"],
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_kib": usage.ru_maxrss,
        "table": str(table),
        "table_bytes": size,
        "rules": rules,
        "bytes_per_rule": size / rules,
    }


def smaps(pid: int) -> dict[str, int]:
    """Return a process's Rss and Pss in KiB, in total and for its rules-*.lmdb mappings."""
    totals = {"rss_kib": 0, "pss_kib": 0, "table_rss_kib": 0, "table_pss_kib": 0}
    in_table = False
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            if _MAPPING.match(line):
                in_table = bool(TABLE_NAME.search(line.rstrip("\n").removesuffix(" (deleted)")))
                continue
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                kib = int(rest.split()[0])
                totals[f"{name.lower()}_kib"] += kib
                if in_table:
                    totals[f"table_{name.lower()}_kib"] += kib
    totals["beyond_table_kib"] = totals["rss_kib"] - totals["table_rss_kib"]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            totals["rss_anon_kib"] = int(line.split()[1])
    return totals


# --- the probe (a fresh process) -------------------------------------------------------


def probe(maps: list[tuple[Path, Path]], n_urls: int, repeat: int) -> dict[str, object]:
    """Open each compiled map as a worker does, check it, and time its lookups."""
    t0 = time.perf_counter()
    from bench.micro import best_per_call, check, read_urls
    from gateway.canonical import parse_request
    from gateway.decide import decide
    from gateway.maps import MapHolder

    import_s = time.perf_counter() - t0
    opened = []
    for map_dir, state_dir in maps:
        # As the server runs (and as compile_cold compiled it): the map named relative to
        # its folder, which is the working directory; the table records the files so.
        os.chdir(map_dir)
        started = time.perf_counter()
        holder = MapHolder("redirects.yaml", reload_interval=0, state_dir=state_dir, compiled=True)
        open_s = time.perf_counter() - started
        redirect_map = holder.current()
        if redirect_map is None or type(redirect_map.matcher).__name__ != "TableMatcher":
            raise SystemExit(f"bench: {map_dir} was not served from its compiled table")
        rows = {}
        for cls in CLASSES:
            found = read_urls(map_dir / f"urls-{cls}.tsv", n_urls)
            if found:
                check(redirect_map, found)
                rows[cls] = found
        entry: dict[str, object] = {
            "map": str(map_dir),
            "rules": len(redirect_map.rules),
            "mapholder_open_s": open_s,
        }
        opened.append((entry, redirect_map, rows))
    clear = [getattr(m.matcher, "_rules", None) for _, m, _ in opened]
    for _ in range(repeat):
        for (entry, redirect_map, rows), cache in zip(opened, clear, strict=True):
            site = redirect_map.site
            matcher = redirect_map.matcher

            def empty(cache: object = cache) -> None:
                if cache is not None:
                    cache.cache_clear()  # type: ignore[attr-defined]

            for cls, found in rows.items():
                pairs = [(h, t) for h, t, _, _ in found]
                canonical = [(redirect_map.host_of(h) or "", t) for h, t in pairs]

                def run_decide(
                    pairs: list[tuple[str, str]] = pairs, m: object = redirect_map
                ) -> None:
                    for host, target in pairs:
                        decide(m, "GET", host, target)  # type: ignore[arg-type]

                def run_match(
                    canonical: list[tuple[str, str]] = canonical,
                    site: object = site,
                    matcher: object = matcher,
                ) -> None:
                    for host, target in canonical:
                        url = parse_request(
                            host,
                            target,
                            case_sensitive=site.case_sensitive,  # type: ignore[attr-defined]
                            is_ignored=site.is_ignored,  # type: ignore[attr-defined]
                        )
                        matcher.match(url, host)  # type: ignore[attr-defined]

                if cls not in entry:
                    run_decide()  # warm-up: the table's pages faulted in
                timed = {
                    "decide_us": best_per_call(
                        run_decide, len(pairs), 1, before=empty, warm_up=False
                    ),
                    "canonicalise_match_us": best_per_call(
                        run_match, len(pairs), 1, before=empty, warm_up=False
                    ),
                }
                best = entry.setdefault(cls, timed | {"urls": len(pairs)})
                assert isinstance(best, dict)
                for key, value in timed.items():
                    best[key] = min(best[key], value)
    return {
        "what": (
            "fresh process; MapHolder(compiled=True) on a compiled map; CPU µs per request,"
            " best of passes, rule cache emptied before each pass"
        ),
        "cache_cleared": all(c is not None for c in clear),
        "import_s": import_s,
        "sizes": [entry for entry, _, _ in opened],
    }


def run_probe(
    maps: list[tuple[Path, Path]], n_urls: int, repeat: int, out: Path
) -> dict[str, object]:
    """Run the probe in a fresh interpreter; return its JSON."""
    argv = [sys.executable, str(Path(__file__)), "probe", "--urls", str(n_urls)]
    argv += ["--repeat", str(repeat), "--json", str(out)]
    for map_dir, state_dir in maps:
        argv += ["--map", f"{map_dir}:{state_dir}"]
    subprocess.run(argv, check=True, cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)})
    result: dict[str, object] = json.loads(out.read_text())
    return result


def main() -> None:
    """``probe``: the lookups of compiled maps in this (fresh) process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("probe",))
    parser.add_argument("--map", action="append", required=True, help="MAP_DIR:STATE_DIR")
    parser.add_argument("--urls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    maps = [(Path(m.split(":")[0]), Path(m.split(":")[1])) for m in args.map]
    result = probe(maps, args.urls, args.repeat)
    args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
