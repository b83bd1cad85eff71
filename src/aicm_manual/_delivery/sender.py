"""The sender: one exchange with a collector, and the bodies it sends.

    sender = Sender(transport, gzip_min_bytes=0)
    exchange = sender.post(target, body, ids, timeout=10)
    exchange.outcomes   # per-record outcomes, or None when the request as a whole failed

No retries and no scheduling here: the worker (queued modes) and ``immediate`` decide
what to do with a failed exchange. Error texts never carry a key or raw bytes.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .._http import HttpResponse
from .._protocol import (
    DELIVERED_OUTCOME,
    MAX_REQUEST_BYTES,
    Outcome,
    encode_batch,
    encode_record,
    encode_records,
    parse_results,
)
from .._records import Target, UsageRecord
from ..errors import InvalidRecordError, TransportError
from .queued import Transport
from .retry import parse_retry_after


@dataclass(frozen=True, slots=True)
class Exchange:
    """What one request came to: ``outcomes`` per record, or a failure of the whole."""

    status: int | None  # None: no answer (refused, timeout, reset)
    outcomes: list[Outcome] | None
    retry_after: float | None
    error: str
    ms: float
    all_delivered: bool = False  # a 200 for the whole batch: every outcome is "accepted"


def answer_text(resp: HttpResponse, limit: int = 200) -> str:
    """An error answer as text for messages: its ``detail`` when JSON, else the body."""
    try:
        data = resp.json()
    except TransportError:
        data = None
    if isinstance(data, dict) and "detail" in data:
        text = str(data["detail"])
    else:
        text = resp.body.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


class Sender:
    """Posts request bodies through a transport and reads the answers."""

    def __init__(self, transport: Transport, gzip_min_bytes: int = 0) -> None:
        self.transport = transport
        self._gzip_min = gzip_min_bytes

    def post(
        self,
        target: Target,
        body: bytes,
        ids: Sequence[str],
        timeout: float,
        *,
        detailed: bool = False,
        now: float | None = None,
    ) -> Exchange:
        """One request. ``detailed`` reads every result (costs included) even from a 200."""
        started = time.perf_counter()
        headers = {"Content-Type": "application/json"}
        if self._gzip_min and len(body) >= self._gzip_min:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self.transport.send(target, body, headers, timeout=timeout)
        except TransportError as exc:
            return Exchange(None, None, None, str(exc), _ms(started))
        retry_after = parse_retry_after(
            resp.headers.get("retry-after"), time.time() if now is None else now
        )
        ms = _ms(started)
        if resp.status in (200, 207):
            try:
                answer = resp.json()
                results = answer.get("results") if isinstance(answer, dict) else None
                if (
                    not detailed
                    and resp.status == 200
                    and isinstance(results, list)
                    and len(results) == len(ids)
                ):
                    # 200 means every record was accepted or a duplicate (_protocol.answer).
                    every = [DELIVERED_OUTCOME] * len(ids)
                    return Exchange(200, every, retry_after, "", ms, all_delivered=True)
                outcomes = parse_results(answer, ids)
            except TransportError as exc:
                return Exchange(resp.status, None, retry_after, str(exc), ms)
            if outcomes is None:
                # An answer we cannot match to the records: assume nothing was stored.
                error = f"HTTP {resp.status} with unreadable results"
                return Exchange(502, None, retry_after, error, ms)
            return Exchange(resp.status, outcomes, retry_after, "", ms)
        error = f"HTTP {resp.status}: {answer_text(resp)}"
        return Exchange(resp.status, None, retry_after, error, ms)

    def close(self) -> None:
        self.transport.close()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def request_bodies(records: Sequence[UsageRecord]) -> list[tuple[int, bytes]]:
    """(record count, request body) covering ``records`` in order: one request unless they
    exceed MAX_REQUEST_BYTES. InvalidRecordError names a record JSON cannot hold."""
    try:
        body = encode_records(records)
        if len(body) <= MAX_REQUEST_BYTES:
            return [(len(records), body)]
    except (TypeError, ValueError):
        pass  # found below, record by record, so the error names the record
    bodies: list[bytes] = []
    for record in records:
        try:
            bodies.append(encode_record(record))
        except (TypeError, ValueError) as exc:
            raise InvalidRecordError(
                f"record {record.response_id!r}: usage cannot be sent as JSON: {exc}"
            ) from exc
    out: list[tuple[int, bytes]] = []
    group: list[bytes] = []
    size = 0
    for body in bodies:
        if group and size + len(body) + 1 > MAX_REQUEST_BYTES:
            out.append((len(group), encode_batch(group)))
            group, size = [], 0
        group.append(body)
        size += len(body) + 1
    out.append((len(group), encode_batch(group)))
    return out
