"""Tests of gateway.ops.export and the `gateway export` commands (issue 7).

The nginx export is checked here without nginx: every key it writes is replayed
through the gateway's own `decide`, which must give the very answer the key carries
(and every spelling nginx would treat as the same key, i.e. any ASCII case, too).
tests/http/test_nginx.py then runs the real nginx on the same map.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.decide import decide
from gateway.mapfile import RedirectMap, load_map
from gateway.ops.export import (
    CLOUDFLARE_COLUMNS,
    ExportError,
    export_cloudflare,
    export_nginx,
    path_spellings,
)
from gateway.ops.export_csv import CSV_COLUMNS, export_csv
from gateway.ops.nginx_conf import Front, export_standalone
from gateway.outcomes import Redirect
from tests.support import WriteMap

# Every rule kind, both scopes, an alias, Cyrillic, statuses, keep_query, a host rule that
# overrides an every-host one with a banner, and targets nginx cannot quote.
EXPORT_MAP = """\
version: 1
site:
  new_site: https://khv27.ru
  allow_targets: [khv27.ru, "*.khv27.ru"]
  redirect_max_age: 600
hosts:
  khabarovskadm.ru:
    aliases: [www.khabarovskadm.ru]
  int.khabarovskadm.ru: {}
  edu.khabarovskadm.ru: {}
archive:
  notice:
    ru: "Архив."
  wayback: https://web.archive.org/web/20210228000000/
rules:
  - from: /
    to: /
  - from: int.khabarovskadm.ru/
    to: /en/
  - from: /contacts/
    to: /contacts/
  - from: int.khabarovskadm.ru/contacts/
    status: 410
    see: /en/contacts/
  - from: /Новости/
    to: /news/
  - from: /About/Team/
    to: https://www.khv27.ru/team/
    status: 302
  - from: /temp/
    to: /temporary/
    status: 307
  - from: /perm/
    to: /permanent/
    status: 308
  - from: /o'reilly(1)/
    to: /books/
  - from: /search/
    to: /search/
    keep_query: true
  - from: /press-center/news/
    to: /news/
  - from: /press-center/news/index.php?ELEMENT_ID=<int:id>
    to: /news/{id}/
  - from: /press-center/news/detail.php?ID=<int:id>
    to: /news/{id}/
  - from: /docs/?type=law
    to: /documents/laws/
  - from: /eng/<path:rest>
    to: /en/{rest}
  - from: edu.khabarovskadm.ru/school-<int:n>/
    to: /education/schools/{n}/
  - from: /bitrix/redirect.php
    status: 410
  - from: /upload/<path:rest>
    status: 410
    see: /documents/
  - from: /price/
    to: /price$list/
  - from: /-
    to: /dash/
  - from: edu.khabarovskadm.ru/contacts/
    to: /education/contacts/
