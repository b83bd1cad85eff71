"""``immediate`` mode: send on the caller's thread, with a few retries inside a deadline.

    outcomes = send_records(sender, records, route, backoff=backoff, stop=event, ...)

At most ``MAX_ATTEMPTS`` requests per chunk, all within the route's ``immediate_deadline``
(each request's timeout is cut to what is left of it): a caller is never held for long
when the collector is down. DeliveryError when a chunk cannot be delivered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .._protocol import MAX_RECORDS_PER_REQUEST, Outcome
from .._records import UsageRecord
from .._secret import abbreviate
from ..errors import DeliveryError
from .health import Health
from .queued import Route, log
from .retry import Backoff, is_retryable
from .sender import Sender, request_bodies

MAX_ATTEMPTS = 4  # the first try and up to three retries


def send_records(
    sender: Sender,
    records: Sequence[UsageRecord],
    route: Route,
    *,
    backoff: Backoff,
    stop: threading.Event,
    health: Health,
    clock: Callable[[], float],
    wall: Callable[[], float],
) -> list[Outcome]:
    """The collector's outcome per record, in order (rejections are answers, not errors).

    One request per chunk of at most 1000 records and MAX_REQUEST_BYTES; everything is
    encoded before anything is sent, so a record JSON cannot hold fails the whole call.
    """
    requests: list[tuple[Sequence[UsageRecord], bytes]] = []
    for start in range(0, len(records), MAX_RECORDS_PER_REQUEST):
        chunk = records[start : start + MAX_RECORDS_PER_REQUEST]
        offset = 0
        for count, body in request_bodies(chunk):
            requests.append((chunk[offset : offset + count], body))
            offset += count
    with health.lock:
        health.immediate_sent += len(records)
    deadline = clock() + route.lane.immediate_deadline
    outcomes: list[Outcome] = []
    for part, body in requests:
        try:
            outcomes += _send_chunk(
                sender, part, body, route, deadline, backoff, stop, health, clock, wall
            )
        except DeliveryError as exc:
            if outcomes:
                exc.reason = f"{exc.reason} ({len(outcomes)} of {len(records)} records delivered)"
                exc.args = (exc.reason,)
            raise
    return outcomes


def _send_chunk(
    sender: Sender,
    records: Sequence[UsageRecord],
    body: bytes,
    route: Route,
    deadline: float,
    backoff: Backoff,
    stop: threading.Event,
    health: Health,
    clock: Callable[[], float],
    wall: Callable[[], float],
) -> list[Outcome]:
    ids = [r.response_id for r in records]
    wire = records[0].to_wire() if len(records) == 1 else None
    target = route.target
    for attempt in range(1, MAX_ATTEMPTS + 1):
        left = deadline - clock()
        if left <= 0:
            break
        health.request(batch=False)
        exchange = sender.post(
            target, body, ids, min(route.lane.timeout, left), detailed=True, now=wall()
        )
        if exchange.outcomes is not None:
            delivered = sum(o.delivered for o in exchange.outcomes)
            health.sent(delivered, len(ids) - delivered, wall())
            log.debug(
                "aicm: sent %d records to %s (key %s): HTTP %s, %d delivered, %d rejected "
                "in %.0f ms",
                len(ids),
                target.api_base,
                abbreviate(route.ref),
                exchange.status,
                delivered,
                len(ids) - delivered,
                exchange.ms,
            )
            return exchange.outcomes
        health.failed(exchange.error)
        if not is_retryable(exchange.status):
            raise DeliveryError(
                exchange.error, record=wire, status=exchange.status, permanent=False
            )
        delay = backoff.delay(attempt, exchange.retry_after)
        if attempt == MAX_ATTEMPTS or clock() + delay >= deadline:
            break
        with health.lock:
            health.total_retries += 1
        stop.wait(delay)
    error = health.last_error or "no answer"
    raise DeliveryError(
        f"gave up after {attempt} attempt(s) within {route.lane.immediate_deadline:g} s: {error}",
        record=wire,
        status=exchange.status,
    )
