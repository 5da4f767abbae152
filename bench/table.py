"""Candidates for the compiled exact-rule table (issue 14), measured side by side.

Owns the figures that chose the table's store: for each candidate (SQLite WITHOUT
ROWID, LMDB, marisa-trie BytesTrie), on the same exact rules of a ``bench/genmap.py``
map, the build time, the file's bytes per rule, the open time in a fresh process,
the lookup cost for hits and misses at 1k and at the full size (flat is the
target: <= 1.5x), and what a process holds after opening it and 10,000 lookups
(private memory, RssAnon, beyond what it held before; the table's pages are
file-backed and shared between workers, counted apart as RssFile).

The rows are the map's ``exact-table.tsv`` (TARGET<TAB>LOCATION for each 301 exact
rule): the key is the rule's canonical key (scope, TAB, folded path and query as
the table keys it), the value a record of the size the table stores per rule
(source file index and line, order, status, from text, to text, note).

    python bench/genmap.py /tmp/m1m --exact 1000000 --patterns 1000 --urls 10000
    python bench/table.py /tmp/m1m [--small 1000] [--lookups 10000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

CANDIDATES = ("sqlite", "lmdb", "marisa")


def _rows(table: Path, limit: int | None) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) for the exact rules of ``exact-table.tsv``, in file order."""
    with table.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if limit is not None and number > limit:
                return
            target, _, location = line.rstrip("\n").partition("\t")
            key = b"\t" + target.lower().encode()
            to_text = location.removeprefix("https://khv27.ru")
            # file index, line, order, status, from, to, note: what rebuilds the Rule.
            value = "\x1f".join(("1", str(number + 1), str(number), "301", target, to_text, ""))
            yield key, value.encode()


def build_sqlite(path: Path, rows: list[tuple[bytes, bytes]]) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA page_size=4096;"
        "CREATE TABLE rules (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;"
    )
    db.executemany("INSERT INTO rules VALUES (?, ?)", rows)
    db.commit()
    db.execute("VACUUM")
    db.close()


def build_lmdb(path: Path, rows: list[tuple[bytes, bytes]]) -> None:
    import lmdb

    env = lmdb.open(str(path), map_size=8 << 30, subdir=False, lock=False, sync=False)
    with env.begin(write=True) as txn:
        cursor = txn.cursor()
        cursor.putmulti(rows, append=True)
    env.sync(True)
    env.close()
    # LMDB leaves a sparse map_size file: copy it compacted, as a build would.
    compact = path.with_suffix(".compact")
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    env.copy(str(compact), compact=True)
    env.close()
    os.replace(compact, path)
    lock = Path(str(path) + "-lock")
    if lock.exists():
        lock.unlink()


def build_marisa(path: Path, rows: list[tuple[bytes, bytes]]) -> None:
    import marisa_trie

    trie = marisa_trie.BytesTrie((k.decode(), v) for k, v in rows)
    trie.save(str(path))


BUILDERS: dict[str, Callable[[Path, list[tuple[bytes, bytes]]], None]] = {
    "sqlite": build_sqlite,
    "lmdb": build_lmdb,
    "marisa": build_marisa,
}

