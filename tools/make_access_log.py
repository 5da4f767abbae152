"""Write a synthetic combined-format access log of the old site, for timing ``gateway coverage``.

    python tools/make_access_log.py 1000000 [IDS] > /tmp/access.log

A fixed seed, so the same arguments give the same file. The mix: news pages by ID
(the map redirects them), uploads (410), section pages with numeric ids
(unmapped), search with queries, page furniture, scanner noise, a few POSTs. Ids
are drawn from 1..IDS (default 300,000): with the default, 1,000,000 lines hold
about 420,000 distinct URLs, a worst case for ``gateway coverage``, which decides
each distinct URL once; IDS=3000 gives a log that repeats itself as real ones do.
"""

from __future__ import annotations

import random
import sys

AGENT = '"-" "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"'


def targets(rng: random.Random, ids: int) -> str:
    """Return one request line's method and target."""
    roll = rng.random()
    n = rng.randint(1, ids)
    if roll < 0.30:
        return f"GET /press-center/news/detail.php?ID={n}&utm_source=vk"
    if roll < 0.40:
        return f"GET /upload/iblock/{n % 997:03x}/doc{n}.pdf"
    if roll < 0.60:
        return f"GET /city/sections/{n % 500}/?ELEMENT_ID={n}"
    if roll < 0.65:
        return f"GET /search/?q=%D0%B1%D1%8E%D0%B4%D0%B6%D0%B5%D1%82+{n % 100}"
    if roll < 0.80:
        return f"GET /bitrix/templates/main/img/{n % 300}.png"
    if roll < 0.85:
        return rng.choice(("GET /wp-login.php", "GET /.env", "GET /phpmyadmin/index.php"))
    if roll < 0.87:
        return "POST /bitrix/tools/vote.php"
    return f"GET /about/{rng.choice(('history', 'structure', 'contacts', 'photo'))}/"


def main() -> None:
    """Write N lines (argv[1], default 1,000,000) with ids up to argv[2] to stdout."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    ids = int(sys.argv[2]) if len(sys.argv) > 2 else 300_000
    rng = random.Random(27)
    out = sys.stdout
    for i in range(count):
        ip = f"10.{i % 256}.{(i >> 8) % 256}.{rng.randint(1, 254)}"
        when = f"[{1 + i % 28:02d}/Feb/2021:{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d} +1000]"
        status = rng.choice((200, 200, 200, 304, 404))
        size = rng.randint(200, 90000)
        out.write(f'{ip} - - {when} "{targets(rng, ids)} HTTP/1.1" {status} {size} {AGENT}\n')


if __name__ == "__main__":
    main()
