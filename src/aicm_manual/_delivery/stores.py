"""Stores: where queued records wait, and what becomes of them once the worker is done.

    store.claim(now)                       # move ready records into their routes' states
    store.ack(state, entries)              # delivered: gone for good
    store.release(state, entries, when)    # failed: try again from ``when`` (worker clock)
    store.dead_letter(state, [(entry, why)])
    store.expire(state, entries, error)    # failing for longer than the route allows
    store.size()                           # records waiting, not yet in the worker's hands

``MemoryStore`` holds ``mem_queue`` records (the intake deque, then the worker's hands);
``SpoolStore`` holds ``persistent_queue`` rows in the SQLite spool. The worker sends both
the same way and settles each record with the store it came from. Only the worker calls
these, except ``SpoolStore.put_many`` (callers' threads, their own connection).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from .._protocol import encode_kept
from .._records import Target, UsageRecord
from .health import Health
from .queued import KeyState, OnDiscard, QueuedRecord, Route, wire_of
from .spool import Spool

Discard = Callable[[list[tuple[dict[str, Any], OnDiscard | None]], str], None]
StateOf = Callable[[Route], KeyState]


class Store(Protocol):
    def claim(self, now: float) -> int: ...

    def ack(self, state: KeyState, entries: Sequence[QueuedRecord]) -> None: ...

    def release(self, state: KeyState, entries: Sequence[QueuedRecord], when: float) -> None: ...

    def dead_letter(self, state: KeyState, items: Sequence[tuple[QueuedRecord, str]]) -> None: ...

    def expire(self, state: KeyState, entries: Sequence[QueuedRecord], error: str) -> None: ...

    def size(self) -> int: ...


class InHand:
    """Records in the worker's hands (claimed, not yet settled), whatever their store."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.count = 0


class MemoryStore:
    def __init__(
        self,
        lock: threading.Lock,
        in_hand: InHand,
        state_of: StateOf,
        health: Health,
        discard: Discard,
        spool: Callable[[], SpoolStore | None],
    ) -> None:
        self.queue: deque[tuple[UsageRecord, Route]] = deque()
        self.drained = 0  # records moved from the intake queue to the worker, ever
        self._lock = lock
        self._in_hand = in_hand
        self._state_of = state_of
        self._health = health
        self._discard = discard
        self._spool = spool

    def size(self) -> int:
        return len(self.queue)

    def claim(self, now: float) -> int:
        queue = self.queue
        count = len(queue)
        done = 0
        while done < count:
            # Move a chunk under the lock, so a full-queue decision (also under the lock)
            # sees every record exactly once. Encoding waits until a batch is sent.
            with self._lock:
                chunk = [queue.popleft() for _ in range(min(256, count - done))]
                self._in_hand.count += len(chunk)
                last: Route | None = None
                for record, route in chunk:
                    if route is not last:  # runs of one route: look its state up once
                        last, state = route, self._state_of(route)
                        if not state.pending:
                            state.first_pending_at = now
                        append, on_discard = state.pending.append, route.on_discard
                    state.memory += 1
                    append(QueuedRecord(record.response_id, None, record, None, on_discard))
                self.drained += len(chunk)
            done += len(chunk)
        with self._health.lock:
            self._health.total_drained += count
        return count

    def _settled(self, state: KeyState, count: int) -> None:
        with self._lock:
            self._in_hand.count -= count
            state.memory -= count

    def ack(self, state: KeyState, entries: Sequence[QueuedRecord]) -> None:
        self._settled(state, len(entries))

    def release(self, state: KeyState, entries: Sequence[QueuedRecord], when: float) -> None:
        state.pending.extendleft(reversed(entries))  # still in hand, first in line

    def dead_letter(self, state: KeyState, items: Sequence[tuple[QueuedRecord, str]]) -> None:
        wires = [(wire_of(e), why) for e, why in items]
        self._health.dead(wires)
        spool = self._spool()
        if spool is not None:  # kept on disk too, for `aicm-manual queue list --dead`
            route = state.route
            spool.add_dead_letters(
                (route.ref, route.target.api_base, str(w.get("response_id")), encode_kept(w), why)
                for w, why in wires
            )
        self._settled(state, len(items))

    def expire(self, state: KeyState, entries: Sequence[QueuedRecord], error: str) -> None:
        self._settled(state, len(entries))
        self._discard([(wire_of(e), e.on_discard) for e in entries], "retry_budget_exhausted")
        budget = state.route.lane.retry_budget
        self._health.failed(f"gave up after {budget:g} s: {error}")


