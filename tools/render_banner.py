#!/usr/bin/env python3
"""Render the archive banner page for visual and security checks.

    python3 tools/render_banner.py OUT_DIR [--screenshots] [--chromium PATH]

Renders gateway/templates/banner.html with Jinja2 directly (autoescape on, as
Flask does for .html) for a few cases and writes, for each case, OUT_DIR/<case>.html.
Each page carries a <meta http-equiv="Content-Security-Policy"> with the
gateway's banner policy, the style hash computed from gateway/static/banner.css,
so a screenshot that shows the styles applied proves the CSP admits them.
One extra page, csp-wrong-hash.html, uses a wrong hash: its screenshot must
show an unstyled page (the policy is really enforced).

With --screenshots, takes headless Chromium screenshots of every page at
375x812 and 1280x800 (light and dark scheme) into OUT_DIR/png/ and fails if
Chromium reports a CSP violation on a correctly hashed page.

Run from the repository root. Checks that do not need a browser (escaping,
CSS text safe to inline, no inline style attributes or scripts) always run.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader

from gateway.banner import TEXTS, BannerPage, displayed_url

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "gateway" / "templates"
CSS = ROOT / "gateway" / "static" / "banner.css"

NOTICE_RU = (
    "С 01.03.2021 осуществлен запуск новой версии сайта администрации города "  # noqa: RUF001
    "Хабаровска https://khv27.ru. Старая версия сайта khabarovskadm.ru является архивной."
)
NOTICE_EN = (
    "On 1 March 2021 the new website of the Khabarovsk City Administration, "
    "https://khv27.ru, was launched. The old website khabarovskadm.ru is an archive."
)
WAYBACK = "https://web.archive.org/web/20210228000000/"
HOSTILE = "/<script>alert(1)</script>\"'" + "\u202eevil" + "x%00&amp;<b>" * 10 + "j" * 2000

CASES = {
    "ru-410-see-archive": dict(
        lang="ru",
        status=410,
        notice=NOTICE_RU,
        see_url="https://khv27.ru/documents/",
        archive_url=WAYBACK + "http://khabarovskadm.ru/old-reports/2019/otchet-glavy.pdf",
        requested_url="http://khabarovskadm.ru/old-reports/2019/otchet-glavy.pdf",
    ),
    "en-404-archive": dict(
        lang="en",
        status=404,
        notice=NOTICE_EN,
        see_url=None,
        archive_url=WAYBACK + "http://int.khabarovskadm.ru/en/no-such-page/",
        requested_url="http://int.khabarovskadm.ru/en/no-such-page/",
    ),
    "ru-404-minimal": dict(
        lang="ru",
        status=404,
        notice=NOTICE_RU,
        see_url=None,
        archive_url=None,
        requested_url="http://khabarovskadm.ru/press-center/news/detail.php?ID=abc",
    ),
    "ru-404-hostile": dict(
        lang="ru",
        status=404,
        notice=NOTICE_RU,
        see_url=None,
        archive_url=WAYBACK + "http://khabarovskadm.ru/%3Cscript%3Ealert(1)%3C/script%3E%22'",
        requested_url=HOSTILE,
    ),
}

SIZES = [(375, 812), (1280, 800)]


def csp(style: str) -> str:
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")
    # frame-ancestors is ignored (with a console warning) in a <meta> policy; the
    # gateway sends it in the header. Everything else is the header's policy.
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )


def page_of(ctx: dict) -> BannerPage:
    """Build the BannerPage the view would pass, from a case's plain values."""
    lang, see, archive = ctx["lang"], ctx["see_url"], ctx["archive_url"]
    return BannerPage(
        lang=lang,
        status=ctx["status"],
        texts=TEXTS[lang],
        notice=ctx["notice"],
        notice_lang="ru" if ctx["notice"] == NOTICE_RU else lang,
        home_url="https://khv27.ru/",
        home_host="khv27.ru",
        see_url=see,
        see_label=see.split("://", 1)[-1] if see else None,
        archive_url=archive,
        archive_host=urlsplit(archive).netloc if archive else None,
        requested_url=displayed_url(ctx["requested_url"]),
    )


