"""The standalone nginx front: a whole nginx.conf around the nginx export (issue 13).

``gateway export nginx --standalone`` writes one file that ``nginx -p DIR -c FILE``
runs as it is: main, events and http, with the pid file, the logs and the temp
folders relative to DIR (the prefix). Inside http { } it holds the very maps,
upstream and server of the include form (gateway.ops.export), plus what a front on
the open internet needs and the include form leaves to the operator's own nginx:

- client timeouts, so that slow or idle clients are dropped, not held (slowloris);
- worker_connections and worker_rlimit_nofile sized for the connections it claims;
- a per-address cap on requests in progress, answered with 429;
- ``/-/`` (health, metrics) only to an allow-list, a 404 for everyone else;
- gunicorn's request size limits, and a tiny body limit (only GET/HEAD are served);
- error pages that turn nginx's 5xx for a bad request (501, 505) into a 400;
- access-log fields capped, so that no line exceeds 4 KiB.

Why each value: docs/scaling-out.md, "A front that holds". Pure: no Flask, no click.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.mapfile import RedirectMap
from gateway.ops.export import ExportError, ExportReport, ServerExtras, export_nginx

DEFAULT_SERVICE_ALLOW = ("127.0.0.1/32", "::1/128")
MAX_CONNECTIONS = (16, 250_000)  # 2 x (2N + 64) file descriptors must stay under nr_open
CLIENT_TIMEOUT = (1, 300)
# gunicorn.conf.py: limit_request_line 8190, limit_request_field_size 8190 (its default).
# A header line or the request line longer than one 8k buffer is refused (414, or 400).
HEADER_BUFFERS = "4 8k"
MAX_BODY = "1k"  # the gateway serves GET/HEAD; anything bigger is 413 before it is read
# Access-log field caps (bytes before escaping; a byte escapes to at most 4, \\xFF).
LOG_CAPS = {"request": 400, "host": 255, "http_referer": 128, "http_user_agent": 256}
# Upstream timeouts: the gateway answers in milliseconds; 5 s to connect is a dead one.
PROXY_TIMEOUTS = {"connect": 5, "send": 10, "read": 10}
RETRY_AFTER = 30  # seconds, on the 503 that stands for a gateway that is down


@dataclass(frozen=True, slots=True)
class Front:
    """The standalone front's limits (the --standalone options)."""

    max_connections: int = 4096
    per_address: int = 64
    client_timeout: int = 10
    service_allow: tuple[str, ...] = DEFAULT_SERVICE_ALLOW

    @property
    def worker_connections(self) -> int:
        # Per worker, and any one worker may take every client (accept is not balanced);
        # each proxied client also holds one upstream connection. 64 for listeners and
        # the upstream keep-alive cache.
        return 2 * self.max_connections + 64

    @property
    def rlimit_nofile(self) -> int:
        return 2 * self.worker_connections  # one fd per connection, twice over for logs etc.


