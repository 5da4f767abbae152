"""Spec §9: robots.txt, sitemap.xml and the icon, answered by the gateway on every served host."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gateway import crawlers
from gateway.app import create_app
from gateway.crawlers import CLEAN_PARAM_LINE, clean_param_names, robots_txt
from gateway.mapfile import MapError, RedirectMap, load_map
from tests.support import BUNDLED_MAP, WriteMap

SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
HOUR = "public, max-age=3600"


@pytest.fixture(scope="module")
def bundled_client() -> FlaskClient:
    """A client of the bundled map (this module's `client` serves a small map of its own)."""
    return create_app({"TESTING": True, "MAP_PATH": str(BUNDLED_MAP)}).test_client()


def served_hosts(bundled: RedirectMap) -> list[str]:
    return list(bundled.named_hosts)


def get(bundled_client: FlaskClient, target: str, host: str) -> TestResponse:
    return bundled_client.get(target, headers={"Host": host})


def locs(xml: bytes) -> list[str]:
    root = ET.fromstring(xml)
    return [e.text or "" for e in root.iter(f"{SITEMAP_NS}loc")]


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/robots.txt", id="robots"),
        pytest.param("/ROBOTS.TXT", id="robots-any-case-as-every-path"),
        pytest.param("/robots.txt?utm_source=x", id="robots-with-a-query"),
    ],
)
def test_robots_on_every_host(
    bundled_client: FlaskClient, bundled: RedirectMap, target: str
) -> None:
    for host in served_hosts(bundled):
        response = bundled_client.get(target, headers={"Host": host})
        assert (response.status_code, response.headers.get("Location")) == (200, None)
        assert response.headers["Cache-Control"] == HOUR
        assert response.mimetype == "text/plain"
        text = response.get_data(as_text=True)
        assert f"Sitemap: http://{host}/sitemap.xml" in text.splitlines()
        assert "Allow: /" in text and "Disallow" not in text


def test_robots_is_not_answered_on_a_host_outside_the_map(bundled_client: FlaskClient) -> None:
    response = bundled_client.get("/robots.txt", headers={"Host": "evil.example"})
    assert (response.status_code, response.headers["Cache-Control"]) == (404, "no-store")


def test_clean_param_names_the_ignored_parameters(bundled: RedirectMap) -> None:
    text = robots_txt(bundled, "http://khabarovskadm.ru")
    lines = [line for line in text.splitlines() if line.startswith("Clean-param: ")]
    names = "&".join(line.removeprefix("Clean-param: ") for line in lines).split("&")
    assert {"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"} <= set(names)
    assert "gclid" in names
    assert not any(c in "".join(names) for c in "*?["), "Yandex takes names, not globs"
    assert all(len(line) <= CLEAN_PARAM_LINE for line in lines)


