"""The worker's half of the engine: scheduling, batch cutting, outcomes, health.

One cycle (``run_once``) moves new records from the intake queue to their route's state,
claims spooled rows, sends every batch that is full, due or being flushed, and accounts
for the answers. Failures stay within their route: backoff, parking (401/403), batch
halving (400/413), poison isolation (a batch the collector keeps failing with a 5xx is
bisected and only the record that fails alone, while the rest goes through, is
dead-lettered), and the retry budget of memory records.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._protocol import (
    MAX_REQUEST_BYTES,
    Outcome,
    encode_batch,
    encode_record,
    encode_records,
)
from .._records import Target, UsageRecord
from .._secret import abbreviate
from .health import Health, LogLimiter
from .queued import Job, KeyState, OnDiscard, QueuedRecord, Route, log
from .retry import AUTH_STATUSES, Backoff, is_retryable
from .sender import Exchange, Sender
from .senders import SenderPool
from .settings import DeliverySettings
from .stores import InHand, MemoryStore, SpoolStore, Store

POISON_AFTER = 2  # whole-batch 5xx answers before the batch is bisected


class Worker:
    """Mixed into DeliveryEngine; the attributes below are the engine's."""

    settings: DeliverySettings
    _queue: deque[tuple[UsageRecord, Route]]
    _states: dict[Route, KeyState]
    _keys: dict[str, Route]
    _lock: threading.Lock
    _clock: Callable[[], float]
    _wall: Callable[[], float]
    _backoff: Backoff
    _sender: Sender
    _logs: LogLimiter
    _memory: MemoryStore
    _spooled: SpoolStore | None
    _in_hand: InHand
    _thread: threading.Thread | None
    _stop: threading.Event
    _stop_by: float
    _wake: threading.Event
    _senders: SenderPool
    _answers: deque[tuple[Job, Exchange]]
    _flushing: int
    _batch_size: int
    _capacity: int
    _avg_bytes: float
    _next_owner_check: float
    health_counts: Health

    def route(self, target: Target, lane: Any = None) -> Route:
        raise NotImplementedError  # the engine's

    def outstanding(self) -> int:
        raise NotImplementedError  # the engine's

    def _resize(self) -> None:
        raise NotImplementedError  # the engine's

    # -- one cycle --------------------------------------------------------------------------

    def run_once(self, now: float | None = None) -> None:
        """One worker cycle at ``now`` (the engine's clock by default), every request sent
        and answered before it returns. Tests drive the engine with it instead of a thread."""
        self._cycle(now, threaded=False)

    def _cycle(self, now: float | None, threaded: bool) -> None:
        """Settle answered requests, take in new records, and start every batch that is
        full, due or being flushed: on a sender thread when ``threaded`` (one request per
        lane at a time, the lane's next batch encoded meanwhile), else right here."""
        now = self._clock() if now is None else now
        self._settle_answers()
        self._memory.claim(now)
        spooled = self._spooled
        if spooled is not None:
            spooled.claim(now)
        flushing = self._flushing > 0 or self._stop.is_set()
        if threaded and self._stop.is_set() and self._clock() >= self._stop_by:
            return  # close() stopped waiting: start nothing new
        for state in list(self._states.values()):
            if state.busy:
                if state.ready is None and self._steady(state) and self._due(state, now, flushing):
                    state.ready = self._prepare(state)
                continue
            while state.pending and state.next_attempt <= now:
                if not self._due(state, now, flushing):
                    break
                job = self._prepare(state)
                if job is None:
                    continue
                if threaded:
                    self._dispatch(job)
                    if self._steady(state) and self._due(state, now, flushing):
                        state.ready = self._prepare(state)  # while the request is out
                    break
                self._complete(job, self._post(job), threaded=False)
                now = max(now, self._clock())
        if spooled is not None and now >= self._next_owner_check:
            self._next_owner_check = now + 30.0
            spooled.worker.free_dead_owners()
            spooled.recount()

    def _due(self, state: KeyState, now: float, flushing: bool) -> bool:
        if flushing or len(state.pending) >= min(state.batch_limit, self._batch_size):
            return True
        first = state.first_pending_at
        return first is not None and now - first >= self.settings.batch_interval

    def _steady(self, state: KeyState) -> bool:
        """Whether the lane's next batch may be encoded before the current one is answered:
        only while nothing fails, so batch halving and poison hunts see one batch at once."""
        return (
            state.attempts == 0
            and not state.hunting
            and state.batch_limit >= self._batch_size
            and bool(state.pending)
        )

    def _dispatch(self, job: Job) -> None:
        state = job.state
        state.busy = True
        state.inflight = job.entries
        started = threading.Event()
        self._senders.submit(lambda: self._exchange(job, started))
        # Let the sender take the GIL and put the request on the wire before this thread
        # encodes the lane's next batch: otherwise the request waits for the encoding.
        started.wait(0.01)

    def _exchange(self, job: Job, started: threading.Event) -> None:
        """On a sender thread: one request, its answer handed back to the worker."""
        started.set()
        try:
            exchange = self._post(job)
        except Exception as exc:  # anything but a transport error: retried like one
            exchange = Exchange(None, None, None, f"sender: {type(exc).__name__}: {exc}", 0.0)
        self._answers.append((job, exchange))
        self._wake.set()

    def _settle_answers(self) -> None:
        answers = self._answers
        while answers:
            job, exchange = answers.popleft()
            self._complete(job, exchange, threaded=True)

    def in_flight(self) -> bool:
        return any(s.busy for s in list(self._states.values()))

    def has_work(self, now: float) -> bool:
        """Requests out, or batches that could be sent now (what close() waits for)."""
        return bool(self._answers) or any(
            s.busy or (s.pending and s.next_attempt <= now) for s in list(self._states.values())
        )

    def _poll(self) -> float:
        """How soon the worker looks again while anything waits."""
        return max(0.005, min(0.05, self.settings.batch_interval / 2))

    def _sleep_time(self) -> float | None:
        now = self._clock()
        waits: list[float] = []
        poll = self._poll()
        if self._queue or self._flushing:
            waits.append(poll)
        for state in list(self._states.values()):
            if state.pending:
                waits.append(max(0.0, state.next_attempt - now) or poll)
        spooled = self._spooled
        if spooled is not None:
            # Right after a claim that found a batch's worth, more are likely ready: go on
            # at once. A trickle waits for the poll, so callers' commits are not contended
            # by a claim transaction per handful of rows.
            more = spooled.last_claimed >= self._batch_size
            waits.append((0.0 if more else poll) if spooled.known else 1.0)
        if self._stop.is_set():  # closing: answers wake the worker, the deadline ends it
            waits.append(max(0.0, self._stop_by - now))
        return min(waits) if waits else None

    def _state_of(self, route: Route) -> KeyState:
        state = self._states.get(route)
        if state is None:
            state = self._states[route] = KeyState(route)
            state.batch_limit = self._batch_size
        return state

    def _busy(self, now: float) -> set[tuple[str, str]]:
        """The (endpoint, key) pairs whose rows must not be claimed now: backing off, or
        with a full batch already in hand."""
        return {
            s.route.endpoint
            for s in list(self._states.values())
            if s.next_attempt > now or len(s.pending) >= self._batch_size
        }

    def _store(self, entry: QueuedRecord) -> Store:
        spooled = self._spooled
        return spooled if entry.row is not None and spooled is not None else self._memory

    def _by_store(self, entries: Sequence[QueuedRecord]) -> list[tuple[Store, list[QueuedRecord]]]:
        if self._spooled is None:  # memory only: no record to look at
            return [(self._memory, list(entries))] if entries else []
        groups: dict[int, tuple[Store, list[QueuedRecord]]] = {}
        for entry in entries:
            store = self._store(entry)
            groups.setdefault(id(store), (store, []))[1].append(entry)
        return list(groups.values())

    # -- one batch --------------------------------------------------------------------------

    def _take(self, state: KeyState) -> list[QueuedRecord]:
        limit = min(state.batch_limit, self._batch_size)
        entries: list[QueuedRecord] = []
        size = 0.0
        while state.pending and len(entries) < limit:
            try:
                entry = state.pending[0]
            except IndexError:  # the owner's backpressure took the last one just now
                break
            cost = (self._avg_bytes if entry.body is None else len(entry.body)) + 1
            if entries and size + cost > self.settings.batch_bytes:
                break
            try:
                entries.append(state.pending.popleft())
            except IndexError:  # the owner's backpressure took it just now
                break
            size += cost
        return entries

    def _encode(self, entries: list[QueuedRecord]) -> tuple[bytes, list[tuple[QueuedRecord, str]]]:
        """The request body, and the entries that cannot be sent as JSON (with why)."""
        if all(e.body is None for e in entries):
            try:
                return encode_records([e.record for e in entries if e.record is not None]), []
            except (TypeError, ValueError):
                pass  # find the culprits one by one below
        bad: list[tuple[QueuedRecord, str]] = []
        for entry in entries:
            if entry.body is None and entry.record is not None:
                try:
                    entry.body = encode_record(entry.record)
                except (TypeError, ValueError) as exc:
                    bad.append((entry, f"not JSON-serialisable: {exc}"))
        return encode_batch([e.body for e in entries if e.body is not None]), bad

    def _prepare(self, state: KeyState) -> Job | None:
        """Take the lane's next batch and encode it; None when nothing of it can be sent
        (records JSON cannot hold are dead-lettered here)."""
        entries = self._take(state)
        if not entries:
            return None
        body, bad = self._encode(entries)
        if bad:
            self._finish(state, [], bad)
            entries = [e for e in entries if e.body is not None]
            if not entries:
                return None
        while len(body) > MAX_REQUEST_BYTES and len(entries) > 1:
            # Records far larger than the average: send half now, half next time.
            half = len(entries) // 2
            state.pending.extendleft(reversed(entries[half:]))
            entries = entries[:half]
            body, _ = self._encode(entries)
        self._avg_bytes = 0.9 * self._avg_bytes + 0.1 * (len(body) / len(entries))
        self._resize()
        return Job(state, entries, body)

    def _post(self, job: Job) -> Exchange:
        route = job.state.route
        return self._sender.post(
            route.target,
            job.body,
            [e.response_id for e in job.entries],
            route.lane.timeout,
            now=self._wall(),
        )

    def _complete(self, job: Job, exchange: Exchange, threaded: bool) -> None:
        """Account for one answered request (on the worker thread)."""
        state, entries = job.state, job.entries
        state.busy = False
        state.inflight = []
        ready, state.ready = state.ready, None
        self.health_counts.request()
        now = self._clock()
        route = state.route
        status, error = exchange.status, exchange.error
        if exchange.outcomes is not None:
            if log.isEnabledFor(logging.DEBUG):
                delivered = sum(o.delivered for o in exchange.outcomes)
                log.debug(
                    "aicm: sent %d records to %s (key %s): HTTP %s, %d delivered, "
                    "%d rejected in %.0f ms",
                    len(entries),
                    route.target.api_base,
                    abbreviate(route.ref),
                    status,
                    delivered,
                    len(entries) - delivered,
                    exchange.ms,
                )
            # Logged first: a flush may return as soon as the records are settled.
            self._settle(state, entries, exchange.outcomes, exchange.all_delivered)
            if ready is not None:
                if threaded and state.next_attempt <= now and not self._stop_waiting():
                    self._dispatch(ready)  # encoded while this one was out: no gap
                else:
                    self._put_back(state, ready.entries)
            return
        if ready is not None:  # first in line again, behind the batch that failed
            self._put_back(state, ready.entries)
        log.debug(
            "aicm: sent %d records to %s (key %s): %s in %.0f ms",
            len(entries),
            route.target.api_base,
            abbreviate(route.ref),
            error,
            exchange.ms,
        )
        state.last_error = error
        if status in (400, 413) and len(entries) > 1:
            # Too large, or one bad record refusing the batch: halve and try again.
            state.batch_limit = max(1, len(entries) // 2)
            self._put_back(state, entries)
        elif status in (400, 413):
            why = "too large for the collector (HTTP 413)" if status == 413 else error
            self._finish(state, [], [(entries[0], why)])
        elif status in AUTH_STATUSES or (status is not None and not is_retryable(status)):
            state.parked = status in AUTH_STATUSES
            self.health_counts.failed(error)
            self._logs.warning(
                f"park:{route.ref}",
                "aicm: collector answered %s for key %s; its records wait and are retried "
                "every %.0f s",
                status,
                abbreviate(route.ref),
                self.settings.auth_retry_interval,
            )
            self._retry_later(state, entries, now + self.settings.auth_retry_interval)
        else:
            self._failed(state, entries, status, error, exchange.retry_after, now)

    def _stop_waiting(self) -> bool:
        return self._stop.is_set() and self._clock() >= self._stop_by

    def _failed(
        self,
        state: KeyState,
        entries: list[QueuedRecord],
        status: int | None,
        error: str,
        retry_after: float | None,
        now: float,
    ) -> None:
        """A retryable failure of the whole batch."""
        state.attempts += 1
        state.failing_since = state.failing_since or now
        self.health_counts.retried(len(entries), error)
        # 502, 503 and 504 say the collector (or what is in front of it) is unavailable,
        # and a Retry-After asks for patience: neither points at a record.
        record_trouble = (
            status is not None
            and 500 <= status <= 599
            and status not in (502, 503, 504)
            and retry_after is None
        )
        if record_trouble and (state.attempts >= POISON_AFTER or state.hunting):
            if len(entries) > 1:
                # The collector keeps failing this batch: one record may be the cause.
                if not state.hunting:
                    state.hunting, state.hunt_left = True, len(entries)
                state.batch_limit = max(1, len(entries) // 2)
                self._put_back(state, entries)
                return
            if state.hunting and state.hunt_ok and state.attempts >= POISON_AFTER:
                why = f"the collector fails on this record alone ({error})"
                self._hunted(state, 1)
                self._finish(state, [], [(entries[0], why)])
                return
        route = state.route
        delay = self._backoff.delay(state.attempts, retry_after)
        self._logs.warning(
            f"retry:{route.ref}@{route.target.api_base}",
            "aicm: %d record(s) for %s (key %s) not delivered: %s; retrying in %.1f s",
            len(entries),
            route.target.api_base,
            abbreviate(route.ref),
            error,
            delay,
        )
        if now - state.failing_since >= route.lane.retry_budget:
            self._give_up(state, entries, error)
        else:
            self._retry_later(state, entries, now + delay)

    @staticmethod
    def _hunted(state: KeyState, records: int) -> None:
        """``records`` of the batch under suspicion are settled; the hunt ends with it."""
        state.hunt_left -= records
        if state.hunt_left <= 0:
            state.hunting = state.hunt_ok = False

    def _put_back(self, state: KeyState, entries: list[QueuedRecord]) -> None:
        state.pending.extendleft(reversed(entries))
        if state.first_pending_at is None:  # settling the batch before them cleared it
            state.first_pending_at = self._clock()

    def _settle(
        self,
        state: KeyState,
        entries: list[QueuedRecord],
        outcomes: list[Outcome],
        all_delivered: bool = False,
    ) -> None:
        delivered: list[QueuedRecord] = entries
        rejected: list[tuple[QueuedRecord, str]] = []
        if not all_delivered:
            delivered = [e for e, o in zip(entries, outcomes, strict=True) if o.delivered]
            rejected = [
                (e, f"{o.status}: {'; '.join(o.errors) or 'no reason given'}")
                for e, o in zip(entries, outcomes, strict=True)
                if not o.delivered
            ]
        state.attempts = 0
        state.failing_since = None
        state.parked = False
        state.next_attempt = 0.0
        if state.hunting:
            state.hunt_ok = True
            self._hunted(state, len(entries))
        else:  # the batch size grows back after a 400/413 halved it
            state.batch_limit = min(self._batch_size, state.batch_limit * 2)
        self.health_counts.sent(len(delivered), len(rejected), self._wall())
        self._finish(state, delivered, rejected, counted=True)

    def _finish(
        self,
        state: KeyState,
        delivered: list[QueuedRecord],
        rejected: list[tuple[QueuedRecord, str]],
        counted: bool = False,
    ) -> None:
        """Settle entries that left for good, each with its store: delivered, or
        dead-lettered."""
        for store, group in self._by_store(delivered):
            store.ack(state, group)
        if rejected:
            why = dict((id(e), reason) for e, reason in rejected)
            for store, group in self._by_store([e for e, _ in rejected]):
                store.dead_letter(state, [(e, why[id(e)]) for e in group])
            self._logs.warning(
                "rejected",
                "aicm: %d record(s) dead-lettered: %s",
                len(rejected),
                rejected[0][1],
            )
        state.delivered += len(delivered)
        state.rejected += len(rejected)
        if not counted:
            self.health_counts.sent(len(delivered), len(rejected), self._wall())
        if not state.pending:
            state.first_pending_at = None

    def _retry_later(self, state: KeyState, entries: list[QueuedRecord], when: float) -> None:
        state.next_attempt = when
        for store, group in self._by_store(entries):
            store.release(state, group, when)
        if not state.pending:
            state.first_pending_at = None

    def _give_up(self, state: KeyState, entries: list[QueuedRecord], error: str) -> None:
        for store, group in self._by_store(entries):
            store.expire(state, group, error)
        if not state.pending:
            state.first_pending_at = None
        state.next_attempt = self._clock() + self._backoff.delay(state.attempts)

    def _discard(self, items: list[tuple[dict[str, Any], OnDiscard | None]], reason: str) -> None:
        self.health_counts.discarded(len(items), reason)
        self._logs.warning(
            "discard:" + reason, "aicm: discarded %d record(s): %s", len(items), reason
        )
        callbacks: dict[int, tuple[OnDiscard, list[dict[str, Any]]]] = {}
        for wire, callback in items:
            if callback is not None:
                callbacks.setdefault(id(callback), (callback, []))[1].append(wire)
        for callback, wires in callbacks.values():
            try:
                callback(wires, reason)
            except Exception:  # a user callback must not take the worker down
                log.exception("aicm: on_discard callback raised")

    # -- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """A snapshot; counts are in records."""
        now = self._clock()
        queued = self.outstanding()
        states = list(self._states.values())
        oldest = [now - s.first_pending_at for s in states if s.first_pending_at]
        per_key = {
            abbreviate(s.key_ref) + "@" + s.target.api_base: {
                "pending": len(s.pending),
                "delivered": s.delivered,
                "rejected": s.rejected,
                "attempts": s.attempts,
                "backoff_remaining_s": round(max(0.0, s.next_attempt - now), 3),
                "parked": s.parked,
                "last_error": s.last_error,
            }
            for s in states
        }
        spool: dict[str, Any] | None = None
        if self._spooled is not None:
            with contextlib.suppress(Exception):
                stats = self._spooled.worker.stats()
                stats["waiting_for_unknown_key"] = sum(
                    v["records"] for k, v in stats["by_key"].items() if k not in self._keys
                )
                stats["by_key"] = {abbreviate(k): v for k, v in stats["by_key"].items()}
                stats["dead_by_key"] = {abbreviate(k): v for k, v in stats["dead_by_key"].items()}
                spool = stats
        thread = self._thread
        counts = self.health_counts.snapshot()
        hc = self.health_counts
        in_memory = len(self._queue) + self._in_hand.count
        enqueued = hc.total_drained + len(self._queue) + hc.spool_put + hc.immediate_sent
        oldest_age = round(max(oldest), 3) if oldest else (0.0 if not queued else None)
        return {
            "worker_alive": bool(thread is not None and thread.is_alive()),
            "delivery_type": self.settings.delivery_type.value,
            "queued": queued,
            "queue_capacity": self._capacity,
            "queue_utilization": round(in_memory / self._capacity, 6),
            "total_enqueued": enqueued,
            **counts,
            "oldest_queued_age_s": oldest_age,
            "per_key": per_key,
            "spool": spool,
        }
