"""The commands on a map with a web archive: explain names the capture, coverage counts it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.mapfile import RedirectMap, load_map
from gateway.ops.coverage import coverage
from gateway.ops.explain import explain, render
from tests.archives import OLD_SITE, archive_map, write_warc

PAGE = "http://khabarovskadm.ru/city/nocharset/"


@pytest.fixture(scope="module")
def archived_map(tmp_path_factory: pytest.TempPathFactory) -> RedirectMap:
    folder = tmp_path_factory.mktemp("archive-ops")
    write_warc(folder / "site.warc.gz", OLD_SITE)
    return load_map(archive_map(folder, ["site.warc.gz"], ["{from: /ruled/, to: /new/}"]))


def test_explain_names_the_capture(archived_map: RedirectMap) -> None:
    explanation = explain(archived_map, PAGE)
    response = explanation.response
    assert (response.status, response.kind, response.cache_control) == (
        200,
        "archived",
        "public, max-age=3600",
    )
    assert response.reason is not None
    assert "site.warc.gz at byte " in response.reason and PAGE in response.reason
    assert "200" in render(explanation) and "archived capture" in render(explanation)


def test_explain_json_through_the_command(archived_map: RedirectMap) -> None:
    result = CliRunner().invoke(main, ["explain", "--map", archived_map.path, "--json", PAGE])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    entry = data[0] if isinstance(data, list) else data
    assert entry["response"]["kind"] == "archived"


def test_coverage_counts_archived_answers_as_their_own(
    archived_map: RedirectMap, tmp_path: Path
) -> None:
    log = tmp_path / "urls.txt"
    log.write_text(f"{PAGE}\nhttp://khabarovskadm.ru/ruled/\nhttp://khabarovskadm.ru/nope/\n")
    report = coverage(archived_map, [str(log)])
    assert report.requests == {
        "redirect": 1,
        "gone": 0,
        "archived": 1,
        "unmapped": 1,
        "skipped": 0,
    }


def test_check_loads_a_map_with_an_archive(archived_map: RedirectMap) -> None:
    result = CliRunner().invoke(main, ["check", "--map", archived_map.path])
    assert result.exit_code == 0, result.output
    assert "0 errors" in result.output


def test_the_sitemap_lists_the_captures_that_answer(archived_map: RedirectMap) -> None:
    import re
    from urllib.parse import urlsplit

    from gateway.app import create_app

    client = create_app({"TESTING": True, "MAP_PATH": archived_map.path}).test_client()
    response = client.get("/sitemap.xml", headers={"Host": "khabarovskadm.ru"})
    assert (response.status_code, response.headers["Cache-Control"]) == (
        200,
        "public, max-age=3600",
    )
    urls = re.findall(r"<loc>([^<]+)</loc>", response.get_data(as_text=True))
    assert "http://khabarovskadm.ru/city/nocharset/" in urls
    assert not any("missing" in u for u in urls), "a captured 404 is not listed"
    for url in urls:
        parts = urlsplit(url.replace("&amp;", "&"))
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        answer = client.get(target, headers={"Host": "khabarovskadm.ru"})
        assert answer.status_code in (200, 301), (url, answer.status_code)


def test_the_exports_say_what_they_do_with_archived_urls(archived_map: RedirectMap) -> None:
    from gateway.ops.export import export_cloudflare, export_nginx

    _, cloudflare = export_cloudflare(archived_map)
    assert any("archived captures" in n and "not carried" in n for n in cloudflare.notes)
    _, nginx = export_nginx(archived_map, listen="80", upstream="127.0.0.1:8080")
    assert any("archived captures: the gateway answers" in n for n in nginx.notes)


def test_coverage_of_the_archive_is_an_inventory_of_the_old_site(
    archived_map: RedirectMap,
) -> None:
    result = CliRunner().invoke(
        main, ["coverage", "--map", archived_map.path, "--archive", "--json"]
    )
    assert result.exit_code == 0, result.output
    requests = json.loads(result.output)["requests"]
    assert requests["archived"] >= 1
    served = len(archived_map.captures)
    assert (
        sum(requests[k] for k in ("redirect", "gone", "archived", "unmapped", "skipped")) == served
    )


def test_coverage_needs_a_log_or_the_archive(archived_map: RedirectMap) -> None:
    result = CliRunner().invoke(main, ["coverage", "--map", archived_map.path])
    assert result.exit_code == 2
    assert "give a LOG, or --archive" in result.output
