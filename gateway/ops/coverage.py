"""``gateway coverage``: replay real traffic through the map and say what it misses.

Counts each distinct (host, raw target) in the logs (read by ``gateway.ops.logs``)
and answers it once with ``gateway.decide.decide`` — the server's own function —
without HTTP, so a million log lines cost one regular-expression match and one dict
lookup each.

Owns the replay (count, then decide once per key, in forked workers when there are
many), the naming of each decision (``decide_one``), and the report as text and
JSON. The noise lists are ``gateway.ops.noise``, draft rules ``gateway.ops.drafts``,
the HTML page ``gateway.ops.coverage_html``.

Counts are named ``redirect``, ``gone``, ``unmapped`` and ``skipped``. Page
furniture (css, js, images, fonts, favicon) and scanner noise (``wp-admin``,
``phpmyadmin``, ``.env``…) are skipped only when no rule answers them, as GOV.UK
Transition does; so are requests the gateway would not answer from the map at all
(other methods, unknown hosts, malformed URLs, ``/-/`` endpoints). Unmapped URLs
are grouped into draft rules, numeric segments and values collapsed into
``<int:id>``, per host, ready to paste under ``rules:``.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing as mp
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from gateway.canonical import LegacyURL, fold
from gateway.decide import decide
from gateway.mapfile import RedirectMap
from gateway.ops.drafts import Draft, drafts, query_names, shape_of
from gateway.ops.logs import Key, count_requests, open_log, read_with_progress
from gateway.ops.noise import skip_reason
from gateway.ops.urls import shown
from gateway.outcomes import Archived, Gone, NotFound, Redirect
from gateway.responses import answer_of
from gateway.rules import Rule

OUTCOMES = ("redirect", "gone", "archived", "unmapped")  # spec §7, and §8's "archived"


class Decision(NamedTuple):
    """What one distinct (host, raw target) comes to; a tuple: cheap to build and to pickle."""

    outcome: str  # redirect, gone, unmapped, or skipped
    reason: str = ""  # for skipped: why
    rule: str | None = None  # the answering rule's FILE:LINE
    canonical: tuple[object, ...] | None = None  # host, path, significant values
    shape: tuple[object, ...] | None = None  # unmapped: the draft it belongs to
    names: tuple[str, ...] = ()  # unmapped: the shape's query names as sent (ID, not id)
    shown: str | None = None  # unmapped: the URL as a report shows it


@dataclass(frozen=True)
class CoverageReport:
    """What a replay of traffic found."""

    lines: int
    unreadable: int  # lines that are neither a log line, a JSON record nor a URL
    requests: dict[str, int]  # redirect, gone, unmapped, skipped: hits
    distinct: dict[str, int]  # the same, counting distinct canonical URLs
    skipped: dict[str, int]  # why requests were skipped: hits
    drafts: tuple[Draft, ...]
    unused: tuple[Rule, ...]
    rule_hits: dict[str, int]
    rules: int

    @property
    def replayed(self) -> int:
        """Return the requests answered from the map (not skipped)."""
        return sum(self.requests[o] for o in OUTCOMES)


class Replay:
    """Replay requests through the map: count each distinct (host, target), then decide each once.

    ``feed`` only parses and counts (one regex match and one dict update a line);
    ``decide`` asks ``gateway.decide.decide`` once per distinct key, in forked worker
    processes when there are many; ``report`` adds it up.
    """

    def __init__(self, redirect_map: RedirectMap, host: str | None = None) -> None:
        self.map = redirect_map
        self.host = host or redirect_map.default_host
        self.hits: dict[Key, int] = {}
        self.decisions: dict[Key, Decision] = {}
        self.lines = 0
        self.unreadable = 0
        self.other = Counter[str]()  # skipped before deciding: other methods

    def feed(self, stream: Iterable[bytes]) -> None:
        """Count every request in a byte stream (a log file, a URL list) by (host, target)."""
        with _no_gc():
            lines, unreadable = count_requests(stream, self.hits, self.other)
        self.lines += lines
        self.unreadable += unreadable

    def decide(self, *, jobs: int = 1, progress: Callable[[int], None] | None = None) -> None:
        """Decide every key not decided yet, in ``jobs`` processes when there are many."""
        keys = [k for k in self.hits if k not in self.decisions]
        decided = decide_keys(self.map, self.host, keys, jobs, progress)
        for key, decision in zip(keys, decided, strict=True):
            self.decisions[key] = decision

    def report(self, top: int = 20) -> CoverageReport:
        """Summarise what was replayed: counts, draft rules for the unmapped, unused rules."""
        self.decide()
        requests = dict.fromkeys((*OUTCOMES, "skipped"), 0)
        skipped = Counter(self.other)
        canonical: dict[str, set[tuple[object, ...]]] = {o: set() for o in OUTCOMES}
        rule_hits: Counter[str] = Counter()
        unmapped: dict[tuple[object, ...], list[tuple[Decision, int]]] = {}
        distinct_skipped = 0
        for key, hits in self.hits.items():
            decision = self.decisions[key]
            requests[decision.outcome] += hits
            if decision.outcome == "skipped":
                skipped[decision.reason] += hits
                distinct_skipped += 1
                continue
            assert decision.canonical is not None
            canonical[decision.outcome].add(decision.canonical)
            if decision.rule is not None:
                rule_hits[decision.rule] += hits
            elif decision.outcome == "unmapped":  # an archived answer needs no draft rule
                unmapped.setdefault(decision.canonical, []).append((decision, hits))
        requests["skipped"] += sum(self.other.values())
        distinct = {o: len(canonical[o]) for o in OUTCOMES}
        distinct["skipped"] = distinct_skipped
        return CoverageReport(
            lines=self.lines,
            unreadable=self.unreadable,
            requests=requests,
            distinct=distinct,
            skipped=dict(skipped.most_common()),
            drafts=tuple(drafts(unmapped.values())[:top]),
            unused=tuple(r for r in self.map.rules if r.source not in rule_hits),
            rule_hits=dict(rule_hits),
            rules=len(self.map.rules),
        )


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: replays allocate millions of acyclic objects."""
    # Each full collection walks everything allocated so far; skipping them saves ~12%.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decide_one(redirect_map: RedirectMap, host: str, key: Key) -> Decision:
    """Decide one (host, target) with the server's ``decide`` and classify the answer."""
    vhost, target = key
    outcome = decide(redirect_map, "GET", vhost or host, target)
    case_sensitive = redirect_map.site.case_sensitive
    spec = answer_of(outcome)
    if isinstance(outcome, (Redirect, Gone)):
        return Decision(
            spec.coverage,
            rule=outcome.rule.source,
            canonical=canonical_key(outcome.url, case_sensitive),
        )
    if isinstance(outcome, Archived):
        return Decision(spec.coverage, canonical=canonical_key(outcome.url, case_sensitive))
    if isinstance(outcome, NotFound):
        url = outcome.url
        reason = skip_reason(url.path)
        if reason:
            return Decision("skipped", reason)
        return Decision(
            spec.coverage,
            canonical=canonical_key(url, case_sensitive),
            shape=shape_of(url, case_sensitive),
            names=query_names(url),
            shown=shown_url(url),
        )
    return Decision(spec.coverage, spec.skip_reason)