"""

MAP_LINES = {text: n for n, text in enumerate(EXPORT_MAP.splitlines(), start=1)}


def line_of(from_text: str) -> int:
    """Line of the rule whose `from` is this text in EXPORT_MAP."""
    return MAP_LINES[f"  - from: {from_text}"]


@pytest.fixture
def export_map(write_map: WriteMap) -> RedirectMap:
    return load_map(write_map(EXPORT_MAP))


def nginx_map_entries(text: str, variable: str) -> dict[str, str]:
    """Return the string entries of the nginx `map` that sets `variable`."""
    block = re.search(r"^map [^\n]*" + re.escape(variable) + r" \{\n(.*?)^\}", text, re.M | re.S)
    assert block is not None, f"no map for {variable}"
    entries = dict(re.findall(r'^    "([^"~]*)" "([^"]*)";$', block.group(1), re.M))
    assert all(key for key in entries), "an empty key would swallow every request"
    return entries


def test_nginx_keys_answer_as_the_gateway(export_map: RedirectMap) -> None:
    text, _ = export_nginx(export_map, listen="8081", upstream="127.0.0.1:8080")
    hosts = nginx_map_entries(text, "$legacy_gw_host")
    hosted = nginx_map_entries(text, "$legacy_gw_hosted")
    every = nginx_map_entries(text, "$legacy_gw_every")
    checked = 0
    for name, host in hosts.items():
        assert export_map.host_of(name) == host
        for path, value in every.items():
            answer = hosted.get(f"{host}{path}", value)
            # nginx compares ignoring ASCII case: the upper-case spelling must agree too.
            for spelling in {path, path.upper()}:
                outcome = decide(export_map, "GET", name, spelling)
                if answer == "-":
                    assert not isinstance(outcome, Redirect) or outcome.rule.host == host
                    continue
                status, location = answer.split(" ")
                assert isinstance(outcome, Redirect), (name, spelling, outcome)
                assert (outcome.status, outcome.location) == (int(status), location)
                checked += 1
    for key, value in hosted.items():
        host, _, path = key.partition("/")
        outcome = decide(export_map, "GET", host, "/" + path)
        if value == "-":
            assert not isinstance(outcome, Redirect)
        else:
            assert isinstance(outcome, Redirect)
            assert f"{outcome.status} {outcome.location}" == value
        checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    ("from_text", "kind", "reason"),
    [
        ("int.khabarovskadm.ru/contacts/", "gone", "archive banner"),
        ("/bitrix/redirect.php", "gone", "archive banner"),
        ("/upload/<path:rest>", "gone", "archive banner"),
        ("/eng/<path:rest>", "pattern", "pattern rule"),
        ("edu.khabarovskadm.ru/school-<int:n>/", "pattern", "pattern rule"),
        ("/press-center/news/detail.php?ID=<int:id>", "query", "query condition"),
        ("/docs/?type=law", "query", "query condition"),
        ("/price/", "exact", "'$'"),
    ],
    ids=[
        "host-banner",
        "banner",
        "pattern-banner",
        "path-capture",
        "host-pattern",
        "query-capture",
        "query-literal",
        "dollar-in-target",
    ],
)
def test_nginx_hands_on(export_map: RedirectMap, from_text: str, kind: str, reason: str) -> None:
    _, report = export_nginx(export_map, listen="8081", upstream="127.0.0.1:8080")
    handed = {item.source: item for item in report.rules}
    item = handed[f"{export_map.path}:{line_of(from_text)}"]
    assert item.kind == kind
    assert reason in item.reason


def test_nginx_report_counts_every_rule(export_map: RedirectMap) -> None:
    _, report = export_nginx(export_map, listen="8081", upstream="127.0.0.1:8080")
    total = sum(report.answered.values()) + sum(report.handed_on.values())
    assert total == len(export_map.rules)
    assert report.answered["exact"] == 12
    assert report.handed_on == {"gone": 3, "pattern": 2, "query": 3, "exact": 1}


def test_nginx_host_banner_blocks_the_every_host_rule(export_map: RedirectMap) -> None:
    text, _ = export_nginx(export_map, listen="8081", upstream="127.0.0.1:8080")
    hosted = nginx_map_entries(text, "$legacy_gw_hosted")
    assert hosted["int.khabarovskadm.ru/contacts/"] == "-"
    assert (
        nginx_map_entries(text, "$legacy_gw_every")["/contacts/"]
        == "301 https://khv27.ru/contacts/"
    )


@pytest.mark.parametrize(
    ("path", "absent"),
    [
        ("/-", "/-/"),  # the gateway answers '/-/...' as its service endpoints
        ("/новости", "/Новости"),  # only the folded spelling: other cases go on
    ],
    ids=["service-prefix", "cyrillic-case"],
)
def test_nginx_spellings_left_out(export_map: RedirectMap, path: str, absent: str) -> None:
    text, _ = export_nginx(export_map, listen="8081", upstream="127.0.0.1:8080")
    every = nginx_map_entries(text, "$legacy_gw_every")
    assert path_spellings(path)[0] in every
    assert absent not in every
    assert path_spellings(absent)[0] not in every


def test_nginx_header_states_what_it_sets(export_map: RedirectMap) -> None:
    text, report = export_nginx(export_map, listen="127.0.0.1:8081", upstream="gw:8080")
    head = text.split("\n\n", 1)[0]
    bucket = re.search(r"^map_hash_bucket_size (\d+);$", text, re.M)
    size = re.search(r"^map_hash_max_size (\d+);$", text, re.M)
    assert bucket and size
    assert f"map_hash_bucket_size {bucket.group(1)};" in head
    assert f"map_hash_max_size {size.group(1)};" in head
    assert "listen 127.0.0.1:8081;" in text
    assert "server gw:8080;" in text
    assert "proxy_pass http://legacy_gateway;" in text  # no URI part: the raw URI goes on
    assert 'add_header Cache-Control "public, max-age=600" always;' in text
    assert report.entries == len(nginx_map_entries(text, "$legacy_gw_hosted")) + len(
        nginx_map_entries(text, "$legacy_gw_every")
    )


def test_nginx_case_sensitive_map_answers_nothing(write_map: WriteMap) -> None:
    redirect_map = load_map(
        write_map(EXPORT_MAP.replace("redirect_max_age: 600", "case_sensitive: true"))
    )
    text, report = export_nginx(redirect_map, listen="8081", upstream="127.0.0.1:8080")
    assert nginx_map_entries(text, "$legacy_gw_every") == {}
    assert sum(report.answered.values()) == 0
    assert "return 30" not in text


def test_nginx_listens_on_each_address(export_map: RedirectMap) -> None:
    text, _ = export_nginx(export_map, listen=["80", "[::1]:443 ssl"], upstream="gw:8080")
    assert re.findall(r"^    listen (.*);$", text, re.M) == ["80", "[::1]:443 ssl"]


@pytest.mark.parametrize(
    ("listen", "upstream"),
    [
        ("80; include /etc/passwd", "127.0.0.1:8080"),
        ("443 ssl; include /etc/passwd", "127.0.0.1:8080"),
        ([], "127.0.0.1:8080"),
        ("8081", "127.0.0.1"),
        ("8081", "a b:1"),
    ],
    ids=[
        "listen-injection",
        "ssl-injection",
        "no-listen",
        "upstream-without-port",
        "upstream-space",
    ],
)
def test_nginx_refuses_bad_options(
    export_map: RedirectMap, listen: str | list[str], upstream: str
) -> None:
    with pytest.raises(ExportError):
        export_nginx(export_map, listen=listen, upstream=upstream)


def cloudflare_rows(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == CLOUDFLARE_COLUMNS
    return list(reader)


def test_cloudflare_rows_answer_as_the_gateway(export_map: RedirectMap) -> None:
    text, _ = export_cloudflare(export_map)
    rows = cloudflare_rows(text)
    assert len({row["source_url"] for row in rows}) == len(rows), "Cloudflare refuses duplicates"
    for row in rows:
        host, _, path = row["source_url"].partition("/")
        outcome = decide(export_map, "GET", host, "/" + path)
        assert isinstance(outcome, Redirect), row
        assert (str(outcome.status), outcome.location) == (row["status_code"], row["target_url"])
        assert row["preserve_query_string"] == ("TRUE" if outcome.rule.keep_query else "FALSE")
        flags = (row["include_subdomains"], row["subpath_matching"], row["preserve_path_suffix"])
        assert flags == ("FALSE", "FALSE", "FALSE")


@pytest.mark.parametrize(
    ("source_url", "why"),
    [
        ("int.khabarovskadm.ru/contacts/", "the host's own 410 rule wins there"),
        ("khabarovskadm.ru/press-center/news/", "ELEMENT_ID rule on the same path"),
        ("khabarovskadm.ru/docs/", "a query condition"),
        ("edu.khabarovskadm.ru/school-1/", "a pattern"),
        ("khabarovskadm.ru/upload/x.pdf", "a banner"),
    ],
    ids=["host-banner", "shared-path", "query", "pattern", "banner"],
)
def test_cloudflare_leaves_out(export_map: RedirectMap, source_url: str, why: str) -> None:
    text, _ = export_cloudflare(export_map)
    assert source_url not in {row["source_url"] for row in cloudflare_rows(text)}, why


def test_cloudflare_carries_aliases_and_host_rules(export_map: RedirectMap) -> None:
    text, report = export_cloudflare(export_map)
    rows = {row["source_url"]: row for row in cloudflare_rows(text)}
    assert rows["www.khabarovskadm.ru/contacts"]["target_url"] == "https://khv27.ru/contacts/"
    assert rows["edu.khabarovskadm.ru/contacts/"]["target_url"] == (
        "https://khv27.ru/education/contacts/"
    )
    assert rows["int.khabarovskadm.ru/"]["target_url"] == "https://khv27.ru/en/"
    assert rows["khabarovskadm.ru/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/"]["status_code"] == (
        "301"
    )
    assert rows["khabarovskadm.ru/search/"]["preserve_query_string"] == "TRUE"
    assert report.entries == len(rows)
    carried = sum(report.answered.values())
    assert carried + sum(report.handed_on.values()) == len(export_map.rules)


def test_csv_one_row_per_rule(export_map: RedirectMap) -> None:
    reader = csv.DictReader(io.StringIO(export_csv(export_map)))
    assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
    rows = list(reader)
    assert [row["source"] for row in rows] == [rule.source for rule in export_map.rules]
    by_from = {row["from"]: row for row in rows}
    detail = by_from["/press-center/news/detail.php?ID=<int:id>"]
    assert detail["conditions"] == "ID=<int:id>"
    assert detail["canonical_path"] == "/press-center/news/detail.php"
    assert by_from["/Новости/"]["canonical_path"] == "/новости"
    assert by_from["/upload/<path:rest>"]["see"] == "https://khv27.ru/documents/"
    assert by_from["int.khabarovskadm.ru/"]["host"] == "int.khabarovskadm.ru"
    assert by_from["/"]["host"] == "*"
    assert by_from["/search/"]["keep_query"] == "true"


def test_cli_nginx_writes_file_and_report(export_map: RedirectMap, tmp_path: Path) -> None:
    out = tmp_path / "legacy.conf"
    result = CliRunner().invoke(
        main,
        [
            "export",
            "nginx",
            "--map",
            export_map.path,
            "--listen",
            "8081",
            "--upstream",
            "127.0.0.1:8080",
            "-o",
            str(out),
            "-v",
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("# Generated by `gateway export nginx`")
    assert "nginx:" in result.stderr
    assert f"{export_map.path}:{line_of('/eng/<path:rest>')}: pattern:" in result.stderr
    assert result.stdout == ""


def test_cli_cloudflare_lists_what_it_cannot_carry(export_map: RedirectMap) -> None:
    result = CliRunner().invoke(main, ["export", "cloudflare", "--map", export_map.path])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(",".join(CLOUDFLARE_COLUMNS) + "\n")
    assert f"{export_map.path}:{line_of('/docs/?type=law')}: query:" in result.stderr


def test_cli_csv_to_stdout(export_map: RedirectMap) -> None:
    result = CliRunner().invoke(main, ["export", "csv", "--map", export_map.path])
    assert result.exit_code == 0, result.output
    assert result.stdout == export_csv(export_map)


def test_cli_bad_map_exits_1(write_map: WriteMap) -> None:
    path = write_map("version: 1\nsite: {}\n")
    result = CliRunner().invoke(main, ["export", "csv", "--map", str(path)])
    assert result.exit_code == 1
    assert f"{path}:" in result.stderr


# Spec §2/§3 corrections: rules that now compile to exact, condition-free paths.
CORRECTIONS_MAP = """\
version: 1
site:
  new_site: https://khv27.ru
