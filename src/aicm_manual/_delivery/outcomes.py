"""How the worker settles an answered request: delivered and rejected records, retries with
backoff, parking on 401/403, batch halving on 400/413, poison isolation by bisection, the
retry budget of memory records, dead letters and ``on_discard`` callbacks."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._protocol import Outcome
from .._records import UsageRecord
from .._secret import abbreviate
from .health import Health, LogLimiter
from .queued import Job, KeyState, OnDiscard, QueuedRecord, Route, log
from .retry import AUTH_STATUSES, Backoff, is_retryable
from .sender import Exchange, Sender
from .senders import SenderPool
from .settings import DeliverySettings
from .stores import InHand, MemoryStore, SpoolStore, Store

POISON_AFTER = 2  # whole-batch 5xx answers before the batch is bisected


class Outcomes:
    """The worker's outcome handling; the attributes below are the engine's."""

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
    _cond: threading.Condition
    _asleep: bool

    def _by_store(self, entries: Sequence[QueuedRecord]) -> list[tuple[Store, list[QueuedRecord]]]:
        raise NotImplementedError  # the worker's

    def _dispatch(self, job: Job) -> None:
        raise NotImplementedError  # the worker's

    def outstanding(self) -> int:
        raise NotImplementedError  # the engine's

    def _complete(self, job: Job, exchange: Exchange, threaded: bool) -> None:
        """Account for one answered request (on the worker thread)."""
        state, entries = job.state, job.entries
        state.out = [j for j in state.out if j is not job]
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
            current = job.epoch == state.epoch
            self._settle(state, entries, exchange.outcomes, exchange.all_delivered, current)
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
        if job.epoch != state.epoch:
            # Sent alongside a request that failed since: its records wait with the
            # lane's, and the lane's backoff, halving and hunt count one failure.
            self.health_counts.retried(len(entries), error)
            self._retry_later(state, entries, max(state.next_attempt, now))
            return
        state.epoch += 1
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
        current: bool = True,
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
        if current:  # not an answer to a request sent before the lane's last failure
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
