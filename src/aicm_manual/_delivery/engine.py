"""The delivery engine: one worker thread that batches, sends and retries every record.

    engine = DeliveryEngine(DeliverySettings())
    engine.submit(record, target)          # mem_queue: an append, no lock, no syscall
    engine.submit_durable(record, target)  # persistent_queue: a committed SQLite insert
    engine.send_now(record, target)        # immediate: on the caller's thread, with retries
    engine.flush(timeout=5)                # -> records still pending

The hot path appends ``(record, target)`` to a deque (atomic under the GIL) and wakes the
worker only when the queue was empty or a batch has filled. The worker owns everything
else: it encodes records, groups them per (endpoint, key), sends one request per group,
reads the per-record results, and keeps per-key backoff so one throttled or refused key
never stalls the others. No lock is ever held across I/O.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._protocol import (
    DELIVERED_OUTCOME,
    MAX_RECORDS_PER_REQUEST,
    MAX_REQUEST_BYTES,
    Outcome,
    encode_batch,
    encode_kept,
    encode_record,
    encode_records,
    parse_results,
)
from .._records import Target, UsageRecord
from .._secret import abbreviate
from ..errors import DeliveryError, InvalidRecordError, QueueFullError, TransportError
from .queued import (
    HttpTransport,
    KeyState,
    LogLimiter,
    ModeDelivery,
    OnDiscard,
    QueuedRecord,
    Transport,
    decode_wire,
    key_ref,
    log,
    wire_of,
)
from .retry import AUTH_STATUSES, Backoff, is_retryable, parse_retry_after
from .settings import DeliverySettings, DeliveryType
from .spool import Spool


class DeliveryEngine:
    """One per process in normal use (see ``get_global_delivery``)."""

    def __init__(
        self,
        settings: DeliverySettings | None = None,
        *,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings or DeliverySettings()
        self._transport_arg = transport
        self._clock = clock
        self._wall = wall_clock
        self._backoff = Backoff(self.settings.backoff_initial, self.settings.backoff_max, jitter)
        self._logs = LogLimiter()
        self._init_state()
        weak = weakref.WeakMethod(self._after_fork)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: (m := weak()) is not None and m())

    def _init_state(self) -> None:
        s = self.settings
        self._queue: deque[tuple[UsageRecord, Target]] = deque()
        self._capacity = s.queue_size
        self._batch_size = s.batch_size
        self._avg_bytes = 512.0
        self._pending_total = 0
        self._states: dict[Target, KeyState] = {}
        self._keys: dict[str, Target] = {}  # key_ref -> a target carrying that key
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._lock = threading.Lock()  # counters touched off the worker, and start-up
        self._flushing = 0
        self._thread: threading.Thread | None = None
        self._transport: Transport | None = self._transport_arg
        self._spool: Spool | None = None  # callers' connection
        self._worker_spool: Spool | None = None
        self._spool_known = 0  # rows of known keys, as of the worker's last look
        self._spool_put = 0
        self._last_claimed = 0
        self._next_owner_check = 0.0
        self._closed = False
        self.total_drained = 0
        self.total_delivered = 0
        self.total_rejected = 0
        self.total_discarded = 0
        self.discarded_by_reason: dict[str, int] = {}
        self.total_retries = 0
        self.total_batches = 0
        self.total_requests = 0
        self.immediate_sent = 0
        self.last_error: str | None = None
        self.last_success_at: float | None = None
        self.dead_letters: deque[tuple[dict[str, Any], str]] = deque(maxlen=1000)

    def _after_fork(self) -> None:
        # The parent still owns (and will deliver) what was queued; the child starts empty
        # with its own thread, locks and spool connections.
        self._init_state()

    # -- callers ---------------------------------------------------------------------------

    def register(self, target: Target) -> None:
        """Make a key known, so spooled rows carrying its reference can be sent."""
        self._keys.setdefault(key_ref(target), target)

    def submit(self, record: UsageRecord, target: Target) -> None:
        """mem_queue: queue a record for the worker. Never blocks unless the queue is full."""
        queue = self._queue
        if len(queue) + self._pending_total >= self._capacity and not self._full(record, target):
            return
        if self._thread is None:
            self._start()
        was_empty = not queue
        queue.append((record, target))
        if was_empty or len(queue) % self._batch_size == 0:
            self._wake.set()

    def has_room(self, delivery_type: DeliveryType, records: int = 1) -> bool:
        """Whether ``records`` more fit without the on-full policy, right now (advisory:
        async callers use it to stay on the event loop when nothing can wait)."""
        if delivery_type is DeliveryType.PERSISTENT_QUEUE:
            return self._spool_known + records <= self.settings.spool_size
        if delivery_type is DeliveryType.MEM_QUEUE:
            return len(self._queue) + self._pending_total + records <= self._capacity
        return False  # immediate always waits for the collector

    def submit_durable(self, record: UsageRecord, target: Target) -> None:
        """persistent_queue: commit the record to the spool before returning."""
        try:
            body = encode_record(record)
        except (TypeError, ValueError) as exc:
            raise InvalidRecordError(f"usage cannot be sent as JSON: {exc}") from exc
        spool = self._spool or self._open_spool()
        ref = key_ref(target)
        self._keys.setdefault(ref, target)
        if self._spool_known >= self.settings.spool_size:
            self._spool_full(spool, target)
        with self._lock:  # so a recount by the worker never sees the row half-counted
            spool.put(ref, target.api_base, record.response_id, body)
            self._spool_put += 1
            self._spool_known += 1
            known = self._spool_known
        if self._thread is None:
            self._start()
        if known == 1 or known % self._batch_size == 0:
            self._wake.set()  # otherwise the worker's poll finds the rows

    def submit_durable_many(self, records: Sequence[UsageRecord], target: Target) -> None:
        """persistent_queue, many records: one spool transaction for all of them (a commit
        per record costs about 7 times more); committed before returning."""
        if self._spool_known + len(records) > self.settings.spool_size:
            for record in records:  # the on-full policy applies record by record
                self.submit_durable(record, target)
            return
        rows: list[tuple[str, bytes]] = []
        for record in records:
            try:
                rows.append((record.response_id, encode_record(record)))
            except (TypeError, ValueError) as exc:
                raise InvalidRecordError(
                    f"record {record.response_id!r}: usage cannot be sent as JSON: {exc}"
                ) from exc
        spool = self._spool or self._open_spool()
        ref = key_ref(target)
        self._keys.setdefault(ref, target)
        with self._lock:
            spool.put_many(ref, target.api_base, rows)
            self._spool_put += len(rows)
            self._spool_known += len(rows)
        if self._thread is None:
            self._start()
        self._wake.set()

    def send_now(self, record: UsageRecord, target: Target) -> None:
        """immediate: send on this thread with retries; raise DeliveryError if it fails."""
        [outcome] = self.send_batch_now([record], target)
        if not outcome.delivered:
            reason = f"{outcome.status}: {'; '.join(outcome.errors) or 'no reason given'}"
            raise DeliveryError(reason, record=record.to_wire(), status=207, permanent=True)

    def send_batch_now(self, records: Sequence[UsageRecord], target: Target) -> list[Outcome]:
        """immediate, many records: one request per chunk of at most 1000 records and
        MAX_REQUEST_BYTES, each retried as a whole; the collector's outcome per record, in
        order. Rejected records are answers, not errors; DeliveryError when a chunk cannot
        be delivered (earlier chunks were; the message says how many records)."""
        # Everything is encoded before anything is sent: a record JSON cannot hold fails
        # the whole call, as an invalid one does.
        requests: list[tuple[Sequence[UsageRecord], bytes]] = []
        for start in range(0, len(records), MAX_RECORDS_PER_REQUEST):
            chunk = records[start : start + MAX_RECORDS_PER_REQUEST]
            offset = 0
            for count, body in self._request_bodies(chunk):
                requests.append((chunk[offset : offset + count], body))
                offset += count
        with self._lock:
            self.immediate_sent += len(records)
        outcomes: list[Outcome] = []
        for part, body in requests:
            try:
                outcomes += self._send_chunk(part, body, target)
            except DeliveryError as exc:
                if outcomes:
                    exc.reason = (
                        f"{exc.reason} ({len(outcomes)} of {len(records)} records delivered)"
                    )
                    exc.args = (exc.reason,)
                raise
        return outcomes

    @staticmethod
    def _request_bodies(records: Sequence[UsageRecord]) -> list[tuple[int, bytes]]:
        """(record count, request body) covering ``records`` in order: one request unless
        they exceed MAX_REQUEST_BYTES."""
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

    def _send_chunk(
        self, records: Sequence[UsageRecord], body: bytes, target: Target
    ) -> list[Outcome]:
        ids = [r.response_id for r in records]
        wire = records[0].to_wire() if len(records) == 1 else None
        deadline = self._clock() + min(self.settings.retry_budget, 60.0)
        attempt = 0
        while True:
            attempt += 1
            status, outcomes, retry_after, error = self._post(target, body, ids, detailed=True)
            if outcomes is not None:
                delivered = sum(o.delivered for o in outcomes)
                with self._lock:
                    self.total_delivered += delivered
                    self.total_rejected += len(outcomes) - delivered
                    if delivered:
                        self.last_success_at = self._wall()
                log.debug(
                    "aicm: sent %d records to %s (key %s): HTTP %s, %d delivered",
                    len(ids),
                    target.api_base,
                    abbreviate(key_ref(target)),
                    status,
                    delivered,
                )
                return outcomes
            self.last_error = error
            if not is_retryable(status):
                raise DeliveryError(error, record=wire, status=status, permanent=False)
            delay = self._backoff.delay(attempt, retry_after)
            if self._clock() + delay > deadline:
                raise DeliveryError(
                    f"gave up after {attempt} attempts: {error}", record=wire, status=status
                )
            with self._lock:
                self.total_retries += 1
            self._stop.wait(delay)

    def flush(self, timeout: float | None = None) -> int:
        """Send everything queued now, waiting up to ``timeout`` seconds (None: until done).

        Returns how many records are still pending; never discards anything.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            self._flushing += 1
        try:
            self._wake.set()
            while True:
                left = self.outstanding()
                if left == 0 or self._thread is None or not self._thread.is_alive():
                    return left
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return left
                with self._cond:
                    self._cond.wait(0.05 if remaining is None else min(0.05, remaining))
        finally:
            with self._cond:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> int:
        """Flush within ``timeout``, stop the worker, and return the records left.

        Records left in memory are counted as discarded ("shutdown") and logged; spooled
        ones stay on disk for the next process.
        """
        left = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(1.0, self.settings.timeout + 1.0))
        self._closed = True
        self._thread = None  # a later submit() fails loudly instead of queueing for no one
        lost: list[tuple[dict[str, Any], OnDiscard | None]] = []
        while self._queue:
            record, target = self._queue.popleft()
            lost.append((record.to_wire(), target.on_discard))
        for state in self._states.values():
            for entry in state.pending:
                if entry.record is not None:
                    lost.append((entry.record.to_wire(), entry.on_discard))
            state.pending.clear()
        self._pending_total = 0
        if lost:
            self._discard(lost, "shutdown")
        if self._transport is not None:
            self._transport.close()
        for spool in (self._spool, self._worker_spool):
            if spool is not None:
                spool.close()
        return left

    @property
    def closed(self) -> bool:
        return self._closed

    def mode_delivery(self, delivery_type: DeliveryType) -> ModeDelivery:
        """The submit/flush pair a Tracker uses for one delivery type."""
        submit = {
            DeliveryType.MEM_QUEUE: self.submit,
            DeliveryType.PERSISTENT_QUEUE: self.submit_durable,
            DeliveryType.IMMEDIATE: self.send_now,
        }[delivery_type]
        if delivery_type is DeliveryType.PERSISTENT_QUEUE:
            # Rows left by an earlier process start moving as soon as their key is known.
            self._open_spool()
            if self._thread is None:
                self._start()
            self._wake.set()
        return ModeDelivery(submit, self.flush)

    def outstanding(self) -> int:
        """Records not yet delivered: queued, being sent, or in the spool for known keys."""
        return len(self._queue) + self._pending_total + self._spool_known

    # -- on full ----------------------------------------------------------------------------

    def _full(self, record: UsageRecord, target: Target) -> bool:
        """Apply the on-full policy; True when the new record may then be queued."""
        policy = self.settings.on_full.value
        if policy == "block":
            deadline = self._clock() + self.settings.block_timeout
            self._wake.set()
            while self._in_memory() >= self._capacity:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise QueueFullError(
                        f"delivery queue stayed full ({self._capacity} records) for "
                        f"{self.settings.block_timeout} s"
                    )
                with self._cond:
                    self._cond.wait(min(remaining, 0.05))
            return True
        with self._lock:
            if len(self._queue) + self._pending_total < self._capacity:
                return True  # the lock-free look caught the worker mid-move
            if policy == "raise":
                raise QueueFullError(f"delivery queue is full ({self._capacity} records)")
            oldest = self._take_oldest()
        self._discard([oldest or (record.to_wire(), target.on_discard)], "queue_full")
        return oldest is not None

    def _in_memory(self) -> int:
        with self._lock:
            return len(self._queue) + self._pending_total

    def _take_oldest(self) -> tuple[dict[str, Any], OnDiscard | None] | None:
        """Remove the oldest record waiting in memory (None if all are in flight).

        Call with ``self._lock`` held.
        """
        waiting = [s for s in self._states.values() if s.pending and s.first_pending_at]
        if waiting:
            # The worker's pending entries are older than anything still queued.
            state = min(waiting, key=lambda s: s.first_pending_at or 0.0)
            # Only atomic deque operations: the worker uses these deques without the lock.
            try:
                entry = state.pending.popleft()
            except IndexError:  # the worker took them for sending just now
                entry = None
            if entry is not None and entry.record is not None:
                self._pending_total -= 1
                return entry.record.to_wire(), entry.on_discard
            if entry is not None:  # a spooled row is never dropped from memory
                state.pending.appendleft(entry)
        if not self._queue:
            return None
        old_record, old_target = self._queue.popleft()
        return old_record.to_wire(), old_target.on_discard

    def _spool_full(self, spool: Spool, target: Target) -> None:
        policy = self.settings.on_full.value
        if policy == "backpressure":
            dropped = spool.drop_oldest(1)
            with self._lock:
                self._spool_known -= len(dropped)
            self._discard([(decode_wire(r.body), target.on_discard) for r in dropped], "spool_full")
            return
        if policy == "block":
            deadline = self._clock() + self.settings.block_timeout
            while self._spool_known >= self.settings.spool_size and self._clock() < deadline:
                self._wake.set()
                with self._cond:
                    self._cond.wait(0.05)
            if self._spool_known < self.settings.spool_size:
                return
        raise QueueFullError(f"spool is full ({self.settings.spool_size} records)")

    def _discard(self, items: list[tuple[dict[str, Any], OnDiscard | None]], reason: str) -> None:
        with self._lock:
            self.total_discarded += len(items)
            self.discarded_by_reason[reason] = self.discarded_by_reason.get(reason, 0) + len(items)
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

    # -- worker -----------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._closed:
                raise DeliveryError("the delivery engine is closed")
            if self._transport is None:
                self._transport = HttpTransport(self.settings.timeout)
            self._thread = threading.Thread(target=self._run, name="aicm-delivery", daemon=True)
            self._thread.start()

    def _open_spool(self) -> Spool:
        with self._lock:
            if self._spool is None:
                self._spool = Spool(self.settings.db_path)
                self._worker_spool = Spool(self.settings.db_path, owner=self._spool.owner)
                self._spool_known = self._worker_spool.count()
            return self._spool

    def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                self._cycle()
            except Exception as exc:  # keep delivering; report it
                self.last_error = f"worker: {type(exc).__name__}: {exc}"
                log.exception("aicm: delivery worker error")
            with self._cond:
                self._cond.notify_all()
            if self._stop.is_set():
                return
            self._wake.wait(self._sleep_time())

    def _sleep_time(self) -> float | None:
        now = self._clock()
        waits: list[float] = []
        poll = max(0.005, min(0.05, self.settings.batch_interval / 2))
        if self._queue or self._flushing:
            waits.append(poll)
        for state in self._states.values():
            if state.pending:
                waits.append(max(0.0, state.next_attempt - now) or poll)
        if self._worker_spool is not None:
            # Right after a claim that found rows, more are likely ready: go on at once.
            waits.append((0.0 if self._last_claimed else poll) if self._spool_known else 1.0)
        return min(waits) if waits else None

    def _cycle(self) -> None:
        now = self._clock()
        self._drain_memory(now)
        if self._worker_spool is not None:
            self._claim_spool(now)
        flushing = self._flushing > 0 or self._stop.is_set()
        for state in list(self._states.values()):
            while state.pending and state.next_attempt <= self._clock():
                full = len(state.pending) >= min(state.batch_limit, self._batch_size)
                due = (
                    state.first_pending_at is not None
                    and now - state.first_pending_at >= self.settings.batch_interval
                )
                if not (full or due or flushing):
                    break
                self._send(state)
        if self._worker_spool is not None and now >= self._next_owner_check:
            self._next_owner_check = now + 30.0
            self._worker_spool.free_dead_owners()
            with self._lock:
                self._spool_known = self._count_known()

    def _state(self, target: Target) -> KeyState:
        state = self._states.get(target)
        if state is None:
            state = self._states[target] = KeyState(target, key_ref(target))
            state.batch_limit = self._batch_size
        return state

    def _drain_memory(self, now: float) -> None:
        queue = self._queue
        count = len(queue)
        if not count:
            return
        done = 0
        while done < count:
            # Move a chunk under the lock, so a full-queue decision (also under the lock)
            # sees every record exactly once. Encoding waits until a batch is sent.
            with self._lock:
                chunk = [queue.popleft() for _ in range(min(256, count - done))]
                self._pending_total += len(chunk)
            done += len(chunk)
            for record, target in chunk:
                state = self._state(target)
                if not state.pending:
                    state.first_pending_at = now
                state.pending.append(
                    QueuedRecord(record.response_id, None, record, None, target.on_discard)
                )
        self.total_drained += count

    def _claim_spool(self, now: float) -> None:
        spool = self._worker_spool
        assert spool is not None
        self._last_claimed = 0
        if not self._spool_known:
            return
        wanted = {
            ref: target
            for ref, target in self._keys.items()
            if all(
                s.next_attempt <= now and len(s.pending) < self._batch_size
                for t, s in self._states.items()
                if s.key_ref == ref
            )
        }
        if not wanted:
            return
        rows = spool.claim(wanted, 2 * self._batch_size, self.settings.lease_seconds)
        wall = self._wall()
        self._last_claimed = len(rows)
        if not rows:
            # Nothing claimable although we count rows: another process holds or took
            # them. Recount, so flush() does not wait for rows this process cannot send.
            with self._lock:
                self._spool_known = self._count_known()
            return
        for row in rows:
            target = wanted[row.key_ref]
            if row.api_base != target.api_base:
                target = Target(row.api_base, target.api_key, target.on_discard)
            state = self._state(target)
            if not state.pending:  # the batch's age is its oldest row's time in the spool
                state.first_pending_at = now - max(0.0, wall - row.enqueued_at)
            state.pending.append(QueuedRecord(row.response_id, row.body, None, row, None))
        with self._lock:
            self._pending_total += len(rows)
            # Rows another process spooled for the same key are not in our count.
            self._spool_known = max(0, self._spool_known - len(rows))

    def _count_known(self) -> int:
        assert self._worker_spool is not None
        by_key = self._worker_spool.stats()["by_key"]
        return sum(v["records"] - v["leased"] for k, v in by_key.items() if k in self._keys)

    def _take(self, state: KeyState) -> list[QueuedRecord]:
        limit = min(state.batch_limit, self._batch_size)
        entries: list[QueuedRecord] = []
        size = 0.0
        while state.pending and len(entries) < limit:
            entry = state.pending[0]
            cost = (self._avg_bytes if entry.body is None else len(entry.body)) + 1
            if entries and size + cost > self.settings.batch_bytes:
                break
            entries.append(state.pending.popleft())
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

    def _post(
        self, target: Target, body: bytes, ids: Sequence[str], *, detailed: bool = False
    ) -> tuple[int | None, list[Outcome] | None, float | None, str]:
        """One request: (status, outcomes or None, Retry-After seconds, error text).

        ``detailed`` reads every result (costs included) even from a 200 answer.
        """
        transport = self._transport
        if transport is None:  # immediate mode never starts the worker
            with self._lock:
                transport = self._transport = self._transport or HttpTransport(
                    self.settings.timeout
                )
        headers = {"Content-Type": "application/json"}
        if self.settings.gzip_min_bytes and len(body) >= self.settings.gzip_min_bytes:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        with self._lock:
            self.total_requests += 1
        try:
            resp = transport.send(target, body, headers)
        except TransportError as exc:
            return None, None, None, str(exc)
        retry_after = parse_retry_after(resp.headers.get("retry-after"), self._wall())
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
                    return 200, [DELIVERED_OUTCOME] * len(ids), retry_after, ""
                outcomes = parse_results(answer, ids)
            except TransportError as exc:
                return resp.status, None, retry_after, str(exc)
            if outcomes is None:
                # An answer we cannot match to the records: assume nothing was stored.
                return 502, None, retry_after, f"HTTP {resp.status} with unreadable results"
            return resp.status, outcomes, retry_after, ""
        return resp.status, None, retry_after, f"HTTP {resp.status}: {resp.body[:200]!r}"

    def _send(self, state: KeyState) -> None:
        entries = self._take(state)
        body, bad = self._encode(entries)
        if bad:
            self._finish(state, [], bad)
            entries = [e for e in entries if e.body is not None]
            if not entries:
                return
        while len(body) > MAX_REQUEST_BYTES and len(entries) > 1:
            # Records far larger than the average: send half now, half next time.
            half = len(entries) // 2
            state.pending.extendleft(reversed(entries[half:]))
            entries = entries[:half]
            body, _ = self._encode(entries)
        self._avg_bytes = 0.9 * self._avg_bytes + 0.1 * (len(body) / len(entries))
        by_bytes = int(self.settings.queue_bytes / max(self._avg_bytes, 1.0))
        self._capacity = max(self._batch_size, min(self.settings.queue_size, by_bytes))
        status, outcomes, retry_after, error = self._post(
            state.target, body, [e.response_id for e in entries]
        )
        now = self._clock()
        self.total_batches += 1
        if outcomes is not None:
            self._settle(state, entries, outcomes, now)
        elif status in (400, 413) and len(entries) > 1:
            # Too large, or one bad record poisoning the batch: halve and try again.
            state.batch_limit = max(1, len(entries) // 2)
            state.pending.extendleft(reversed(entries))
        elif status in (400, 413):
            why = "too large for the collector (HTTP 413)" if status == 413 else error
            self._finish(state, [], [(entries[0], why)])
        elif status in AUTH_STATUSES or (status is not None and not is_retryable(status)):
            state.parked = status in AUTH_STATUSES
            state.last_error = self.last_error = error
            self._logs.warning(
                f"park:{state.key_ref}",
                "aicm: collector answered %s for key %s; its records wait and are retried "
                "every %.0f s",
                status,
                abbreviate(state.key_ref),
                self.settings.auth_retry_interval,
            )
            self._retry_later(state, entries, now + self.settings.auth_retry_interval)
        else:
            state.attempts += 1
            state.failing_since = state.failing_since or now
            state.last_error = self.last_error = error
            self.total_retries += len(entries)
            delay = self._backoff.delay(state.attempts, retry_after)
            if now - state.failing_since >= self.settings.retry_budget:
                self._give_up(state, entries, error)
            else:
                self._retry_later(state, entries, now + delay)

    def _settle(
        self, state: KeyState, entries: list[QueuedRecord], outcomes: list[Outcome], now: float
    ) -> None:
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
        self.last_success_at = self._wall()
        self._finish(state, delivered, rejected)

    def _finish(
        self,
        state: KeyState,
        delivered: list[QueuedRecord],
        rejected: list[tuple[QueuedRecord, str]],
    ) -> None:
        """Account for entries that left for good: delivered, or dead-lettered."""
        spool = self._worker_spool
        acked = [e.row.id for e in delivered if e.row is not None]
        if spool is not None and acked:
            spool.ack(acked)
        if rejected:
            spooled = [(e.row, why) for e, why in rejected if e.row is not None]
            if spool is not None and spooled:
                spool.dead_letter(spooled)
            memory = [(e, why) for e, why in rejected if e.row is None]
            self._dead([(wire_of(e), state.target, why) for e, why in memory], entries=memory)
            for entry, why in rejected:
                if entry.row is not None:
                    self.dead_letters.append((wire_of(entry), why))
        state.delivered += len(delivered)
        state.rejected += len(rejected)
        self.total_delivered += len(delivered)
        self.total_rejected += len(rejected)
        with self._lock:
            self._pending_total -= len(delivered) + len(rejected)
        if not state.pending:
            state.first_pending_at = None

    def _dead(
        self,
        items: list[tuple[dict[str, Any], Target, str]],
        entries: list[tuple[QueuedRecord, str]] | None = None,
    ) -> None:
        """Dead-letter memory records: kept in ``dead_letters`` (and the spool, when open)."""
        if not items:
            return
        for wire, _, why in items:
            self.dead_letters.append((wire, why))
        self._logs.warning(
            "rejected", "aicm: collector rejected %d record(s): %s", len(items), items[0][2]
        )
        if self._worker_spool is not None:
            self._worker_spool.add_dead_letters(
                (key_ref(t), t.api_base, str(w.get("response_id")), encode_kept(w), why)
                for w, t, why in items
            )
        if entries is None:  # rejected before it was ever queued for sending
            self.total_rejected += len(items)

    def _retry_later(self, state: KeyState, entries: list[QueuedRecord], when: float) -> None:
        state.next_attempt = when
        memory = [e for e in entries if e.row is None]
        spooled = [e for e in entries if e.row is not None]
        state.pending.extendleft(reversed(memory))
        if spooled and self._worker_spool is not None:
            # Hand leased rows back with a not-before time, so another process (or we,
            # later) pick them up after the backoff instead of holding them.
            self._worker_spool.release(
                [e.row.id for e in spooled if e.row is not None],
                self._wall() + (when - self._clock()),
            )
            with self._lock:
                self._pending_total -= len(spooled)
                self._spool_known += len(spooled)
        if not state.pending:
            state.first_pending_at = None

    def _give_up(self, state: KeyState, entries: list[QueuedRecord], error: str) -> None:
        memory = [e for e in entries if e.row is None]
        spooled = [e for e in entries if e.row is not None]
        if spooled:
            self._retry_later(state, spooled, self._clock() + self.settings.backoff_max)
        if memory:
            with self._lock:
                self._pending_total -= len(memory)
            self._discard(
                [(wire_of(e), e.on_discard) for e in memory],
                "retry_budget_exhausted",
            )
            self.last_error = f"gave up after {self.settings.retry_budget:.0f} s: {error}"
        state.next_attempt = self._clock() + self._backoff.delay(state.attempts)

    # -- health -----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """A snapshot; counts are in records."""
        now = self._clock()
        queued = self.outstanding()
        oldest = [now - s.first_pending_at for s in self._states.values() if s.first_pending_at]
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
            for s in self._states.values()
        }
        spool: dict[str, Any] | None = None
        if self._worker_spool is not None:
            with contextlib.suppress(Exception):
                stats = self._worker_spool.stats()
                stats["waiting_for_unknown_key"] = sum(
                    v["records"] for k, v in stats["by_key"].items() if k not in self._keys
                )
                stats["by_key"] = {abbreviate(k): v for k, v in stats["by_key"].items()}
                stats["dead_by_key"] = {abbreviate(k): v for k, v in stats["dead_by_key"].items()}
                spool = stats
        thread = self._thread
        in_memory = len(self._queue) + self._pending_total
        enqueued = self.total_drained + len(self._queue) + self._spool_put + self.immediate_sent
        oldest_age = round(max(oldest), 3) if oldest else (0.0 if not queued else None)
        return {
            "worker_alive": bool(thread is not None and thread.is_alive()),
            "delivery_type": self.settings.delivery_type.value,
            "queued": queued,
            "queue_capacity": self._capacity,
            "queue_utilization": round(in_memory / self._capacity, 6),
            "total_enqueued": enqueued,
            "total_delivered": self.total_delivered,
            "total_rejected": self.total_rejected,
            "total_discarded": self.total_discarded,
            "discarded_by_reason": dict(self.discarded_by_reason),
            "total_retries": self.total_retries,
            "total_batches": self.total_batches,
            "total_requests": self.total_requests,
            "last_error": self.last_error,
            "last_success_at": self.last_success_at,
            "oldest_queued_age_s": oldest_age,
            "dead_letters": len(self.dead_letters),
            "per_key": per_key,
            "spool": spool,
        }
