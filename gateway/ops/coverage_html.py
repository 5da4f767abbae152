"""``gateway coverage --html``: the coverage report as one self-contained HTML page.

Inline CSS, a CSS bar chart of outcomes, the skipped reasons, the top unmapped
URLs as draft rules, the rules with no hits. No script, no external resource, and
every string that came from a log or the map is escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

from gateway.ops.coverage import OUTCOMES, CoverageReport

_COLOURS = {
    "redirect": "#2e7d32",
    "gone": "#f9a825",
    "archived": "#1565c0",
    "unmapped": "#c62828",
    "skipped": "#9e9e9e",
}
_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}th,td{padding:.3rem .5rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{display:flex;height:2rem;border-radius:4px;overflow:hidden;margin:.5rem 0}
.bar span{display:block;height:100%}.key span{display:inline-block;width:.8rem;height:.8rem;
margin:0 .3rem 0 1rem;vertical-align:middle}code,pre{font:13px/1.4 ui-monospace,monospace}
pre{background:#f6f6f6;padding:.5rem;margin:0;white-space:pre-wrap;overflow-wrap:anywhere}small{color:#666}
"""


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def _bar(counts: dict[str, int], names: tuple[str, ...]) -> str:
    total = sum(counts[n] for n in names)
    spans = "".join(
        f'<span style="width:{100 * counts[n] / total:.3f}%;background:{_COLOURS[n]}"'
        f' title="{n}: {counts[n]} ({_pct(counts[n], total)})"></span>'
        for n in names
        if total and counts[n]
    )
    key = "".join(
        f'<span style="background:{_COLOURS[n]}"></span>{n} {counts[n]} ({_pct(counts[n], total)})'
        for n in names
    )
    return (
        f'<div class="bar" role="img" aria-label="outcomes">{spans}</div><p class="key">{key}</p>'
    )


def render_html(report: CoverageReport, map_path: str, logs: list[str]) -> str:
    """Return the coverage report as a self-contained HTML page."""
    r = report
    e = escape
    rows = "".join(
        f"<tr><td>{o}</td><td class=n>{r.requests[o]}</td><td class=n>"
        f"{_pct(r.requests[o], r.replayed)}</td><td class=n>{r.distinct[o]}</td></tr>"
        for o in OUTCOMES
    )
    skipped = "".join(
        f"<tr><td>{e(reason)}</td><td class=n>{n}</td></tr>" for reason, n in r.skipped.items()
    )
    drafts = "".join(
        f"<tr><td class=n>{d.hits}</td><td class=n>{d.urls}</td>"
        f"<td><pre>{e(d.yaml(comment=False))}</pre>"
        f"<small>{'<br>'.join(f'{e(u)} ({h})' for u, h in d.examples)}</small></td></tr>"
        for d in r.drafts
    )
    unused = "".join(
        f"<tr><td><code>{e(x.source)}</code></td><td><code>{e(x.from_text)}</code></td></tr>"
        for x in r.unused
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Coverage of {e(map_path)}</title><style>{_CSS}</style></head><body>
<h1>Coverage of <code>{e(map_path)}</code></h1>
<p><small>{e(", ".join(logs))}: {r.lines} lines, {r.replayed} requests replayed,
{r.requests["skipped"]} skipped, {r.unreadable} unreadable. Generated {when}.</small></p>
<h2>Requests</h2>{_bar(r.requests, (*OUTCOMES, "skipped"))}
<table><tr><th>outcome</th><th class=n>requests</th><th class=n>share</th>
<th class=n>distinct URLs</th></tr>{rows}</table>
<h2>Skipped ({r.requests["skipped"]})</h2>
<table><tr><th>why</th><th class=n>requests</th></tr>{skipped}</table>
<h2>Top unmapped, as draft rules</h2>
<table><tr><th class=n>hits</th><th class=n>URLs</th><th>draft rule</th></tr>{drafts}</table>
<h2>Rules with no hits ({len(r.unused)} of {r.rules})</h2>
<table><tr><th>rule</th><th>from</th></tr>{unused}</table>
</body></html>
"""