class SpoolStore:
    def __init__(
        self,
        path: Path,
        lock: threading.Lock,
        in_hand: InHand,
        state_of: StateOf,
        route_of: Callable[[Target, Route], Route],
        keys: dict[str, Route],
        health: Health,
        *,
        lease_seconds: float,
        max_age: float,
        backoff_max: float,
        wall: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self.worker = Spool(path)
        # Callers never run a WAL checkpoint: the worker's connection does them.
        self.callers = Spool(path, owner=self.worker.owner, checkpoints=False)
        self.known = self.worker.count()  # rows of known keys, as of the worker's last look
        self.last_claimed = 0
        self._lock = lock
        self._in_hand = in_hand
        self._state_of = state_of
        self._route_of = route_of
        self._keys = keys
        self._health = health
        self._lease = lease_seconds
        self._max_age = max_age
        self._backoff_max = backoff_max
        self._wall = wall
        self._clock = clock
        self.batch = 1000
        self.busy: Callable[[float], Iterable[tuple[str, str]]] = lambda now: ()
        self._next_take_in = 0.0

    def size(self) -> int:
        return self.known

    def put_many(self, route: Route, rows: Sequence[tuple[str, bytes]]) -> int:
        """Commit rows before returning; the known count after them."""
        base, ref = route.endpoint
        with self._lock:  # so a recount by the worker never sees rows half-counted
            if len(rows) == 1:  # one statement, its own transaction: 1.5 us less than three
                self.callers.put(ref, base, *rows[0])
            else:
                self.callers.put_many(ref, base, rows)
            self._health.spool_put += len(rows)
            self.known += len(rows)
            return self.known

    def claim(self, now: float) -> int:
        self.last_claimed = 0
        # Callers' rows wait in the inbox until a worker moves them into the queue (a
        # claim takes some in first). Every cycle takes some in, any key's, also while
        # every lane backs off, so a drain after an outage starts from a full queue; at
        # most 2 claims' worth at a time, so callers wait on the lock little.
        busy = set(self.busy(now))
        if (
            not self.known
            or not self._keys
            or (busy and all(route.endpoint in busy for route in list(self._keys.values())))
        ):
            self.worker.take_in(4 * self.batch, wait=False)  # no hurry: nothing to send
            return 0  # nothing ours, or every known lane has a batch in hand or backs off
        if now >= self._next_take_in:
            # Also once a second while busy: rows of keys this process does not send
            # (another process's) would otherwise stay in the inbox, where each claim
            # passes over them.
            self._next_take_in = now + 1.0
            self.worker.take_in(4 * self.batch, wait=False)
        exclude = [(ref, base) for base, ref in busy]
        rows = self.worker.claim(self._keys, 2 * self.batch, self._lease, exclude)
        wall = self._wall()
        self.last_claimed = len(rows)
        if not rows:
            # Nothing claimable although we count rows: another process holds them, or
            # they wait out a backoff. Recount, so flush() does not wait for them (rows
            # left out as busy are ours and counted already).
            if not exclude:
                self.recount()
            return 0
        for row in rows:
            known = self._keys[row.key_ref]
            route = known
            if row.api_base != known.target.api_base:
                target = Target(row.api_base, known.target.api_key, known.target.on_discard)
                route = self._route_of(target, known)
            state = self._state_of(route)
            if not state.pending:  # the batch's age is its oldest row's time in the spool
                state.first_pending_at = now - max(0.0, wall - row.enqueued_at)
            state.pending.append(QueuedRecord(row.response_id, row.body, None, row, None))
        with self._lock:
            self._in_hand.count += len(rows)
            # Rows another process spooled for the same key are not in our count.
            self.known = max(0, self.known - len(rows))
        return len(rows)

    def recount(self) -> None:
        # Under the lock: a put_many committing meanwhile would be counted twice or lost.
        with self._lock:
            by_key = self.worker.stats()["by_key"]
            self.known = sum(
                v["records"] - v["leased"] for k, v in by_key.items() if k in self._keys
            )

    def ack(self, state: KeyState, entries: Sequence[QueuedRecord]) -> None:
        self.worker.ack([e.row.id for e in entries if e.row is not None])
        with self._lock:
            self._in_hand.count -= len(entries)

    def release(self, state: KeyState, entries: Sequence[QueuedRecord], when: float) -> None:
        wall = self._wall()
        too_old = [
            e for e in entries if e.row is not None and wall - e.row.enqueued_at > self._max_age
        ]
        if too_old:
            why = (
                f"not delivered within spool_max_age ({self._max_age:.0f} s);"
                f" last error: {state.last_error}"
            )
            self.dead_letter(state, [(e, why) for e in too_old])
            entries = [e for e in entries if e not in too_old]
        # Hand leased rows back with a not-before time, so another process (or we,
        # later) pick them up after the backoff instead of holding them.
        self.worker.release(
            [e.row.id for e in entries if e.row is not None], wall + (when - self._clock())
        )
        with self._lock:
            self._in_hand.count -= len(entries)
            self.known += len(entries)

    def dead_letter(self, state: KeyState, items: Sequence[tuple[QueuedRecord, str]]) -> None:
        self.worker.dead_letter([(e.row, why) for e, why in items if e.row is not None])
        self._health.dead([(wire_of(e), why) for e, why in items])
        with self._lock:
            self._in_hand.count -= len(items)

    def expire(self, state: KeyState, entries: Sequence[QueuedRecord], error: str) -> None:
        # A spooled row outlives retry budgets (spool_max_age bounds it): try it later.
        self.release(state, entries, self._clock() + self._backoff_max)

    def add_dead_letters(self, items: Iterable[tuple[str, str, str, bytes, str]]) -> None:
        self.worker.add_dead_letters(items)

    def close(self) -> None:
        self.callers.close()
        self.worker.close()
