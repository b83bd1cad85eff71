"""The on-full policies, applied on the caller's thread when a record does not fit:
``block`` waits (up to ``block_timeout``), ``raise`` raises ``QueueFullError``,
``backpressure`` drops the oldest record of the caller's own (endpoint, key), never another
owner's, and hands it to that owner's ``on_discard``; the same for the spool's rows."""

from __future__ import annotations

from typing import Any

from .._records import UsageRecord
from ..errors import QueueFullError
from .queued import OnDiscard, Route, decode_wire
from .settings import OnFull
from .stores import SpoolStore
from .worker import Worker


class OnFullPolicies(Worker):
    """Mixed into DeliveryEngine."""

    def _full(self, record: UsageRecord, route: Route) -> bool:
        """Apply the route's on-full policy; True when the new record may then be queued."""
        policy = route.lane.on_full
        if policy is OnFull.BLOCK:
            deadline = self._clock() + route.lane.block_timeout
            self._wake.set()
            while self._in_memory() >= self._capacity:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise QueueFullError(
                        f"delivery queue stayed full ({self._capacity} records) for "
                        f"{route.lane.block_timeout} s"
                    )
                with self._cond:
                    self._cond.wait(min(remaining, 0.05))
            return True
        with self._lock:
            if len(self._queue) + self._in_hand.count < self._capacity:
                return True  # the lock-free look caught the worker mid-move
            if policy is OnFull.RAISE:
                raise QueueFullError(f"delivery queue is full ({self._capacity} records)")
            oldest = self._take_oldest(route)
        if oldest is None:  # nothing of this owner's waits: the new record is the oldest
            self._discard([(record.to_wire(), route.on_discard)], "queue_full")
            return False
        self._discard([oldest], "queue_full")
        return True

    def _in_memory(self) -> int:
        with self._lock:
            return len(self._queue) + self._in_hand.count

    def _take_oldest(self, route: Route) -> tuple[dict[str, Any], OnDiscard | None] | None:
        """Remove the oldest memory record of ``route``'s (endpoint, key) waiting in the
        worker's hands (None when it has none). Call with ``self._lock`` held."""
        waiting = [
            s
            for s in list(self._states.values())
            if s.route.endpoint == route.endpoint and s.memory and s.pending
        ]
        for state in sorted(waiting, key=lambda s: s.first_pending_at or 0.0):
            # Only atomic deque operations: the worker uses these deques without the lock.
            try:
                entry = state.pending.popleft()
            except IndexError:  # the worker took them for sending just now
                continue
            if entry.record is None:  # a spooled row is never dropped from memory
                state.pending.appendleft(entry)
                continue
            self._in_hand.count -= 1
            state.memory -= 1
            return entry.record.to_wire(), entry.on_discard
        queue = self._queue
        if queue and queue[0][1].endpoint == route.endpoint:
            # Not sorted by the worker yet: the head of the intake queue is the oldest.
            record, head = queue.popleft()
            return record.to_wire(), head.on_discard
        return None

    def _spool_full(self, spool: SpoolStore, route: Route, row: tuple[str, bytes]) -> bool:
        """The on-full policy for one row; True when the row may then be stored."""
        policy = route.lane.on_full
        if policy is OnFull.BACKPRESSURE:
            base, ref = route.endpoint
            dropped = spool.callers.drop_oldest(1, ref, base)
            if not dropped:  # none of this owner's rows: the new one goes
                self._discard([(decode_wire(row[1]), route.on_discard)], "spool_full")
                return False
            with self._lock:
                spool.known -= len(dropped)
            self._discard([(decode_wire(r.body), route.on_discard) for r in dropped], "spool_full")
            return True
        if policy is OnFull.BLOCK:
            deadline = self._clock() + route.lane.block_timeout
            while spool.known >= self.settings.spool_size and self._clock() < deadline:
                self._wake.set()
                with self._cond:
                    self._cond.wait(0.05)
            if spool.known < self.settings.spool_size:
                return True
        raise QueueFullError(f"spool is full ({self.settings.spool_size} records)")