def render(env: Environment, style: str, ctx: dict, policy: str) -> str:
    page = page_of(ctx)
    html = env.get_template("banner.html").render(page=page, style=style)
    head = '<meta charset="utf-8">'
    assert html.count(head) == 1, "template must have exactly one <meta charset>"
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
    return html.replace(head, head + "\n" + meta, 1)


def check(html: str, style: str, ctx: dict) -> None:
    """Static checks: the CSP-relevant shape of the page and escaping."""
    assert html.startswith("<!doctype html>\n"), html[:40]
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert styles == [style], "the <style> content must be exactly the CSS text"
    assert not re.search(r"\sstyle\s*=", html, re.I), "inline style attribute"
    assert "<script" not in html.lower(), "script element (or unescaped input)"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "event handler attribute"
    for attr in re.findall(r"""\b(?:src|href)\s*=\s*"([^"]*)""", html):
        assert attr.startswith(("https://", "data:")), attr
    assert f'<html lang="{ctx["lang"]}">' in html
    if ctx["requested_url"] is HOSTILE:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;" in html
        assert "&amp;amp;&lt;b&gt;" in html
        assert "\u202e" not in html and "%E2%80%AE" in html
        assert "j" * 2000 in html


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("out", type=Path, help="output directory (e.g. /tmp/banner)")
    ap.add_argument("--screenshots", action="store_true", help="take headless Chromium screenshots")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args(argv)

    style = CSS.read_text(encoding="utf-8")
    bad = sorted(
        {c for c in style if c in "<>&\"'" or ord(c) > 126 or (ord(c) < 32 and c not in "\n")}
    )
    assert not bad, f"banner.css must be ASCII without quotes, & or angle brackets: {bad!r}"

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)
    args.out.mkdir(parents=True, exist_ok=True)
    policy = csp(style)
    pages = {}
    for name, ctx in CASES.items():
        html = render(env, style, ctx, policy)
        check(html, style, ctx)
        pages[name] = html
    # Negative control: the same page under a policy with a wrong hash must be unstyled.
    pages["csp-wrong-hash"] = render(env, style, CASES["ru-410-see-archive"], csp(style + " "))
    for name, html in pages.items():
        (args.out / f"{name}.html").write_text(html, encoding="utf-8")
    print(f"wrote {len(pages)} pages to {args.out}; {policy}")

    if not args.screenshots:
        return 0
    png = args.out / "png"
    png.mkdir(exist_ok=True)
    failures = 0
    for name in pages:
        for w, h in SIZES:
            for scheme in ("light", "dark"):
                if name == "csp-wrong-hash" and (scheme == "dark" or w != 375):
                    continue
                shot = png / f"{name}-{w}x{h}-{scheme}.png"
                log = screenshot(
                    args.chromium, args.out / f"{name}.html", shot, w, h, scheme == "dark"
                )
                violations = [
                    line
                    for line in log.splitlines()
                    if "Content Security Policy" in line or "Refused to" in line
                ]
                expect = name == "csp-wrong-hash"
                ok = bool(violations) == expect and shot.exists()
                failures += not ok
                reports = f"  [{len(violations)} CSP report(s)]" if violations else ""
                print(f"{'ok ' if ok else 'BAD'} {shot}{reports}")
                if not ok:
                    print("\n".join(violations) or log[-2000:], file=sys.stderr)
    return 1 if failures else 0


def screenshot(chromium: str, page: Path, out: Path, w: int, h: int, dark: bool) -> str:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={w},{h}",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ]
        if dark:
            cmd.insert(1, "--force-dark-mode")  # prefers-color-scheme: dark
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return r.stdout + r.stderr


if __name__ == "__main__":
    sys.exit(main())