hosts:
  khabarovskadm.ru: {}
archive:
  notice:
    ru: "Архив."
rules:
  - {from: "/lt%3Cid%3E", to: /lt/}
  - {from: "/this?=2", to: /this/}
  - {from: "/a/b//../..", to: /a/}
  - {from: "/c", to: /c/}
"""


@pytest.mark.parametrize(
    ("key", "location"),
    [
        ("/lt%3Cid%3E", "https://khv27.ru/lt/"),
        ("/lt%3Cid%3E/index.php", "https://khv27.ru/lt/"),
        ("/this", "https://khv27.ru/this/"),
        ("/a", "https://khv27.ru/a/"),
    ],
    ids=[
        "escaped-brackets-are-an-exact-key-nginx-answers-as-the-gateway",
        "its-index-spelling-too",
        "a-from-with-an-empty-query-name-is-condition-free",
        "a-from-with-dots-after-double-slash-keys-on-its-resolved-path",
    ],
)
def test_nginx_keys_of_the_spec_corrections(write_map: WriteMap, key: str, location: str) -> None:
    redirect_map = load_map(write_map(CORRECTIONS_MAP))
    text, report = export_nginx(redirect_map, listen="8081", upstream="127.0.0.1:8080")
    every = nginx_map_entries(text, "$legacy_gw_every")
    assert every[key] == f"301 {location}"
    # nginx compares ignoring ASCII case (escapes' hex digits too): the gateway agrees.
    for spelling in (key, key.upper(), key.lower()):
        outcome = decide(redirect_map, "GET", "khabarovskadm.ru", spelling)
        assert isinstance(outcome, Redirect)
        assert (outcome.status, outcome.location) == (301, location)
    assert report.answered["exact"] == 4


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/a/b//../..", "https://khv27.ru/a/"),
        ("/c/x//..", None),
        ("/c/x//../..", "https://khv27.ru/c/"),
        ("/c/x/%2F/../..", None),
        ("//c", "https://khv27.ru/c/"),
        ("/this?=2", "https://khv27.ru/this/"),
        ("/lt<id>", "https://khv27.ru/lt/"),
    ],
    ids=[
        "dot-segments-with-double-slash",
        "dot-dot-removes-the-empty-segment-not-x-as-merging-slashes-first-would",
        "two-dot-dots-remove-the-empty-segment-and-x",
        "escaped-slash-empty-segments-count-too",
        "double-slash",
        "any-query",
        "raw-angle-brackets",
    ],
)
def test_nginx_hands_dots_slashes_and_queries_to_the_gateway(
    write_map: WriteMap, target: str, location: str | None
) -> None:
    """What nginx would resolve its own way is no key: the gateway answers it (§7)."""
    redirect_map = load_map(write_map(CORRECTIONS_MAP))
    text, _ = export_nginx(redirect_map, listen="8081", upstream="127.0.0.1:8080")
    keys = {k.lower() for k in nginx_map_entries(text, "$legacy_gw_every")}
    assert target.lower() not in keys
    outcome = decide(redirect_map, "GET", "khabarovskadm.ru", target)
    found = outcome.location if isinstance(outcome, Redirect) else None
    assert found == location


# --- the standalone front (issue 13); tests/http/test_front.py runs it under attack ---


def test_standalone_holds_the_include_form_and_sizes_itself(export_map: RedirectMap) -> None:
    include, _ = export_nginx(export_map, listen="8081", upstream="127.0.0.1:8080")
    front = Front(max_connections=1000, per_address=10, client_timeout=7)
    text, _ = export_standalone(export_map, listen="8081", upstream="127.0.0.1:8080", front=front)
    assert "limit_conn" not in include and "backlog" not in include  # include form unchanged
    include = include.replace("listen 8081;", "listen 8081 backlog=1000;")
    body = [f"    {line}" if line else "" for line in include.splitlines() if line[:1] != "#"]
    lines = iter(text.splitlines())
    assert all(any(got == want for got in lines) for want in body), "include form not kept"
    number = {k: int(v) for k, v in re.findall(r"^\s*(\w+) (\d+);$", text, re.M)}
    assert number["worker_connections"] >= 2 * 1000
    assert number["worker_rlimit_nofile"] >= 2 * number["worker_connections"]
    for directive in (
        "limit_conn legacy_gw_addr 10;",
        "limit_conn_status 429;",
        "send_timeout 7s;",
    ):
        assert directive in text
    assert not re.search(r"^\s*(pid|error_log|access_log|\w+_temp_path) /", text, re.M)
    assert not re.search(r"^\s*(user|daemon) ", text, re.M)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--standalone", "--service-allow", "10.0.0.1/8"], "10.0.0.1/8 has host bits set"),
        (["--standalone", "--service-allow", "localhost"], "does not appear to be an IPv4 or IPv6"),
        (["--service-allow", "10.0.0.0/8"], "--service-allow: only with --standalone"),
        (["--standalone", "--per-address", "0"], "--per-address"),
        (["--standalone", "--max-connections", "100", "--per-address", "200"], "--per-address"),
        (["--standalone", "--listen", "443 ssl"], "writes no certificates"),
    ],
    ids=["host-bits", "not-a-cidr", "without-standalone", "zero", "over-max", "ssl"],
)
def test_cli_standalone_refuses_bad_flags(
    export_map: RedirectMap, args: list[str], message: str
) -> None:
    base = ["export", "nginx", "--map", export_map.path, "--listen", "80", "--upstream", "gw:8080"]
    result = CliRunner().invoke(main, [*base, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
