"""Working test doubles for code that uses aicm-manual.

    from aicm_manual import Tracker
    from aicm_manual.testing import CapturingDelivery

    delivery = CapturingDelivery()
    tracker = Tracker("openai-chat", "openai::gpt-4o-mini", schemas_dir="schemas",
                      delivery=delivery)
    tracker.track({"input_tokens": 10, "output_tokens": 2, "model": "gpt-4o-mini"})
    assert delivery.wire()[0]["usage"]["input_tokens"] == 10

These are real implementations that keep records in memory instead of sending them, for
tests of your own code that need no socket: ``CapturingDelivery`` replaces delivery
altogether; ``CollectorStub`` answers like the collector (idempotent, per-record results,
scripted failures) and ``StubTransport`` plugs it into a real ``DeliveryEngine``.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._http import HttpResponse
from ._protocol import answer
from ._records import Target, UsageRecord
from .errors import TransportError

__all__ = ["CapturingDelivery", "CollectorStub", "Scripted", "StubTransport"]


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


@dataclass
class Scripted:
    """One scripted answer: an HTTP ``status`` (with optional headers), or ``delay``
    seconds before answering normally, or ``drop`` the connection (no answer)."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


class CollectorStub:
    """A working in-memory stand-in for the collector's ``POST /api/v1/track``.

    It stores records once per (key, service_id, response_id), answers ``duplicate`` for
    the same record again and ``conflict`` for the same id with other content, rejects
    ``reject_ids`` with a reason, refuses keys outside ``keys`` (when set) with 401, and
    plays ``script`` (a queue of :class:`Scripted` answers) before answering normally.
    Serve it over HTTP (the project's tests do) or use :class:`StubTransport`.
    """

    def __init__(self, keys: set[str] | None = None) -> None:
        self.keys = keys
        self.script: deque[Scripted] = deque()
        self.reject_ids: set[str] = set()
        self.stored: dict[tuple[str | None, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str | None, int]] = []  # (key, records in the request)
        self.encodings: list[str | None] = []  # Content-Encoding of each request
        self.duplicates = 0  # records received again (idempotent re-sends)
        self.lock = threading.Lock()

    def records(self) -> list[dict[str, Any]]:
        """Every stored record, in arrival order."""
        with self.lock:
            return list(self.stored.values())

    def records_for(self, api_key: str | None) -> list[dict[str, Any]]:
        """The stored records that arrived with ``api_key``."""
        with self.lock:
            return [r for (k, _, _), r in self.stored.items() if k == api_key]

    def handle(
        self, api_key: str | None, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request: (status, headers, body)."""
        with self.lock:
            step = self.script.popleft() if self.script else None
        if step is not None and step.delay:
            time.sleep(step.delay)  # a slow collector; bounded by the script
        if step is not None and step.drop:
            raise ConnectionResetError("scripted drop")
        if step is not None and step.status is not None:
            return step.status, step.headers, b'{"detail": "scripted"}'
        if self.keys is not None and api_key not in self.keys:
            return 401, {}, b'{"detail": "unknown key"}'
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        try:
            tracked = json.loads(body)["tracked"]
        except (ValueError, KeyError, TypeError):
            return 400, {}, b'{"detail": "malformed body"}'
        results = []
        with self.lock:
            self.requests.append((api_key, len(tracked)))
            self.encodings.append(headers.get("content-encoding"))
            for index, record in enumerate(tracked):
                rid = record.get("response_id")
                result: dict[str, Any] = {"index": index, "response_id": rid}
                key = (api_key, record.get("service_id"), rid)
                if rid in self.reject_ids:
                    result.update(status="rejected", errors=["scripted rejection"])
                elif key in self.stored:
                    same = self.stored[key] == record
                    result["status"] = "duplicate" if same else "conflict"
                    self.duplicates += same
                else:
                    self.stored[key] = record
                    result["status"] = "accepted"
                results.append(result)
        code, reply = answer(results)
        return code, {"Content-Type": "application/json"}, json.dumps(reply).encode()


class StubTransport:
    """A Transport that hands each batch to a CollectorStub, with no socket."""

    def __init__(self, stub: CollectorStub) -> None:
        self.stub = stub

    def send(
        self, target: Target, body: bytes, headers: dict[str, str], *, timeout: float = 10.0
    ) -> HttpResponse:
        key = None if target.api_key is None else target.api_key.reveal()
        lowered = {k.lower(): v for k, v in headers.items()}
        try:
            status, extra, answer = self.stub.handle(key, body, lowered)
        except ConnectionResetError as exc:
            raise TransportError(f"POST {target.api_base}/api/v1/track failed: {exc}") from exc
        return HttpResponse(status, answer, {k.lower(): v for k, v in extra.items()})

    def close(self) -> None:
        pass