# Below this many distinct URLs, starting processes costs more than it saves.
PARALLEL_MIN = 20_000
_CHUNK = 5_000
# What a forked worker inherits instead of receiving it pickled: the map and the keys.
_worker_map: RedirectMap | None = None
_worker_keys: list[Key] = []


def _decide_range(args: tuple[str, int, int]) -> list[Decision]:
    """Decide keys[start:stop] in a worker."""
    host, start, stop = args
    assert _worker_map is not None
    with _no_gc():
        return [decide_one(_worker_map, host, key) for key in _worker_keys[start:stop]]


def decide_keys(
    redirect_map: RedirectMap,
    host: str,
    keys: list[Key],
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Iterator[Decision]:
    """Yield the decision for each key, in order; fork ``jobs`` workers for many keys."""
    ranges = [(i, min(i + _CHUNK, len(keys))) for i in range(0, len(keys), _CHUNK)]
    if jobs > 1 and len(keys) >= PARALLEL_MIN and "fork" in mp.get_all_start_methods():
        global _worker_map, _worker_keys
        _worker_map, _worker_keys = redirect_map, keys
        try:
            with mp.get_context("fork").Pool(jobs) as pool:
                work = [(host, start, stop) for start, stop in ranges]
                for answers in pool.imap(_decide_range, work):
                    if progress is not None:
                        progress(len(answers))
                    yield from answers
        finally:
            _worker_map, _worker_keys = None, []
        return
    for start, stop in ranges:
        with _no_gc():
            decided = [decide_one(redirect_map, host, key) for key in keys[start:stop]]
        yield from decided
        if progress is not None:
            progress(stop - start)


def canonical_key(url: LegacyURL, case_sensitive: bool) -> tuple[object, ...]:
    """Return a URL's canonical identity: host, folded path, significant last values (§2)."""
    params = url.params
    if not params:
        return (url.host, url.path, ())
    if len(params) == 1:
        only = params[0]
        return (url.host, url.path, ((only.key, fold(only.value, case_sensitive)),))
    values = url.last_values()
    return (
        url.host,
        url.path,
        tuple(sorted((k, fold(v, case_sensitive)) for k, v in values.items())),
    )


def shown_url(url: LegacyURL) -> str:
    """Return a URL for a report: host and the raw target, with bytes beyond ASCII escaped."""
    return f"{url.host}{shown(url.raw_target)}"


def coverage(
    redirect_map: RedirectMap,
    logs: Iterable[str],
    *,
    host: str | None = None,
    top: int = 20,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> CoverageReport:
    """Replay every log (file names, ``-`` for stdin) through the map and report."""
    replay = read_logs(redirect_map, logs, host=host, progress=progress)
    replay.decide(jobs=jobs)
    return replay.report(top)


def archive_urls(redirect_map: RedirectMap) -> Iterator[bytes]:
    """Yield every URL the map's web archive holds, one line each: the old site's inventory."""
    for capture in redirect_map.captures.captures.values():
        yield capture.url.encode("latin-1", "replace") + b"\n"


def read_logs(
    redirect_map: RedirectMap,
    logs: Iterable[str],
    *,
    host: str | None = None,
    progress: Callable[[int], None] | None = None,
    archive: bool = False,
) -> Replay:
    """Read and count every log (file names, ``-`` for stdin); nothing is decided yet.

    ``archive``: the archive's own URLs too (``archive_urls``), once each.
    """
    replay = Replay(redirect_map, host)
    if archive:
        replay.feed(archive_urls(redirect_map))
    for name in logs:
        stream = open_log(name)
        try:
            replay.feed(read_with_progress(stream, progress))
        finally:
            if name != "-":
                stream.close()
    return replay


# --- output ------------------------------------------------------------------------------


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def render(report: CoverageReport, top: int = 20) -> str:
    """Return the report as text: shares, skipped, draft rules, rules with no hits."""
    r = report
    replayed = r.replayed
    distinct = sum(r.distinct[o] for o in OUTCOMES)
    unreadable = f" ({r.unreadable} unreadable)" if r.unreadable else ""
    out = [
        f"{r.lines} lines{unreadable}, {replayed + r.requests['skipped']} requests:"
        f" {replayed} replayed through the map, {r.requests['skipped']} skipped",
        "",
        f"{'':10}{'requests':>20}{'distinct URLs':>22}",
    ]
    for o in OUTCOMES:
        out.append(
            f"{o:10}{r.requests[o]:>12} {_share(r.requests[o], replayed):>7}"
            f"{r.distinct[o]:>14} {_share(r.distinct[o], distinct):>7}"
        )
    if r.skipped:
        out += ["", f"skipped {r.requests['skipped']} requests (not counted above):"]
        out += [f"  {n:>10}  {reason}" for reason, n in r.skipped.items()]
    if r.drafts:
        out += ["", f"top unmapped, as draft rules ({len(r.drafts)} shown; paste under rules:):"]
        for draft in r.drafts:
            out += ["", draft.yaml()]
    out += ["", f"rules with no hits: {len(r.unused)} of {r.rules}"]
    out += [f"  {rule.source}  {rule.from_text}" for rule in r.unused[:top]]
    if len(r.unused) > top:
        out.append(f"  ... and {len(r.unused) - top} more (--json lists them all)")
    return "\n".join(out)


def to_json(report: CoverageReport) -> dict[str, Any]:
    """Return the report as a JSON-ready dict (counts named redirect, gone, unmapped, skipped)."""
    r = report
    return {
        "lines": r.lines,
        "unreadable": r.unreadable,
        "requests": r.requests,
        "distinct": r.distinct,
        "replayed": r.replayed,
        "skipped_by_reason": r.skipped,
        "top_unmapped": [
            {
                "host": d.host,
                "from": d.from_text,
                "hits": d.hits,
                "urls": d.urls,
                "examples": [{"url": u, "hits": h} for u, h in d.examples],
            }
            for d in r.drafts
        ],
        "rules_without_hits": [{"source": x.source, "from": x.from_text} for x in r.unused],
        "rule_hits": r.rule_hits,
    }
