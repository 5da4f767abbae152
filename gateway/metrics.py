"""The gateway's Prometheus metrics: what was answered, how fast, and which map answered.

Owns the metric names, their labels and ``/-/metrics``. Under gunicorn,
``gunicorn.conf.py`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker starts,
so prometheus_client keeps every worker's figures in files there and a scrape of
any worker adds them all up; without it (the Flask test client, ``flask run``)
one process's own registry is served.

Service endpoints (``/-/health``, ``/-/metrics``) are not counted: the request
figures are the legacy traffic only.
"""

from __future__ import annotations

import logging
import os
import struct
import time
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

    def __init__(self, multiprocess_dir: str | None = None) -> None:
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

    def observe(self, outcome: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        children = self._children.get((outcome, status))
        if children is None:
            # Labelled children are looked up once: .labels() costs more than .inc().
            children = (
                self.requests.labels(outcome, str(status)),
                self.duration.labels(outcome),
            )
            self._children[(outcome, status)] = children
        children[0].inc()
        children[1].observe(seconds)

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
