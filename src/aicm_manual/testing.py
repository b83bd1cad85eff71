"""Working test doubles for code that uses aicm-manual.

    from aicm_manual import Tracker
    from aicm_manual.testing import CapturingDelivery

    delivery = CapturingDelivery()
    tracker = Tracker("openai-chat", "openai::gpt-4o-mini", schemas_dir="schemas",
                      delivery=delivery)
    tracker.track({"input_tokens": 10, "output_tokens": 2, "model": "gpt-4o-mini"})
    assert delivery.wire()[0]["usage"]["input_tokens"] == 10

These are real implementations of the delivery protocol that keep records in memory
instead of sending them, for tests of your own code that need no socket.
"""

from __future__ import annotations

import threading
from typing import Any

from ._records import Target, UsageRecord

__all__ = ["CapturingDelivery"]


class CapturingDelivery:
    """A delivery that keeps every submitted record, in order, with its target.

    Thread-safe. ``flush()`` returns 0 because a captured record counts as delivered.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[UsageRecord, Target]] = []

    def submit(self, record: UsageRecord, target: Target) -> None:
        with self._lock:
            self._items.append((record, target))

    def flush(self, timeout: float | None = None) -> int:
        return 0

    @property
    def records(self) -> list[UsageRecord]:
        with self._lock:
            return [record for record, _ in self._items]

    @property
    def targets(self) -> list[Target]:
        with self._lock:
            return [target for _, target in self._items]

    def wire(self) -> list[dict[str, Any]]:
        """The captured records as the collector would receive them."""
        return [record.to_wire() for record in self.records]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
