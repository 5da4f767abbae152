"""In-process cost of recording a request: the recorder off, per request (before), buffered (now).

Owns the figures for issue 14's "cheaper recording": CPU time per redirect through
``app.wsgi_app`` (the gateway middleware and the recorder, no server), the bundled
map, prometheus_client in its multiprocess mode (files in a temp folder, as under
gunicorn) and the access log to a file, for:

    off          no recorder at all (what the middleware costs by itself)
    before       each request written at once: four file-backed metric values and one
                 write(2) per line (gateway.metrics Metrics(aggregate=False),
                 LineHandler(buffer_bytes=0): the code before issue 14, kept as a switch)
    now          tallied in the worker, flushed every second by the flusher thread and
                 when 64 KiB of lines wait (the default); the flusher's CPU is counted

each with metrics only (access log off) and with metrics and the log.

    python bench/recording.py [--calls 20000] [--repeat 7]

Timing is CPU time of the whole process (flusher thread included) per call, the best
and the median of --repeat passes, variants interleaved pass by pass, garbage
collector off; the "now" passes end with a flush inside the timed span.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Before prometheus_client is imported (gateway imports it): it picks its mode once.
_METRICS_DIR = tempfile.mkdtemp(prefix="bench-recording-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _METRICS_DIR

from gateway import accesslog  # noqa: E402
from gateway.app import create_app  # noqa: E402
from gateway.metrics import Metrics  # noqa: E402

BUNDLED_MAP = Path(__file__).resolve().parent.parent / "redirects.yaml"
HOST = "khabarovskadm.ru"
VARIANTS = (
    ("off", None, False),
    ("before, metrics only", "before", False),
    ("now, metrics only", "now", False),
    ("before, metrics + log", "before", True),
    ("now, metrics + log", "now", True),
)


def environs(calls: int) -> list[dict[str, Any]]:
    """Distinct redirects (a query rule of the bundled map), so no URL repeats in a pass."""
    out = []
    for n in range(calls):
        target = f"/press-center/news/detail.php?ID={n}"
        out.append(
            {
                "REQUEST_METHOD": "GET",
                "RAW_URI": target,
                "PATH_INFO": target.partition("?")[0],
                "QUERY_STRING": target.partition("?")[2],
                "HTTP_HOST": HOST,
                "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) bench",
                "SERVER_NAME": HOST,
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "wsgi.url_scheme": "http",
            }
        )
    return out


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def set_log(path: Path | None, mode: str | None) -> None:
    """Point gateway.access at `path` (None: off), buffered ("now") or per line ("before")."""
    accesslog.configure("off" if path is None else str(path))
    if path is not None and mode == "before":
        (handler,) = [
            h for h in accesslog.access_log.handlers if isinstance(h, accesslog.LineHandler)
        ]
        accesslog.access_log.removeHandler(handler)
        handler.close()
        accesslog.access_log.addHandler(accesslog.LineHandler(str(path), buffer_bytes=0))


def one_pass(app: Any, envs: list[dict[str, Any]], finish: Callable[[], None]) -> float:
    wsgi: Callable[..., Iterable[bytes]] = app.wsgi_app
    start = time.process_time()
    for env in envs:
        for _ in wsgi(dict(env), start_response):
            pass
    finish()
    return (time.process_time() - start) / len(envs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    app = create_app({"TESTING": True, "MAP_PATH": str(BUNDLED_MAP), "ACCESS_LOG": "off"})
    middleware = app.wsgi_app
    envs = environs(args.calls)
    log_path = Path(tempfile.mkdtemp(prefix="bench-recording-log-")) / "access.jsonl"
    recorders = {
        "before": accesslog.RequestRecorder(Metrics(aggregate=False)),
        "now": accesslog.RequestRecorder(Metrics()),
    }
    times: dict[str, list[float]] = {name: [] for name, _, _ in VARIANTS}
    for _, mode, logged in VARIANTS:  # warm: templates, labelled children, files
        middleware.record = recorders[mode] if mode else None  # type: ignore[attr-defined]
        set_log(log_path if logged else None, mode)
        one_pass(app, envs[:500], accesslog.flush)
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(args.repeat):
            for name, mode, logged in VARIANTS:
                middleware.record = recorders[mode] if mode else None  # type: ignore[attr-defined]
                accesslog.configure("off")  # flushed and closed: start each pass on an empty file
                log_path.unlink(missing_ok=True)
                set_log(log_path if logged else None, mode)
                finish = accesslog.flush if mode == "now" else (lambda: None)
                times[name].append(one_pass(app, envs, finish))
            gc.collect()
    finally:
        accesslog.configure("off")
        if enabled:
            gc.enable()

    best = {name: min(t) * 1e6 for name, t in times.items()}
    median = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    print(
        f"recording cost per redirect through app.wsgi_app, {args.calls} calls x {args.repeat}"
        " passes, CPU µs (multiprocess metrics; log to a file)"
    )
    print(f"{'variant':<24}{'best µs':>9}{'median':>9}{'÷ off':>8}{'recording µs':>14}")
    for name, _, _ in VARIANTS:
        print(
            f"{name:<24}{best[name]:>9.1f}{median[name]:>9.1f}{best[name] / best['off']:>8.2f}"
            f"{best[name] - best['off']:>14.1f}"
        )
    for what in ("metrics only", "metrics + log"):
        before, now = best[f"before, {what}"], best[f"now, {what}"]
        print(
            f"{what}: now ÷ before {now / before:.2f} per request;"
            f" recording {(now - best['off']) / (before - best['off']):.2f} of before"
        )


if __name__ == "__main__":
    main()