def service_network(text: str) -> str:
    """Return a CIDR (or bare address) for the allow-list in nginx's spelling, or raise."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ExportError(f"--service-allow {text!r}: {exc}") from None
    return network.with_prefixlen


def check_front(front: Front) -> Front:
    """Return the front with its allow-list normalised; raise ExportError if it cannot be."""
    low, high = MAX_CONNECTIONS
    if not low <= front.max_connections <= high:
        raise ExportError(f"--max-connections {front.max_connections}: give {low} to {high}")
    if not 1 <= front.per_address <= front.max_connections:
        raise ExportError(
            f"--per-address {front.per_address}: give 1 to --max-connections "
            f"({front.max_connections})"
        )
    low, high = CLIENT_TIMEOUT
    if not low <= front.client_timeout <= high:
        raise ExportError(f"--client-timeout {front.client_timeout}: give {low} to {high} s")
    if not front.service_allow:
        raise ExportError("--service-allow: give at least one CIDR")
    allow = tuple(dict.fromkeys(service_network(t) for t in front.service_allow))
    return Front(front.max_connections, front.per_address, front.client_timeout, allow)


def export_standalone(
    redirect_map: RedirectMap,
    *,
    listen: str | Sequence[str],
    upstream: str,
    front: Front | None = None,
) -> tuple[str, ExportReport]:
    """Compile the map into a whole nginx.conf: the include form inside a hardened http { }."""
    front = check_front(front or Front())
    listens = [listen] if isinstance(listen, str) else list(listen)
    if any(item.endswith(" ssl") for item in listens):
        raise ExportError(
            "--standalone writes no certificates: terminate TLS in front of it, "
            "or use the include form inside your own nginx"
        )
    extras = ServerExtras(
        header=tuple(_header(front)),
        listen_params=f" backlog={min(front.max_connections, 65535)}",
        server=tuple(_server(front)),
        location=tuple(_location()),
    )
    text, report = export_nginx(redirect_map, listen=listens, upstream=upstream, extras=extras)
    comments, body = _split_comments(text)
    out = [*comments, ""]
    out.extend(_main(front))
    # map_hash_* must come before the first map, and _http() has maps of its own.
    hashes = [line for line in body if line.startswith("map_hash_")]
    out.append("http {")
    out.extend(_indent([*hashes, "", *_http(front), ""]))
    out.extend(_indent(line for line in body if line not in hashes))
    out.append("}")
    return "\n".join(out) + "\n", report


def _split_comments(text: str) -> tuple[list[str], list[str]]:
    lines = text.rstrip("\n").split("\n")
    end = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return lines[:end], lines[end:]


def _indent(lines: Iterable[str]) -> list[str]:
    return [f"    {line}" if line else "" for line in lines]


def _header(front: Front) -> list[str]:
    n, t = front.max_connections, front.client_timeout
    return [
        "# A whole nginx.conf (--standalone): run it as `nginx -p DIR -c FILE`, adding",
        "# -g 'daemon off;' under a supervisor. Its pid file, logs and temp folders are",
        "# relative to DIR. As root, the workers run as nginx's default user (nobody).",
        "#",
        f"# It claims to hold {n} client connections at once (--max-connections), slow and",
        "# idle ones included, whichever worker takes them: worker_connections",
        f"# {front.worker_connections} (2 per client: it and its upstream), worker_rlimit_nofile"
        f" {front.rlimit_nofile}.",
        f"# A client has {t} s to send its request header, {t} s between body reads and",
        f"# {t} s to take each write (--client-timeout); an idle keep-alive lasts {t + 5} s.",
        f"# One address may have {front.per_address} requests in progress (--per-address); past",
        "# that nginx answers 429. /-/ (health, metrics) is answered only to",
        f"# {', '.join(front.service_allow)} (--service-allow); everyone else gets a 404.",
    ]


def _main(front: Front) -> list[str]:
    return [
        "worker_processes auto;",
        f"worker_rlimit_nofile {front.rlimit_nofile};",
        "pid nginx.pid;",
        "# 'error': a client's own mistakes and timeouts (info) and limit hits (warn) are",
        "# not logged here, so an attack cannot fill the disk through this file.",
        "error_log error.log error;",
        "",
        "events {",
        f"    worker_connections {front.worker_connections};",
        "}",
        "",
    ]


def _http(front: Front) -> list[str]:
    t = front.client_timeout
    lines = [
        "server_tokens off;",
        "",
        "# Slow and idle clients are dropped (with a reset, which frees the socket at once).",
        f"client_header_timeout {t}s;   # the whole request header, from the first byte",
        f"client_body_timeout {t}s;     # between two reads of the body",
        f"send_timeout {t}s;            # between two writes of the response",
        f"keepalive_timeout {t + 5}s;",
        "reset_timedout_connection on;",
        f"lingering_time {t}s;",
        "",
        "# The gateway's (gunicorn's) limits: request line and each header field 8190 bytes.",
        "client_header_buffer_size 1k;",
        f"large_client_header_buffers {HEADER_BUFFERS};",
        f"client_max_body_size {MAX_BODY};",
        "",
        "# Relative to the prefix (-p DIR); nginx creates them.",
        "client_body_temp_path client_body_temp;",
        "proxy_temp_path proxy_temp;",
        "fastcgi_temp_path fastcgi_temp;",
        "uwsgi_temp_path uwsgi_temp;",
        "scgi_temp_path scgi_temp;",
        "",
        "# Requests in progress per client address (keep-alive connections between requests",
        "# and connections still sending their header do not count).",
        "limit_conn_zone $binary_remote_addr zone=legacy_gw_addr:10m;",
        "limit_conn_status 429;",
        "limit_conn_log_level warn;",
        "",
        "# The gateway behind: a stuck one frees nginx's connection; nothing goes to disk.",
        *(f"proxy_{name}_timeout {value}s;" for name, value in PROXY_TIMEOUTS.items()),
        "proxy_max_temp_file_size 0;",
        "",
        "# Who may read /-/ (the gateway's health and metrics): the raw target, as the",
        "# gateway reads it.",
        "geo $legacy_gw_service {",
        "    default 0;",
        *(f"    {network} 1;" for network in front.service_allow),
        "}",
        'map "$legacy_gw_service$request_uri" $legacy_gw_service_denied {',
        "    default 0;",
        '    "~^0/-/" 1;',
        "}",
        "",
        "# Access log: each client-chosen field capped, escaped by nginx (\\xFF): <= 4 KiB a line.",
    ]
    for name, cap in LOG_CAPS.items():
        lines += [
            f"map ${name} $legacy_gw_log_{name} {{",
            f'    "~^(?<v>.{{0,{cap}}})" $v;',
            "}",
        ]
    lines += [
        "log_format legacy_gw '$remote_addr [$time_local] \"$legacy_gw_log_host\" '",
        "                     '\"$legacy_gw_log_request\" $status $body_bytes_sent '",
        '                     \'"$legacy_gw_log_http_referer" "$legacy_gw_log_http_user_agent" \'',
        "                     '$request_time';",
        "access_log access.log legacy_gw;",
    ]
    return lines


def _server(front: Front) -> list[str]:
    return [
        f"    limit_conn legacy_gw_addr {front.per_address};",
        "    # What nginx would answer with a 5xx for the client's own request is a 400: an",
        "    # unknown Transfer-Encoding (501) or HTTP version, e.g. HTTP/2.0 (505). It takes",
        "    # a URI: a named location cannot serve a request line nginx could not parse.",
        "    error_page 400 501 505 =400 /-/nginx/400;",
        "    # A gateway down or stuck (502, 504) is a 503 with Retry-After: temporary, so",
        "    # crawlers keep the old URLs and come back.",
        "    error_page 502 504 =503 /-/nginx/503;",
        "    # Refusals from inside location / (whose add_header passes the gateway's own",
        "    # Cache-Control) get the server's no-store here.",
        *(f"    error_page {code} /-/nginx/{code};" for code in (413, 429)),
        *(
            line
            for code in (400, 413, 429)
            for line in (
                f"    location = /-/nginx/{code} {{",
                "        internal;",
                f"        return {code};",
                "    }",
            )
        ),
        "    location = /-/nginx/503 {",
        "        internal;",
        f"        add_header Retry-After {RETRY_AFTER} always;",
        '        add_header Cache-Control "no-store" always;',
        "        return 503;",
        "    }",
    ]


def _location() -> list[str]:
    return [
        "        if ($legacy_gw_service_denied) {",
        '            add_header Cache-Control "no-store" always;',
        "            return 404;",
        "        }",
    ]
