"""Tests of gateway.ops.coverage: replaying logs through the map.

The small log below is answered by the bundled map; every count asserted was worked
out by hand from the map's rules (the comment on each line says what it is).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gateway.mapfile import RedirectMap, load_map
from gateway.ops import coverage as cov
from gateway.ops.coverage import Replay, coverage, decide_keys, render, to_json
from gateway.ops.coverage_html import render_html
from gateway.ops.noise import skip_reason
from tests.support import BUNDLED_MAP, WriteMap

W = '1.2.3.4 - - [10/Oct/2023:13:55:36 +0300] "{} HTTP/1.1" 200 512 "-" "Mozilla/5.0"'
LOG_LINES = [
    W.format("GET /press-center/news/detail.php?ID=1"),  # 1 redirect
    W.format("GET /press-center/news/detail.php?ID=1&utm_source=vk"),  # 2 redirect, as 1
    W.format("GET /Press-Center/News/detail.php?ID=2"),  # 3 redirect
    W.format("GET /upload/a.pdf"),  # 4 gone
    W.format("GET /old/section/15/"),  # 5 unmapped
    W.format("GET /old/section/16/index.php"),  # 6 unmapped
    W.format("GET /old/section/16/"),  # 7 unmapped, as 6
    W.format("GET /bitrix/templates/main/style.css"),  # 8 skipped: furniture
    W.format("GET /wp-login.php"),  # 9 skipped: noise
    W.format("POST /search/"),  # 10 skipped: method
    "int.khabarovskadm.ru:80 " + W.format("GET /"),  # 11 redirect (vhost_combined)
    "garbage",  # 12 unreadable
    "/contacts/",  # 13 redirect (a URL list line)
    "https://edu.khabarovskadm.ru/",  # 14 redirect
    json.dumps(  # 15 unmapped (the gateway's own access log)
        {"host": "dms.khabarovskadm.ru", "raw_target": "/reestr/?id=77", "path": "/reestr"}
    ),
    '1.2.3.4 - - [10/Oct/2023:13:55:36 +0300] "GET /favicon.ico HTTP/1.1" 404 0',  # 16 furniture
    W.format("GET /a%zz"),  # 17 skipped: malformed
    "evil.example " + W.format("GET /"),  # 18 skipped: host not served
    W.format("GET /\\xD0\\x9D\\xD0\\xBE/"),  # 19 unmapped: nginx-escaped UTF-8, Cyrillic
    W.format("GET /upload/logo.png"),  # 20 gone: furniture, but a rule answers it
]
LOG = ("\n".join(LOG_LINES) + "\n").encode()


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "access.log"
    path.write_bytes(LOG)
    return path


def test_counts_on_a_small_log(bundled: RedirectMap, log_file: Path) -> None:
    report = coverage(bundled, [str(log_file)])
    assert (report.lines, report.unreadable, report.replayed) == (20, 1, 13)
    assert report.requests == {"redirect": 6, "gone": 2, "archived": 0, "unmapped": 5, "skipped": 6}
    assert {k: report.distinct[k] for k in ("redirect", "gone", "unmapped")} == {
        "redirect": 5,
        "gone": 2,
        "unmapped": 4,
    }
    assert report.skipped == {
        "page furniture (css, js, images, fonts, favicon)": 2,
        "scanner noise (wp-admin, phpmyadmin, .env, ...)": 1,
        "method other than GET or HEAD": 1,
        "malformed URL (400)": 1,
        "host not under hosts:": 1,
    }


def test_drafts_group_numbers_per_host(bundled: RedirectMap, log_file: Path) -> None:
    report = coverage(bundled, [str(log_file)])
    assert [(d.from_text, d.hits, d.urls) for d in report.drafts] == [
        ("khabarovskadm.ru/old/section/<int:id>", 3, 2),
        ("dms.khabarovskadm.ru/reestr?id=<int:id>", 1, 1),
        ("khabarovskadm.ru/но", 1, 1),
    ]
    # Lines 6 and 7 are one canonical URL with 2 hits: it comes first, shown as one of them.
    (first, hits_first), (second, hits_second) = report.drafts[0].examples
    assert first.startswith("khabarovskadm.ru/old/section/16/") and hits_first == 2
    assert (second, hits_second) == ("khabarovskadm.ru/old/section/15/", 1)


def test_rules_without_hits(bundled: RedirectMap, log_file: Path) -> None:
    report = coverage(bundled, [str(log_file)])
    hit = {"/press-center/news/detail.php?ID=<int:id>", "/upload/<path:rest>"}
    hit |= {"int.khabarovskadm.ru/", "/contacts/", "edu.khabarovskadm.ru/"}
    assert {r.from_text for r in report.unused} == {r.from_text for r in bundled.rules} - hit
    assert len(report.unused) == len(bundled.rules) - 5


def test_drafts_paste_into_the_map_and_answer_their_examples(
    bundled: RedirectMap, log_file: Path, write_map: WriteMap
) -> None:
    report = coverage(bundled, [str(log_file)])
    text = BUNDLED_MAP.read_text(encoding="utf-8")
    extended = load_map(write_map(text + "\n" + "\n".join(d.yaml() for d in report.drafts) + "\n"))
    again = Replay(extended)
    again.feed(LOG.splitlines())
    after = again.report()
    assert after.requests["unmapped"] == 0
    assert after.requests["gone"] == 2 + 5


def test_gzip_and_json_output(bundled: RedirectMap, log_file: Path, tmp_path: Path) -> None:
    gz = tmp_path / "access.log.gz"
    gz.write_bytes(gzip.compress(LOG))
    data = to_json(coverage(bundled, [str(gz), str(log_file)]))
    assert data["requests"] == {
        "redirect": 12,
        "gone": 4,
        "archived": 0,
        "unmapped": 10,
        "skipped": 12,
    }
    assert data["top_unmapped"][0]["hits"] == 6


def test_text_report(bundled: RedirectMap, log_file: Path) -> None:
    text = render(coverage(bundled, [str(log_file)]))
    assert text.splitlines()[0] == (
        "20 lines (1 unreadable), 19 requests: 13 replayed through the map, 6 skipped"
    )
    assert "redirect             6   46.2%             5   45.5%" in text
    assert '  - from: "khabarovskadm.ru/old/section/<int:id>"' in text


def test_html_is_self_contained_and_escaped(bundled: RedirectMap, tmp_path: Path) -> None:
    replay = Replay(bundled)
    replay.feed([W.format("GET /<script>alert(1)</script>").encode(), b"/x\"onmouseover='y'"])
    html = render_html(replay.report(), "<map>.yaml", ["a<b>.log"])
    assert "<script" not in html and "onmouseover='" not in html
    assert "&lt;script&gt;" in html and "&lt;map&gt;.yaml" in html
    assert "http" not in html.replace("https://khv27.ru", "")  # no external resource


@pytest.mark.parametrize(
    ("path", "skipped"),
    [
        pytest.param("/bitrix/js/main/core.js", True, id="js"),
        pytest.param("/fonts/pt-sans.woff2", True, id="font"),
        pytest.param("/apple-touch-icon-120x120.png", True, id="touch-icon"),
        pytest.param("/wp-admin/setup-config.php", True, id="wp-admin"),
        pytest.param("/phpmyadmin2/index.php", True, id="phpmyadmin-variant"),
        pytest.param("/.env", True, id="dotenv"),
        pytest.param("/backup.sql", True, id="sql-dump"),
        pytest.param("/documents/report.pdf", False, id="a-document-is-content"),
        pytest.param("/press-center/news/detail.php", False, id="a-page"),
    ],
)
def test_skip_reason(path: str, skipped: bool) -> None:
    assert bool(skip_reason(path)) is skipped


def test_workers_decide_as_this_process_does(
    bundled: RedirectMap, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cov, "PARALLEL_MIN", 1)
    monkeypatch.setattr(cov, "_CHUNK", 7)
    replay = Replay(bundled)
    replay.feed(LOG.splitlines())
    keys = list(replay.hits)
    here = list(decide_keys(bundled, bundled.default_host, keys, jobs=1))
    forked = list(decide_keys(bundled, bundled.default_host, keys, jobs=2))
    assert forked == here and len(here) == len(keys)


def test_reads_the_gateways_own_access_log_lines(bundled: RedirectMap) -> None:
    # Written by gateway.accesslog, read back by coverage: the two must keep agreeing.
    from gateway.accesslog import access_line
    from gateway.decide import decide

    target = "/press-center/news/detail.php?ID=5&utm_source=%D0%B2%D0%BA"
    outcome = decide(bundled, "GET", "www.khabarovskadm.ru", target)
    environ = {"REQUEST_METHOD": "GET", "HTTP_HOST": "www.khabarovskadm.ru"}
    line = access_line(environ, target, outcome, "redirect", 301, 0.001, bundled)  # type: ignore[arg-type]
    replay = Replay(bundled)
    replay.feed([line.encode()])
    report = replay.report()
    assert report.requests == {"redirect": 1, "gone": 0, "archived": 0, "unmapped": 0, "skipped": 0}
    assert report.rule_hits == {outcome.rule.source: 1}  # type: ignore[union-attr]


def test_drafts_keep_the_spelling_of_query_names(bundled: RedirectMap) -> None:
    # Names match ignoring case, so ID=310 and id=311 are one draft, spelled as first seen.
    replay = Replay(bundled)
    replay.feed([b"/docs/detail.php?ID=310", b"/docs/detail.php?id=311&utm_source=x"])
    (draft,) = replay.report().drafts
    assert (draft.from_text, draft.hits, draft.urls) == (
        "khabarovskadm.ru/docs/detail.php?ID=<int:id>",
        2,
        2,
    )