@pytest.mark.parametrize(
    ("globs", "names"),
    [
        pytest.param(
            ("utm_*",),
            ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"],
            id="utm-spelled-out",
        ),
        pytest.param(("gclid", "gclid"), ["gclid"], id="duplicates-once"),
        pytest.param(("x_*",), [], id="unknown-glob-cannot-be-named"),
        pytest.param(
            ("print", "utm_source", "utm_*"),
            ["print", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"],
            id="order-kept",
        ),
    ],
)
def test_clean_param_names(globs: tuple[str, ...], names: list[str]) -> None:
    assert clean_param_names(globs) == names


def test_a_long_clean_param_list_is_split_into_lines() -> None:
    names = [f"param_number_{n}" for n in range(100)]
    lines = list(crawlers._groups(names))
    assert len(lines) > 1
    assert all(len("Clean-param: " + line) <= CLEAN_PARAM_LINE for line in lines)
    assert "&".join(lines).split("&") == names


def test_every_sitemap_url_answers_301(bundled_client: FlaskClient, bundled: RedirectMap) -> None:
    listed = 0
    for host in served_hosts(bundled):
        response = bundled_client.get("/sitemap.xml", headers={"Host": host})
        assert (response.status_code, response.headers["Cache-Control"]) == (200, HOUR)
        assert response.mimetype == "application/xml"
        for url in locs(response.data):
            parts = urlsplit(url)
            assert parts.netloc == host, "a sitemap lists only its own host's URLs"
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            answer = bundled_client.get(target, headers={"Host": host})
            assert answer.status_code == 301, url
            listed += 1
    assert listed > len(served_hosts(bundled)), "the bundled map has exact redirects to list"


def test_a_host_scoped_rule_is_listed_on_its_host_only(
    bundled_client: FlaskClient, bundled: RedirectMap
) -> None:
    # A path that only this host's rule has ("/" is a rule for every host too).
    scoped = next(r for r in bundled.rules if r.host and r.is_exact and r.target and r.path != "/")
    other = next(h for h in served_hosts(bundled) if h != scoped.host)
    path = scoped.from_text.split(scoped.host, 1)[1]
    assert any(
        urlsplit(u).path == path
        for u in locs(get(bundled_client, "/sitemap.xml", scoped.host).data)
    )
    assert not any(
        urlsplit(u).path == path for u in locs(get(bundled_client, "/sitemap.xml", other).data)
    )


@pytest.fixture
def map_path(write_map: WriteMap) -> Path:
    return write_map(
        """
        version: 1
        site: {new_site: "https://new.example"}
        hosts: {old.example: {}}
        archive: {notice: {ru: "Архив."}}
        rules:
          - {from: /a/, to: /a/}
          - {from: "/news/detail.php?ID=7", to: /news/7/}
          - {from: "/news/detail.php?ID=<int:id>", to: "/news/{id}/"}
          - {from: /gone, status: 410}
          - {from: "/p/<path:rest>", to: "/p/{rest}"}
          - {from: /b, to: /b}
          - {from: /c, to: /c}
          - {from: /favicon.ico, to: /favicon.ico}
        """
    )


def test_sitemap_lists_exact_redirects_only(client: FlaskClient) -> None:
    response = client.get("/sitemap.xml", headers={"Host": "old.example"})
    assert locs(response.data) == [
        "http://old.example/a/",
        "http://old.example/news/detail.php?ID=7",
        "http://old.example/b",
        "http://old.example/c",
        "http://old.example/favicon.ico",
    ]


def test_past_the_limit_the_sitemap_is_an_index_of_parts(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crawlers, "SITEMAP_LIMIT", 2)
    crawlers._cache.clear()
    index = client.get("/sitemap.xml", headers={"Host": "old.example"})
    assert ET.fromstring(index.data).tag == f"{SITEMAP_NS}sitemapindex"
    parts = locs(index.data)
    assert parts == [f"http://old.example/sitemap.xml?part={n}" for n in (1, 2, 3)]
    urls = []
    for part in parts:
        page = client.get(
            urlsplit(part).path + "?" + urlsplit(part).query, headers={"Host": "old.example"}
        )
        assert (page.status_code, page.headers["Cache-Control"]) == (200, HOUR)
        urls += locs(page.data)
    assert len(urls) == 5
    missing = client.get("/sitemap.xml?part=4", headers={"Host": "old.example"})
    assert (missing.status_code, missing.headers["Cache-Control"]) == (404, "no-store")
    crawlers._cache.clear()


def test_a_rule_for_the_icon_wins_over_the_gateways_own(client: FlaskClient) -> None:
    response = client.get("/favicon.ico", headers={"Host": "old.example"})
    assert (response.status_code, response.headers["Location"]) == (
        301,
        "https://new.example/favicon.ico",
    )


def test_the_icon_is_an_icon_not_the_banner(bundled_client: FlaskClient) -> None:
    response = bundled_client.get("/favicon.ico", headers={"Host": "khabarovskadm.ru"})
    assert (response.status_code, response.headers.get("Location")) == (200, None)
    assert response.headers["Cache-Control"] == HOUR
    assert response.mimetype == "image/x-icon"
    assert response.data[:4] == b"\0\0\1\0", "an ICO file header"


@pytest.mark.parametrize(
    "from_text",
    [
        pytest.param("/robots.txt", id="robots"),
        pytest.param("/Sitemap.XML/", id="sitemap-in-any-spelling"),
        pytest.param("old.example/robots.txt", id="even-for-one-host"),
    ],
)
def test_a_rule_for_a_file_of_the_gateways_is_a_load_error(
    write_map: WriteMap, from_text: str
) -> None:
    path = write_map(
        f"""
        version: 1
        site: {{new_site: "https://new.example"}}
        hosts: {{old.example: {{}}}}
        archive: {{notice: {{ru: "Архив."}}}}
        rules:
          - {{from: "{from_text}", to: /}}
        """
    )
    with pytest.raises(MapError, match=r":6: error: from: /\w+\.\w+ is answered by the gateway"):
        load_map(path)


def test_a_csv_row_for_robots_is_a_load_error_too(write_map: WriteMap, tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("from,to\n/a,/a\n/robots.txt,/\n", encoding="utf-8")
    path = write_map(
        """
        version: 1
        site: {new_site: "https://new.example"}
        hosts: {old.example: {}}
        archive: {notice: {ru: "Архив."}}
        include: rows.csv
        """
    )
    with pytest.raises(MapError, match=r"rows.csv:3: error: from: /robots.txt is answered"):
        load_map(path)


@pytest.fixture
def walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts whose rules the sitemaps walk, from empty caches (each walk takes 0.2 s)."""
    walked: list[str] = []
    real = crawlers._rule_targets

    def slow(redirect_map: RedirectMap, host: str, decide: crawlers.Decide) -> object:
        walked.append(host)
        time.sleep(0.2)  # long enough for every other thread to arrive meanwhile
        return real(redirect_map, host, decide)

    monkeypatch.setattr(crawlers, "_rule_targets", slow)
    monkeypatch.setattr(crawlers, "_cache", {})
    monkeypatch.setattr(crawlers, "_walks", {})
    return walked


def test_the_subdomains_of_a_wildcard_share_one_walk_of_the_rules(
    bundled: RedirectMap, walks: list[str]
) -> None:
    """A crawler (or an attacker) asking a thousand subdomains walks a big map once."""
    from gateway.decide import decide

    found = [
        crawlers.sitemap(bundled, f"s{n}.khabarovskadm.ru", decide).targets for n in range(1000)
    ]
    assert len(walks) == 1
    assert all(targets == found[0] for targets in found)
    assert found[0]  # the every-host redirects are listed there
    crawlers.sitemap(bundled, "khabarovskadm.ru", decide)
    assert walks == ["s0.khabarovskadm.ru", "khabarovskadm.ru"]  # a named host: its own walk


def test_concurrent_requests_for_one_sitemap_walk_the_rules_once(
    bundled: RedirectMap, walks: list[str]
) -> None:
    """Eight threads asking at once: one walk, the others wait for its result."""
    import threading

    from gateway.decide import decide

    found: list[tuple[str, ...]] = []
    threads = [
        threading.Thread(
            target=lambda: found.append(crawlers.sitemap(bundled, HOST, decide).targets)
        )
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert walks == [HOST] and len(found) == 8 and len(set(found)) == 1


HOST = "khabarovskadm.ru"
