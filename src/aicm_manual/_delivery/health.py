"""Delivery health: every process-wide counter behind one object and one lock.

    health = Health()
    health.delivered(3)
    health.discarded(2, "queue_full")
    health.snapshot()   # the counter part of get_global_delivery_health()

Callers' threads (immediate sends, on-full drops) and the worker both count here; the
lock keeps every increment whole. Per-key counts live in each key's state instead.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .queued import log


class Health:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total_drained = 0
        self.total_delivered = 0
        self.total_rejected = 0
        self.total_discarded = 0
        self.discarded_by_reason: dict[str, int] = {}
        self.total_retries = 0
        self.total_batches = 0
        self.total_requests = 0
        self.immediate_sent = 0
        self.spool_put = 0
        self.last_error: str | None = None
        self.last_success_at: float | None = None
        self.dead_letters: deque[tuple[dict[str, Any], str]] = deque(maxlen=1000)

    def sent(self, delivered: int, rejected: int, wall: float) -> None:
        with self.lock:
            self.total_delivered += delivered
            self.total_rejected += rejected
            if delivered:
                self.last_success_at = wall

    def request(self, batch: bool = True) -> None:
        with self.lock:
            self.total_requests += 1
            if batch:
                self.total_batches += 1

    def retried(self, records: int, error: str) -> None:
        with self.lock:
            self.total_retries += records
            self.last_error = error

    def failed(self, error: str) -> None:
        with self.lock:
            self.last_error = error

    def discarded(self, count: int, reason: str) -> None:
        with self.lock:
            self.total_discarded += count
            self.discarded_by_reason[reason] = self.discarded_by_reason.get(reason, 0) + count

    def dead(self, items: list[tuple[dict[str, Any], str]]) -> None:
        with self.lock:
            self.dead_letters.extend(items)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total_delivered": self.total_delivered,
                "total_rejected": self.total_rejected,
                "total_discarded": self.total_discarded,
                "discarded_by_reason": dict(self.discarded_by_reason),
                "total_retries": self.total_retries,
                "total_batches": self.total_batches,
                "total_requests": self.total_requests,
                "last_error": self.last_error,
                "last_success_at": self.last_success_at,
                "dead_letters": len(self.dead_letters),
            }


class LogLimiter:
    """At most one log line per kind of event per interval (drops and retries come in
    bursts); the next line says how many were held back."""

    def __init__(self, interval: float = 30.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -1e18) < self._interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} similar events not logged)"
        log.warning(message, *args)
