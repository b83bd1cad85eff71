"""What the delivery engine moves around: pending entries, per-key state, the transport.

Pure data and small adapters; the engine in ``_engine`` owns the behaviour.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._http import HttpResponse
from .._records import Target, UsageRecord
from .._secret import NO_KEY
from .settings import Lane
from .spool_schema import SpoolRow

log = logging.getLogger("aicm_manual.delivery")

OnDiscard = Callable[[list[dict[str, Any]], str], None]


class Transport(Protocol):
    """Sends one batch body to a target's collector and returns its answer.

    Raises TransportError when there is no answer (refused, timeout, reset).
    """

    def send(
        self, target: Target, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> HttpResponse: ...

    def close(self) -> None: ...


class HttpTransport:
    """POST ``{api_base}/api/v1/track`` over the package's one HTTP client."""

    def __init__(self, timeout: float) -> None:
        from .._http import HttpClient

        self._client = HttpClient(timeout=timeout)

    def send(
        self, target: Target, body: bytes, headers: dict[str, str], *, timeout: float
    ) -> HttpResponse:
        url = f"{target.api_base}/api/v1/track"
        return self._client.request(
            "POST", url, api_key=target.api_key, headers=headers, body=body, timeout=timeout
        )

    def close(self) -> None:
        self._client.close()


def key_ref(target: Target) -> str:
    """What the spool stores instead of the key: its digest, or "anonymous"."""
    return NO_KEY if target.api_key is None else target.api_key.digest


class Route:
    """One tracker's way out: where, with which key, under which per-tracker settings.

    Compared by identity: the engine keeps one per (target, lane), so a state per route
    costs one dict lookup."""

    __slots__ = ("endpoint", "lane", "ref", "target")

    def __init__(self, target: Target, lane: Lane) -> None:
        self.target = target
        self.lane = lane
        self.ref = key_ref(target)
        self.endpoint = (target.api_base, self.ref)  # what isolation is by

    @property
    def on_discard(self) -> OnDiscard | None:
        return self.target.on_discard


@dataclass(slots=True)
class QueuedRecord:
    response_id: str
    body: bytes | None  # None until a memory record is first encoded
    record: UsageRecord | None = None  # memory entries
    row: SpoolRow | None = None  # spool entries
    on_discard: OnDiscard | None = None


@dataclass
class KeyState:
    """Per route (one tracker's endpoint, key and settings): what waits, and when it may
    be tried again. Only the worker changes it, except the owner's backpressure drops."""

    route: Route
    pending: deque[QueuedRecord] = field(default_factory=deque)
    first_pending_at: float | None = None
    next_attempt: float = 0.0
    attempts: int = 0
    failing_since: float | None = None
    parked: bool = False  # the collector refused this key (401/403): kept, tried slowly
    batch_limit: int = 1000  # halved on 400/413 or while hunting a poison record
    last_error: str | None = None
    delivered: int = 0
    rejected: int = 0
    out: list[Job] = field(default_factory=list)  # requests out on sender threads
    epoch: int = 0  # whole-request failures so far: an answer to a request sent before
    # the latest failure settles its records but leaves the lane's retry state alone
    ready: Job | None = None  # the next batch, encoded while requests are out
    memory: int = 0  # memory records of this route not yet settled (pending or in flight)
    hunting: bool = False  # bisecting a batch the collector keeps failing with a 5xx
    hunt_ok: bool = False  # a part of it went through: the collector itself works
    hunt_left: int = 0  # records of the suspect batch not yet settled

    @property
    def busy(self) -> bool:
        return bool(self.out)

    @property
    def inflight(self) -> list[QueuedRecord]:
        return [e for job in list(self.out) for e in job.entries]

    @property
    def target(self) -> Target:
        return self.route.target

    @property
    def key_ref(self) -> str:
        return self.route.ref


@dataclass(slots=True)
class Job:
    """One request of one lane: the entries and the body that carries them."""

    state: KeyState
    entries: list[QueuedRecord]
    body: bytes
    epoch: int = 0  # the lane's epoch when it was sent


def wire_of(entry: QueuedRecord) -> dict[str, Any]:
    if entry.record is not None:
        return entry.record.to_wire()
    return decode_wire(entry.body or b"{}")


def decode_wire(body: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(body)
    return value
