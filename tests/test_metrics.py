"""The request tally (gateway.metrics): counts kept in each worker, flushed to prometheus_client.

A flushed tally must read exactly as the same requests observed one by one, under
threads, and nothing may be lost at a clean exit (tests/http/test_live_ops.py checks
the totals across real gunicorn workers).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import LATENCY_BUCKETS, Metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
REPO = Path(__file__).resolve().parent.parent


def request_samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("gateway_request") and not s.name.endswith("_created")
    }


def durations(n: int) -> list[tuple[str, int, float]]:
    """Requests with durations on, around and between every bucket bound."""
    rng = random.Random(14)
    edges = [b for bound in LATENCY_BUCKETS for b in (bound, bound * 0.999, bound * 1.001)]
    answers = [("redirect", 301), ("redirect", 308), ("gone", 410), ("not_found", 404)]
    return [
        (*rng.choice(answers), rng.choice(edges) if i % 3 else rng.uniform(0, 2)) for i in range(n)
    ]


def test_a_flushed_tally_reads_as_each_request_observed_alone() -> None:
    tallied, direct = Metrics(), Metrics(aggregate=False)
    for outcome, status, seconds in durations(5000):
        tallied.observe(outcome, status, seconds)
        direct.observe(outcome, status, seconds)
    got, want = (
        request_samples(tallied.render().decode()),
        request_samples(direct.render().decode()),
    )
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key
    assert got[("gateway_requests_total", (("outcome", "gone"), ("status", "410")))] > 0


def test_nothing_is_counted_before_a_flush_and_everything_after() -> None:
    metrics = Metrics()
    metrics.observe("redirect", 301, 0.0001)
    before = request_samples(generate_latest(metrics.registry).decode())
    assert not [k for k in before if k[0] == "gateway_requests_total"]
    metrics.flush()
    metrics.flush()  # an empty flush adds nothing
    after = request_samples(generate_latest(metrics.registry).decode())
    assert after[("gateway_requests_total", (("outcome", "redirect"), ("status", "301")))] == 1
    bucket = (
        "gateway_request_duration_seconds_bucket",
        (("le", "0.0002"), ("outcome", "redirect")),
    )
    assert after[bucket] == 1


def test_threads_lose_no_count() -> None:
    metrics = Metrics()
    threads, each = 8, 5000
    stop = threading.Event()

    def flushing() -> None:
        while not stop.is_set():
            metrics.flush()

    def serving() -> None:
        for _ in range(each):
            metrics.observe("redirect", 301, 0.0003)

    flusher = threading.Thread(target=flushing)
    flusher.start()
    servers = [threading.Thread(target=serving) for _ in range(threads)]
    for t in servers:
        t.start()
    for t in servers:
        t.join()
    stop.set()
    flusher.join()
    found = request_samples(metrics.render().decode())
    assert found[("gateway_requests_total", (("outcome", "redirect"), ("status", "301")))] == (
        threads * each
    )
    assert found[("gateway_request_duration_seconds_count", (("outcome", "redirect"),))] == (
        threads * each
    )


def test_a_failed_write_keeps_the_tally_for_the_next_flush() -> None:
    metrics = Metrics()
    metrics.observe("gone", 410, 0.001)
    counter, _ = metrics._children_of("gone", 410)
    real_inc = counter.inc

    def broken(amount: float = 1) -> None:
        raise OSError("disk full")

    counter.inc = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        metrics.flush()  # accesslog.flush() reports it once; the request never sees it
    counter.inc = real_inc  # type: ignore[method-assign]
    metrics.observe("gone", 410, 0.001)
    found = request_samples(metrics.render().decode())
    assert found[("gateway_requests_total", (("outcome", "gone"), ("status", "410")))] == 2


def run_worker(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run `body` in a fresh process in multiprocess mode (the metrics files in tmp_path)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    code = "from gateway import accesslog\nfrom gateway.metrics import Metrics\n"
    code += textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def files_total(folder: Path) -> float:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    found = request_samples(generate_latest(registry).decode())
    return sum(v for k, v in found.items() if k[0] == "gateway_requests_total")


def test_a_clean_exit_flushes_the_tally_to_the_files(tmp_path: Path) -> None:
    done = run_worker(
        tmp_path,
        """
        metrics = Metrics()
        accesslog.RequestRecorder(metrics)  # registers the tally for the flush at exit
        for _ in range(1000):
            metrics.observe("redirect", 301, 0.0001)
        """,
    )
    assert done.returncode == 0, done.stderr
    assert files_total(tmp_path) == 1000


def test_sigkill_loses_only_what_was_not_flushed(tmp_path: Path) -> None:
    done = run_worker(
        tmp_path,
        """
        import os, signal
        metrics = Metrics()
        accesslog.RequestRecorder(metrics)
        for _ in range(700):
            metrics.observe("redirect", 301, 0.0001)
        accesslog.flush()  # what the flusher thread does every FLUSH_INTERVAL
        for _ in range(300):
            metrics.observe("redirect", 301, 0.0001)
        os.kill(os.getpid(), signal.SIGKILL)
        """,
    )
    assert done.returncode == -9
    assert files_total(tmp_path) == 700