# Run in a fresh interpreter: open the table, then look up every key given.
PROBE = r"""
import json, sys, time
def mem():
    out = {}
    for line in open("/proc/self/status"):
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile", "VmRSS"):
            out[name] = int(value.split()[0]) * 1024
    return out
kind, path, keys_file = sys.argv[1:4]
keys = [bytes.fromhex(h) for h in open(keys_file).read().split()]
if kind == "sqlite":
    import sqlite3
elif kind == "lmdb":
    import lmdb
else:
    import marisa_trie
before = mem()
t0 = time.perf_counter()
if kind == "sqlite":
    db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    db.execute("PRAGMA mmap_size=4294967296")
    db.execute("PRAGMA cache_size=-2048")
    sql = "SELECT v FROM rules WHERE k = ?"
    def get(k):
        row = db.execute(sql, (k,)).fetchone()
        return row[0] if row else None
elif kind == "lmdb":
    env = lmdb.open(path, subdir=False, readonly=True, lock=False, readahead=False)
    txn = env.begin(buffers=False)
    get = txn.get
else:
    trie = marisa_trie.BytesTrie().mmap(path)
    def get(k):
        found = trie.get(k.decode())
        return found[0] if found else None
get(keys[0])
opened = time.perf_counter() - t0
hits = 0
for k in keys:  # warm: the pages a worker would have touched
    hits += get(k) is not None
best = None
for _ in range(5):
    t1 = time.perf_counter()
    for k in keys:
        get(k)
    spent = time.perf_counter() - t1
    best = spent if best is None else min(best, spent)
after = mem()
print(json.dumps({"open": opened, "per_lookup": best / len(keys), "hits": hits,
                  "anon": after["RssAnon"] - before["RssAnon"], "file": after["RssFile"]}))
"""


def probe(kind: str, path: Path, keys_file: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, kind, str(path), str(keys_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def _keys(
    rows: list[tuple[bytes, bytes]], misses: list[bytes], count: int, seed: int
) -> list[bytes]:
    """Return ``count`` distinct random hits and ``count`` misses, shuffled together."""
    rng = random.Random(seed)
    hits = [k for k, _ in rng.sample(rows, min(count, len(rows)))]
    if len(hits) < count:  # a small table: its keys again, still random
        hits += [rng.choice(rows)[0] for _ in range(count - len(hits))]
    keys = hits + [rng.choice(misses) for _ in range(count)]
    rng.shuffle(keys)
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("map_dir", type=Path)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=10000)
    parser.add_argument("--only", default=",".join(CANDIDATES))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="table-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = sorted(_rows(args.map_dir / "exact-table.tsv", None))
    small = sorted(_rows(args.map_dir / "exact-table.tsv", args.small))
    misses = []
    with (args.map_dir / "urls-miss.tsv").open(encoding="utf-8") as lines:
        for line in lines:
            target = line.split("\t")[1]
            misses.append(b"\t" + target.lower().encode())
    results: dict[str, dict[str, float]] = {}
    for kind in args.only.split(","):
        figures: dict[str, float] = {}
        for label, data in (("small", small), ("full", rows)):
            path = work / f"{kind}-{label}.table"
            if path.exists():
                path.unlink()
            t0 = time.perf_counter()
            BUILDERS[kind](path, data)
            built = time.perf_counter() - t0
            keys_file = work / f"keys-{label}.hex"
            keys_file.write_text("\n".join(k.hex() for k in _keys(data, misses, args.lookups, 14)))
            found = probe(kind, path, keys_file)
            figures[f"{label}_build"] = built
            figures[f"{label}_bytes_per_rule"] = path.stat().st_size / len(data)
            for name, value in found.items():
                figures[f"{label}_{name}"] = value
        results[kind] = figures
    n = len(rows)
    print(f"exact rules: {n:,} (and {len(small):,}); lookups: {args.lookups:,} hits + misses")
    header = (
        f"{'store':8} {'build s':>8} {'B/rule':>7} {'open ms':>8} "
        f"{'µs 1k':>7} {'µs full':>8} {'ratio':>6} {'anon MB':>8} {'file MB':>8}"
    )
    print(header)
    for kind, f in results.items():
        print(
            f"{kind:8} {f['full_build']:8.1f} {f['full_bytes_per_rule']:7.0f}"
            f" {f['full_open'] * 1000:8.1f} {f['small_per_lookup'] * 1e6:7.2f}"
            f" {f['full_per_lookup'] * 1e6:8.2f}"
            f" {f['full_per_lookup'] / f['small_per_lookup']:6.2f}"
            f" {f['full_anon'] / 2**20:8.1f} {f['full_file'] / 2**20:8.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.work is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
