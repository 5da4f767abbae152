"""The gateway's Prometheus metrics: what was answered, how fast, and which map answered.

Owns the metric names, their labels and ``/-/metrics``. Under gunicorn,
``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts,
so prometheus_client keeps every worker's figures in files there and a scrape of
any worker adds them all up; without it (the Flask test client, ``flask run``)
one process's own registry is served.

Service endpoints (``/-/health``, ``/-/metrics``) are not counted: the request
figures are the legacy traffic only.

The request figures are tallied in plain Python in each worker (``observe``: one
dict entry under a lock) and added to prometheus_client's values by ``flush``:
every second from gateway.accesslog's flusher thread, at exit, and before
``/-/metrics`` renders (so a scrape counts every request its own worker answered).
A worker killed with SIGKILL loses at most its last second of counts; the map
figures (reloads, gauges) are written at once.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import time
from bisect import bisect_left
from typing import TYPE_CHECKING

from flask import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    from gateway.maps import Status

log = logging.getLogger(__name__)

# The text format every Prometheus version reads (what prometheus_client's own server
# answers when a scraper asks for nothing newer).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RENDER_ATTEMPTS = 5
# Redirects are answered in well under a millisecond; the banner takes longer.
LATENCY_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The gateway's metrics, in their own registry (so that each app has its own)."""

    def __init__(self, multiprocess_dir: str | None = None, *, aggregate: bool = True) -> None:
        self.multiprocess_dir = multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self.multiprocess_dir and values.ValueClass is values.MutexValue:
            # prometheus_client was imported before the variable was set: each worker
            # would count in memory only and /-/metrics would show nothing.
            log.error(
                "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported;"
                " metrics are per process"
            )
            self.multiprocess_dir = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Requests answered, by outcome (redirect, gone, not_found, bad_request,"
            " unknown_host, method_not_allowed, unavailable) and HTTP status.",
            ["outcome", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from the request reaching the app to its answer being handed to the server.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reloads = Counter(
            "gateway_map_reloads",
            "Changed maps loaded and swapped in by a running worker.",
            registry=r,
        )
        self.reload_failures = Counter(
            "gateway_map_reload_failures",
            "Attempts to load the map that failed (the served map stayed).",
            registry=r,
        )
        # Per worker ("liveall": one series per live pid), so that a worker that has not
        # converged on the new map shows up.
        self.rules = Gauge(
            "gateway_map_rules",
            "Rules in the map this worker serves.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.info = Gauge(
            "gateway_map_info",
            "The map this worker serves: 1 for its version (content hash) and whether it is"
            " the map on disk (map) or the last-known-good copy; 0 for versions it served"
            " before.",
            ["version", "serving"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.loaded_at = Gauge(
            "gateway_map_loaded_timestamp_seconds",
            "When the map this worker serves was loaded (Unix time).",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.failing = Gauge(
            "gateway_map_reload_failing",
            "1 while this worker's last attempt to load the map failed, else 0.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._info_labels: tuple[str, str] | None = None
        # The tally not yet flushed: (outcome, status, bucket) -> [requests, seconds].
        # `bucket` indexes the histogram's upper bounds as Histogram.observe would pick it
        # (the first bound >= the duration; the last one is +Inf).
        self.aggregate = aggregate
        self._bounds = (*LATENCY_BUCKETS, math.inf)
        self._pending: dict[tuple[str, int, int], list[float]] = {}
        self._lock = threading.Lock()  # guards _pending: observe and the swap in flush
        self._flush_lock = threading.Lock()  # one flush at a time, so a scrape waits for one

    def observe(self, outcome: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration (in the tally, until `flush`)."""
        if not self.aggregate:
            self._apply_one(outcome, status, seconds)
            return
        key = (outcome, status, bisect_left(self._bounds, seconds))
        # A lock, not the GIL: `tally[0] += 1` is a read and a write, and a thread switch
        # between them would lose a count. Uncontended it costs well under a microsecond.
        with self._lock:
            tally = self._pending.get(key)
            if tally is None:
                self._pending[key] = [1, seconds]
            else:
                tally[0] += 1
                tally[1] += seconds

    def flush(self) -> None:
        """Add the tally to prometheus_client's values (files under gunicorn) and clear it."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            try:
                for key, (count, seconds) in list(pending.items()):
                    outcome, status, bucket = key
                    counter, histogram = self._children_of(outcome, status)
                    counter.inc(count)
                    # Histogram.observe, for `count` observations at once: the sum, and
                    # the one bucket they fall in (stored per bucket, summed when read).
                    histogram._sum.inc(seconds)
                    histogram._buckets[bucket].inc(count)
                    del pending[key]
            finally:
                if pending:  # a write failed: keep what was not written for the next flush
                    with self._lock:
                        for key, (count, seconds) in pending.items():
                            tally = self._pending.setdefault(key, [0, 0.0])
                            tally[0] += count
                            tally[1] += seconds

    def _children_of(self, outcome: str, status: int) -> tuple[Counter, Histogram]:
        children = self._children.get((outcome, status))
        if children is None:
            # Labelled children are looked up once: .labels() costs more than .inc().
            children = (
                self.requests.labels(outcome, str(status)),
                self.duration.labels(outcome),
            )
            self._children[(outcome, status)] = children
        return children

    def _apply_one(self, outcome: str, status: int, seconds: float) -> None:
        """Count one request straight into prometheus_client (no tally: before issue 14)."""
        counter, histogram = self._children_of(outcome, status)
        counter.inc()
        histogram.observe(seconds)

    def map_event(self, status: Status, event: str) -> None:
        """Record a map load attempt and what is served after it (a MapHolder listener)."""
        if event == "reloaded":
            self.reloads.inc()
        elif event == "failed":
            self.reload_failures.inc()
        self.failing.set(1 if status.last_attempt_ok is False else 0)
        served = status.map
        labels = (served.version, status.serving) if served is not None else None
        if labels != self._info_labels:
            if self._info_labels is not None:
                self.info.labels(*self._info_labels).set(0)
            if labels is not None:
                self.info.labels(*labels).set(1)
            self._info_labels = labels
        self.rules.set(len(served.rules) if served is not None else 0)
        self.loaded_at.set(served.loaded_at.timestamp() if served is not None else 0)

    def render(self) -> bytes:
        """Return every metric in Prometheus text format (all workers' under gunicorn)."""
        self.flush()  # this worker's figures exact; the others' at most a flush interval old
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        for attempt in range(RENDER_ATTEMPTS):
            try:
                return generate_latest(registry)
            except (struct.error, ValueError, OSError):
                # A worker starting this moment has created its file but not yet sized
                # it (prometheus_client's mmap_dict): read again in a moment.
                if attempt == RENDER_ATTEMPTS - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def endpoint(self) -> Response:
        """Answer /-/metrics."""
        try:
            response = Response(self.render(), content_type=CONTENT_TYPE)
        except Exception:
            log.exception("reading the metrics failed")
            response = Response("metrics unavailable, try again\n", 503, mimetype="text/plain")
        response.headers["Cache-Control"] = "no-store"
        return response
