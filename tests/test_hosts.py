"""The whole retired domain: wildcard hosts (spec §1a) and the map's English sections."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from gateway.mapfile import MapError, RedirectMap, load_map
from tests.support import WriteMap

BANNER_CACHE = "public, max-age=3600"
KNOWN_HOSTS = [
    "www.khabarovskadm.ru",
    "archive.",
    "dasiz.",
    "duma.",
    "edu.",
    "eaist.",
    "geoportal.",
    "health.",
    "int.",
    "ksp.",
    "mail.",
    "nko.",
    "owa.",
    "services.",
    "youth.",
    "pmp.",
    "dms.",
]


def full(name: str) -> str:
    return name + "khabarovskadm.ru" if name.endswith(".") else name


@pytest.mark.parametrize(
    ("name", "served"),
    [
        pytest.param("duma.khabarovskadm.ru", "duma.khabarovskadm.ru", id="declared-by-name"),
        pytest.param("zzz.khabarovskadm.ru", "zzz.khabarovskadm.ru", id="undeclared-is-itself"),
        pytest.param("a.b.khabarovskadm.ru", "a.b.khabarovskadm.ru", id="any-depth"),
        pytest.param("ZZZ.KhabarovskADM.ru.:8080", "zzz.khabarovskadm.ru", id="canonical-form"),
        pytest.param("www.khabarovskadm.ru", "khabarovskadm.ru", id="alias-before-wildcard"),
        pytest.param("khabarovskadm.ru.evil.example", None, id="suffix-trick-after"),
        pytest.param("xkhabarovskadm.ru", None, id="no-dot-before-the-domain"),
        pytest.param("evil-khabarovskadm.ru", None, id="hyphen-is-not-a-dot"),
        pytest.param("*.khabarovskadm.ru", None, id="the-wildcard-itself-is-no-host"),
        pytest.param(".khabarovskadm.ru", None, id="empty-label"),
        pytest.param("a..khabarovskadm.ru", None, id="empty-inner-label"),
        pytest.param("a_b.khabarovskadm.ru", None, id="underscore-is-not-dns"),
        pytest.param("-a.khabarovskadm.ru", None, id="leading-hyphen"),
        pytest.param("<x>.khabarovskadm.ru", None, id="markup-never-a-host"),
        pytest.param("a b.khabarovskadm.ru", None, id="space-never-a-host"),
        pytest.param("x" * 64 + ".khabarovskadm.ru", None, id="label-over-63"),
        pytest.param("evil.example", None, id="outside-the-domain"),
    ],
)
def test_host_of(bundled: RedirectMap, name: str, served: str | None) -> None:
    assert bundled.host_of(name) == served


def test_every_known_host_is_declared(bundled: RedirectMap) -> None:
    for name in KNOWN_HOSTS:
        assert full(name) in bundled.hosts, name
    assert "*.khabarovskadm.ru" in bundled.hosts
    assert bundled.default_host == "khabarovskadm.ru"
    assert "*.khabarovskadm.ru" not in bundled.named_hosts


MAP = """
version: 1
site: {{new_site: "https://new.example"}}
hosts:
{hosts}
archive:
  notice: {{ru: "Архив.", en: "Archive."}}
{archive}
rules:
{rules}
"""


def write(
    write_map: WriteMap, hosts: str, rules: str = "  - {from: /, to: /}", archive: str = ""
) -> Path:
    return write_map(MAP.format(hosts=hosts, rules=rules, archive=archive))


@pytest.mark.parametrize(
    ("hosts", "rules", "line", "message"),
    [
        pytest.param(
            '  old.example: {}\n  "*.old.example": {aliases: [x.example]}',
            "  - {from: /, to: /}",
            5,
            "a wildcard host has no aliases",
            id="wildcard-with-aliases",
        ),
        pytest.param(
            '  "*.": {}',
            "  - {from: /, to: /}",
            4,
            "is not a wildcard host",
            id="wildcard-without-domain",
        ),
        pytest.param(
            '  "*.com.*": {}', "  - {from: /, to: /}", 4, "is not a wildcard host", id="two-stars"
        ),
        pytest.param(
            '  "a*.old.example": {}',
            "  - {from: /, to: /}",
            4,
            "is not a host name",
            id="star-inside-a-name",
        ),
        pytest.param(
            '  old.example: {}\n  "*.old.example": {}',
            '  - {from: "*.old.example/x", to: /}',
            10,
            "not declared under 'hosts:'",
            id="rule-scoped-to-a-wildcard",
        ),
    ],
)
def test_wildcard_errors(
    write_map: WriteMap, hosts: str, rules: str, line: int, message: str
) -> None:
    path = write(write_map, hosts, rules)
    with pytest.raises(MapError) as caught:
        load_map(path)
    problems = [p for p in caught.value.problems if message in p.message]
    assert problems, caught.value.problems
    assert problems[0].line == line, str(problems[0])


@pytest.mark.parametrize(
    ("entry", "host", "path", "english"),
    [
        pytest.param(
            "/tourism-en/", "old.example", "/tourism-en/sights", True, id="under-the-prefix"
        ),
        pytest.param("/tourism-en/", "old.example", "/tourism-en", True, id="the-prefix-itself"),
        pytest.param(
            "/tourism-en/", "old.example", "/tourism-english", False, id="segment-boundary"
        ),
        pytest.param("/Tourism-EN", "old.example", "/tourism-en/x", True, id="case-folded"),
        pytest.param("int.old.example/", "int.old.example", "/any/page", True, id="a-whole-host"),
        pytest.param("int.old.example/", "old.example", "/any/page", False, id="other-host"),
    ],
)
def test_english_sections(
    write_map: WriteMap, entry: str, host: str, path: str, english: bool
) -> None:
    hosts = "  old.example: {}\n  int.old.example: {}"
    redirect_map = load_map(write(write_map, hosts, archive=f'  english: ["{entry}"]'))
    assert redirect_map.archive.is_english(host, path) is english


def test_an_english_entry_without_a_path_is_an_error(write_map: WriteMap) -> None:
    path = write(write_map, "  old.example: {}", archive='  english: ["old.example"]')
    with pytest.raises(MapError, match=r":7: error: archive.english entry 'old.example'"):
        load_map(path)


@pytest.mark.parametrize(
    ("host", "target", "accept", "lang"),
    [
        pytest.param(
            "int.khabarovskadm.ru",
            "/ru/nothing",
            "ru",
            "en",
            id="int-is-english-for-a-russian-reader",
        ),
        pytest.param(
            "khabarovskadm.ru",
            "/tourism-en/x/index.php?ELEMENT_ID=7",
            "ru",
            "en",
            id="tourism-en-is-english",
        ),
        pytest.param(
            "khabarovskadm.ru", "/tourism/x", "ru", "ru", id="russian-section-stays-russian"
        ),
        pytest.param(
            "zzz.khabarovskadm.ru", "/nothing", "ru", "ru", id="wildcard-host-follows-the-reader"
        ),
        pytest.param(
            "zzz.khabarovskadm.ru", "/nothing", "en", "en", id="wildcard-host-english-reader"
        ),
    ],
)
def test_banner_language_on_the_domain(
    bundled_client: FlaskClient, host: str, target: str, accept: str, lang: str
) -> None:
    response = bundled_client.get(target, headers={"Host": host, "Accept-Language": accept})
    assert (response.status_code, response.headers.get("Location")) == (404, None)
    assert response.headers["Cache-Control"] == BANNER_CACHE
    assert response.headers["Content-Language"] == lang
    assert f'<html lang="{lang}">' in response.get_data(as_text=True)


def test_an_unknown_subdomain_gets_the_banner_in_its_own_name(bundled_client: FlaskClient) -> None:
    response = bundled_client.get("/some/page/", headers={"Host": "old-portal.khabarovskadm.ru"})
    assert (response.status_code, response.headers.get("Location")) == (404, None)
    assert response.headers["Cache-Control"] == BANNER_CACHE
    assert "old-portal.khabarovskadm.ru/some/page/" in response.get_data(as_text=True)


def test_an_unknown_subdomain_gets_every_host_rules(bundled_client: FlaskClient) -> None:
    response = bundled_client.get("/press-center/", headers={"Host": "old-portal.khabarovskadm.ru"})
    assert (response.status_code, response.headers["Location"]) == (301, "https://khv27.ru/news/")
    assert response.headers["Cache-Control"] == "public, max-age=86400"


@pytest.fixture(scope="module")
def bundled_client(bundled: RedirectMap) -> FlaskClient:
    from gateway.app import create_app

    return create_app({"TESTING": True, "MAP_PATH": bundled.path}).test_client()
