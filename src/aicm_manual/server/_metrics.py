"""The collector's operational metrics, in Prometheus' text format (``GET /metrics``).

    metrics = Metrics(queue_depth=storage_queue_depth)
    with metrics.timed("track"): ...
    body, content_type = metrics.render()

Each app has a registry of its own, so several collectors in one process (tests, the
demo) never share counts. Labels take only a few fixed values: route names (never paths,
which carry ids), statuses and status codes. Never a label per customer, tenant or key:
their number has no bound, and a key must never appear anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 750, 1000)


class Metrics:
    def __init__(self, queue_depth: Callable[[], float] | None = None) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "aicm_request_duration_seconds",
            "Time to answer a request of an API route, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "aicm_requests",
            "Requests of the API routes, by route and status code.",
            ["route", "code"],
            registry=registry,
        )
        self.records = Counter(
            "aicm_records",
            "Records answered by /api/v1/track, by status.",
            ["status"],
            registry=registry,
        )
        self.unpriced = Counter(
            "aicm_unpriced_records",
            "Records accepted without a cost (no config or no price for their service).",
            registry=registry,
        )
        self.batch = Histogram(
            "aicm_batch_records",
            "Records per /api/v1/track request.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.storage_waiting = Gauge(
            "aicm_storage_calls_in_flight",
            "Storage calls started and not yet answered (queued for the database or in it).",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "aicm_writer_queue_depth",
            "Write jobs waiting for the SQLite writer thread (0 on PostgreSQL).",
            registry=registry,
        )
        self.queue_depth.set_function(queue_depth or (lambda: 0.0))
        started = time.time()
        uptime = Gauge(
            "aicm_uptime_seconds", "Seconds since the collector started.", registry=registry
        )
        uptime.set_function(lambda: time.time() - started)

    @contextmanager
    def timed(self, route: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.latency.labels(route).observe(time.perf_counter() - start)

    @contextmanager
    def storage_call(self) -> Iterator[None]:
        self.storage_waiting.inc()
        try:
            yield
        finally:
            self.storage_waiting.dec()

    def count_answer(self, summary: dict[str, int], records: int, unpriced: int) -> None:
        self.batch.observe(records)
        for status, n in summary.items():
            self.records.labels(status).inc(n)
        if unpriced:
            self.unpriced.inc(unpriced)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
