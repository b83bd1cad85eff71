"""What the delivery engine moves around: pending entries, per-key state, the transport.

Pure data and small adapters; the engine in ``_engine`` owns the behaviour.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._http import HttpResponse
from .._records import Target, UsageRecord
from .._secret import NO_KEY
from .spool import SpoolRow

log = logging.getLogger("aicm_manual.delivery")

OnDiscard = Callable[[list[dict[str, Any]], str], None]


class Transport(Protocol):
    """Sends one batch body to a target's collector and returns its answer.

    Raises TransportError when there is no answer (refused, timeout, reset).
    """

    def send(self, target: Target, body: bytes, headers: dict[str, str]) -> HttpResponse: ...

    def close(self) -> None: ...


class HttpTransport:
    """POST ``{api_base}/api/v1/track`` over the package's one HTTP client."""

    def __init__(self, timeout: float) -> None:
        from .._http import HttpClient

        self._client = HttpClient(timeout=timeout)

    def send(self, target: Target, body: bytes, headers: dict[str, str]) -> HttpResponse:
        url = f"{target.api_base}/api/v1/track"
        return self._client.request("POST", url, api_key=target.api_key, headers=headers, body=body)

    def close(self) -> None:
        self._client.close()


def key_ref(target: Target) -> str:
    """What the spool stores instead of the key: its digest, or "anonymous"."""
    return NO_KEY if target.api_key is None else target.api_key.digest


class ModeDelivery:
    """The engine seen through the Tracker's Delivery protocol, in one mode."""

    __slots__ = ("_flush", "_submit")

    def __init__(
        self, submit: Callable[[UsageRecord, Target], None], flush: Callable[[float | None], int]
    ) -> None:
        self._submit = submit
        self._flush = flush

    def submit(self, record: UsageRecord, target: Target) -> None:
        self._submit(record, target)

    def flush(self, timeout: float | None = None) -> int:
        return self._flush(timeout)


@dataclass(slots=True)
class QueuedRecord:
    response_id: str
    body: bytes | None  # None until a memory record is first encoded
    record: UsageRecord | None = None  # memory entries
    row: SpoolRow | None = None  # spool entries
    on_discard: OnDiscard | None = None


@dataclass
class KeyState:
    """Per (endpoint, key): what waits, and when it may be tried again."""

    target: Target
    key_ref: str
    pending: deque[QueuedRecord] = field(default_factory=deque)
    first_pending_at: float | None = None
    next_attempt: float = 0.0
    attempts: int = 0
    failing_since: float | None = None
    parked: bool = False  # the collector refused this key (401/403): kept, tried slowly
    batch_limit: int = 1000  # lowered when the collector answers 413
    last_error: str | None = None
    delivered: int = 0
    rejected: int = 0


class LogLimiter:
    """At most one log line per kind of event per interval (drops come in bursts)."""

    def __init__(self, interval: float = 30.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -1e18) < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} similar events not logged)"
        log.warning(message, *args)


def wire_of(entry: QueuedRecord) -> dict[str, Any]:
    if entry.record is not None:
        return entry.record.to_wire()
    return decode_wire(entry.body or b"{}")


def decode_wire(body: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(body)
    return value
