"""The worker's half of the engine: scheduling, batch cutting and health (the outcome of
each answered request is settled in ``outcomes.py``).

One cycle (``run_once``) moves new records from the intake queue to their route's state,
claims spooled rows, sends every batch that is full, due or being flushed, and accounts
for the answers. Failures stay within their route: backoff, parking (401/403), batch
halving (400/413), poison isolation (a batch the collector keeps failing with a 5xx is
bisected and only the record that fails alone, while the rest goes through, is
dead-lettered), and the retry budget of memory records.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from .._protocol import (
    MAX_REQUEST_BYTES,
    encode_batch,
    encode_record,
    encode_records,
)
from .._records import Target
from .._secret import abbreviate
from .outcomes import Outcomes
from .queued import Job, KeyState, QueuedRecord, Route, log
from .sender import Exchange
from .stores import Store

# Requests one lane may have out at once while nothing fails: the collector works on one
# batch while the next is sent (about 1.4x the records/s of one at a time to one collector
# process). After any failure a lane sends one request at a time, so backoff, batch halving
# and the poison hunt each see one batch.
PIPELINE = 2


class Worker(Outcomes):
    """Mixed into DeliveryEngine: scheduling, batch cutting and health."""

    def route(self, target: Target, lane: Any = None) -> Route:
        raise NotImplementedError  # the engine's

    def _resize(self) -> None:
        raise NotImplementedError  # the engine's

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self._cycle(None, threaded=True)
            except Exception as exc:  # keep delivering; report it
                self.health_counts.failed(f"worker: {type(exc).__name__}: {exc}")
                log.exception("aicm: delivery worker error")
            with self._cond:
                self._cond.notify_all()
            if self._stop.is_set():
                now = self._clock()
                if now >= self._stop_by or not self.has_work(now):
                    return
            wait = self._sleep_time()
            if wait is None or wait > self._poll():
                # Callers wake a worker that would not look again within a poll; one that
                # will is left alone (a wake per record or two cost 8% of a burst).
                self._asleep = True
                if self._queue:  # a record came in before the flag was up
                    wait = 0.0
            self._wake.wait(wait)
            self._asleep = False

    # -- one cycle --------------------------------------------------------------------------

    def run_once(self, now: float | None = None) -> None:
        """One worker cycle at ``now`` (the engine's clock by default), every request sent
        and answered before it returns. Tests drive the engine with it instead of a thread."""
        self._cycle(now, threaded=False)

    def _cycle(self, now: float | None, threaded: bool) -> None:
        """Settle answered requests, take in new records, and start every batch that is
        full, due or being flushed: on a sender thread when ``threaded`` (up to PIPELINE
        requests per lane while it delivers without failures, else one; the lane's next
        batch encoded meanwhile), else right here."""
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
                if threaded:
                    self._fill(state, now, flushing)
                continue
            while state.pending and state.next_attempt <= now:
                if not self._due(state, now, flushing):
                    break
                job = self._prepare(state)
                if job is None:
                    continue
                if threaded:
                    self._dispatch(job)
                    self._fill(state, now, flushing)
                    break
                job.epoch = state.epoch
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

    def _fill(self, state: KeyState, now: float, flushing: bool) -> None:
        """While the lane delivers without failures: up to PIPELINE requests out, and its
        next batch encoded meanwhile (so batch halving and poison hunts see one batch)."""
        if (
            state.attempts
            or state.hunting
            or state.parked
            or state.next_attempt > now
            or state.batch_limit < self._batch_size
        ):
            return  # a failure since (backoff, a refused key, halving, a poison hunt)
        while len(state.out) < PIPELINE:
            job, state.ready = state.ready, None
            if job is None:
                if not (state.pending and self._due(state, now, flushing)):
                    return
                job = self._prepare(state)
                if job is None:
                    return
            self._dispatch(job)
        if state.ready is None and state.pending and self._due(state, now, flushing):
            state.ready = self._prepare(state)

    def _dispatch(self, job: Job) -> None:
        state = job.state
        job.epoch = state.epoch
        state.out.append(job)
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
