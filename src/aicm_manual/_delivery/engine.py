"""The delivery engine: intake from callers, and one worker thread that sends.

    engine = DeliveryEngine(DeliverySettings())
    route = engine.route(target, settings.lane())   # one per tracker: endpoint, key, policy
    engine.submit_route(record, route)       # mem_queue: an append, no lock, no syscall
    engine.submit_durable(record, route)     # persistent_queue: a committed SQLite insert
    engine.send_now(records, route)          # immediate: on the caller's thread
    engine.flush(5, route)                   # -> that route's (endpoint, key) records left
    engine.run_once(now)                     # one worker cycle, for tests

The hot path appends ``(record, route)`` to a deque (atomic under the GIL) and wakes the
worker only when the queue was empty or a batch has filled. The worker (``worker.py``)
owns everything else, settling each record with its store (``stores.py``). Isolation
is by (endpoint, key): flushes count, drops take and callbacks receive only the caller's
own records.
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._protocol import Outcome, encode_record
from .._records import Target, UsageRecord
from ..errors import DeliveryError, InvalidRecordError
from .health import Health, LogLimiter
from .immediate import send_records
from .on_full import OnFullPolicies
from .queued import HttpTransport, Job, KeyState, OnDiscard, Route, Transport, log
from .retry import Backoff
from .sender import Exchange, Sender
from .senders import SenderPool
from .settings import DeliverySettings, DeliveryType, Lane
from .spool import Spool
from .stores import InHand, MemoryStore, SpoolStore

EXIT_SLACK = 0.5  # what close() may take beyond its timeout: the worker's last answer
_SAMPLE_EVERY = 256  # records between two size samples on the caller's thread


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class DeliveryEngine(OnFullPolicies):
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
        self._default_lane = self.settings.lane()
        self._routes: dict[tuple[Target, Lane], Route] = {}
        self._keys: dict[str, Route] = {}  # key_ref -> a route carrying that key
        self._inherited: list[Spool] = []  # a parent's connections: never used, never closed
        self._init_state()
        weak = weakref.WeakMethod(self._after_fork)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=lambda: (m := weak()) is not None and m())

    def _init_state(self) -> None:
        s = self.settings
        self._capacity = s.queue_size
        self._batch_size = s.batch_size
        self._avg_bytes = 512.0
        self._until_sample = 0
        self._states: dict[Route, KeyState] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._lock = threading.Lock()  # intake decisions, counts moved off the worker
        self.health_counts = Health()
        self._in_hand = InHand(self._lock)
        self._memory = MemoryStore(
            self._lock,
            self._in_hand,
            self._state_of,
            self.health_counts,
            self._discard,
            lambda: self._spooled,
        )
        self._queue = self._memory.queue  # the hot path's deque, one attribute away
        self._spooled: SpoolStore | None = None
        self._flushing = 0
        self._asleep = False  # the worker waits without looking again within a poll
        self._stop_by = math.inf  # set by close(): when the worker stops waiting for answers
        self._senders = SenderPool()
        self._answers: deque[tuple[Job, Exchange]] = deque()  # from sender threads
        self._thread: threading.Thread | None = None
        transport = self._transport_arg or HttpTransport(s.timeout)
        self._sender = Sender(transport, s.gzip_min_bytes)
        self._next_owner_check = 0.0
        self._state = State.OPEN
        self._finalizer: object | None = None
        self._logs = LogLimiter()

    def _after_fork(self) -> None:
        # The parent still owns (and will deliver) what was queued; the child starts empty
        # with its own thread, locks and spool connections. The parent's connections are
        # kept out of reach: closing them here would disturb the parent's locks.
        if self._spooled is not None:
            self._inherited += [self._spooled.callers, self._spooled.worker]
        self._init_state()

    # -- routes -----------------------------------------------------------------------------

    def route(self, target: Target, lane: Lane | None = None) -> Route:
        """The route of one tracker's target and per-tracker settings (made once)."""
        lane = lane or self._default_lane
        route = self._routes.get((target, lane))
        if route is None:
            route = self._routes.setdefault((target, lane), Route(target, lane))
            self._keys.setdefault(route.ref, route)
        return route

    def register(self, target: Target, lane: Lane | None = None) -> Route:
        """Make a key known, so spooled rows carrying its reference can be sent."""
        return self.route(target, lane)

    def key_state(self, target: Target) -> KeyState:
        """The worker's state for ``target`` under the engine's default settings."""
        return self._state_of(self.route(target))

    # -- intake -----------------------------------------------------------------------------

    def submit(self, record: UsageRecord, target: Target) -> None:
        """mem_queue under the engine's default settings (see ``submit_route``)."""
        self.submit_route(record, self.route(target))

    def submit_route(self, record: UsageRecord, route: Route) -> None:
        """mem_queue: queue a record for the worker. Never blocks unless the queue is full."""
        queue = self._queue
        self._until_sample -= 1
        if self._until_sample < 0:
            self._sample(record)
        n = len(queue)
        if n + self._in_hand.count >= self._capacity and not self._full(record, route):
            return
        if self._thread is None:
            self._start()
        queue.append((record, route))
        if (not n and self._asleep) or (n + 1) % self._batch_size == 0:
            self._wake.set()

    def submitter(self, route: Route) -> Callable[[UsageRecord, Target], None]:
        """``submit_route`` for one tracker's route, as the one call its track() makes
        (another target, given by track_batch's records, finds its own route)."""
        own = route.target
        submit_route = self.submit_route

        def submit(record: UsageRecord, target: Target) -> None:
            submit_route(record, route if target is own else self.route(target, route.lane))

        return submit

    def _sample(self, record: UsageRecord) -> None:
        """Measure one record's serialised size, so the memory bound holds in bytes from
        the first record on (measuring every record would double the hot path's cost)."""
        self._until_sample = _SAMPLE_EVERY
        try:
            size = len(encode_record(record)) + 1
        except (TypeError, ValueError):
            return  # the worker finds it and says which record
        first = self._avg_bytes == 512.0 and not self._memory.drained
        self._avg_bytes = float(size) if first else 0.8 * self._avg_bytes + 0.2 * size
        self._resize()

    def _resize(self) -> None:
        by_bytes = int(self.settings.queue_bytes / max(self._avg_bytes, 1.0))
        self._capacity = max(1, min(self.settings.queue_size, by_bytes))

    def has_room(self, delivery_type: DeliveryType, records: int = 1) -> bool:
        """Whether ``records`` more fit without the on-full policy, right now (advisory:
        async callers use it to stay on the event loop when nothing can wait)."""
        if delivery_type is DeliveryType.PERSISTENT_QUEUE:
            return self._spool_known() + records <= self.settings.spool_size
        if delivery_type is DeliveryType.MEM_QUEUE:
            return len(self._queue) + self._in_hand.count + records <= self._capacity
        return False  # immediate always waits for the collector

    def submit_durable(self, record: UsageRecord, route: Route) -> None:
        """persistent_queue: commit the record to the spool before returning."""
        self.submit_durable_many([record], route)

    def submit_durable_many(self, records: Sequence[UsageRecord], route: Route) -> None:
        """persistent_queue: one spool transaction for all of ``records`` (a commit per
        record costs about 7 times more); committed before returning."""
        rows: list[tuple[str, bytes]] = []
        for record in records:
            try:
                rows.append((record.response_id, encode_record(record)))
            except (TypeError, ValueError) as exc:
                raise InvalidRecordError(
                    f"record {record.response_id!r}: usage cannot be sent as JSON: {exc}"
                ) from exc
        spool = self._spooled or self._open_spool()
        if spool.known + len(rows) > self.settings.spool_size:
            rows = [r for r in rows if self._spool_full(spool, route, r)]
            if not rows:
                return
        known = spool.put_many(route, rows)
        if self._thread is None:
            self._start()
        if len(rows) > 1 or known == 1 or known % self._batch_size == 0:
            self._wake.set()  # otherwise the worker's poll finds the rows

    def send_now(self, records: Sequence[UsageRecord], route: Route) -> list[Outcome]:
        """immediate: send on this thread; DeliveryError when it cannot be delivered."""
        return send_records(
            self._sender,
            records,
            route,
            backoff=self._backoff,
            stop=self._stop,
            health=self.health_counts,
            clock=self._clock,
            wall=self._wall,
        )

    def send_batch_now(self, records: Sequence[UsageRecord], target: Target) -> list[Outcome]:
        """immediate under the engine's default settings."""
        return self.send_now(records, self.route(target))

    # -- flush and close --------------------------------------------------------------------

    def flush(self, timeout: float | None = None, route: Route | None = None) -> int:
        """Send what is queued now, waiting up to ``timeout`` seconds (None: until done).

        With ``route``, waits for and counts only that (endpoint, key)'s records.
        Returns how many records are still pending; never discards anything.
        """
        deadline = None if timeout is None else self._clock() + timeout
        mark = self._memory.drained + len(self._queue)
        with self._cond:
            self._flushing += 1
        try:
            while True:
                self._wake.set()
                left = self.outstanding() if route is None else self._left(route, mark)
                if left == 0:  # (counting again could see another process's new rows)
                    return 0
                thread = self._thread
                if thread is None or not thread.is_alive():
                    return left if route is None else self._left(route, mark, exact=True)
                remaining = None if deadline is None else deadline - self._clock()
                if remaining is not None and remaining <= 0:
                    return left if route is None else self._left(route, mark, exact=True)
                with self._cond:
                    self._cond.wait(0.05 if remaining is None else min(0.05, remaining))
        finally:
            with self._cond:
                self._flushing -= 1

    def _left(self, route: Route, mark: int, exact: bool = False) -> int:
        """Records of ``route``'s (endpoint, key) not yet delivered. Records still in the
        intake queue count as the caller's until the worker has sorted them (``exact``
        looks at them instead)."""
        endpoint = route.endpoint
        memory = sum(s.memory for s in list(self._states.values()) if s.route.endpoint == endpoint)
        undrained = max(0, mark - self._memory.drained)
        if undrained and exact:
            # A queue changed while copied keeps the cautious count.
            with contextlib.suppress(RuntimeError):
                undrained = sum(1 for _, r in list(self._queue) if r.endpoint == endpoint)
        spooled = 0
        if self._spooled is not None:
            base, ref = endpoint
            spooled = self._spooled.callers.count_for(ref, base)
        return memory + undrained + spooled

    def close(self, timeout: float | None = None) -> int:
        """Flush within ``timeout``, stop the worker, and return the records left.

        Ends within ``timeout`` plus EXIT_SLACK even while a request hangs. Records left
        in memory are counted as discarded ("shutdown") and logged; spooled records stay
        on disk for the next process.
        """
        if self._state is not State.OPEN:
            return 0
        started = self._clock()
        left = self.flush(timeout)
        self._state = State.CLOSING
        thread = self._thread
        spent = self._clock() - started
        wait = self.settings.timeout + 1.0 if timeout is None else timeout - spent
        # The worker sends what is left and waits for the answers until then, no longer.
        self._stop_by = self._clock() + max(0.0, wait)
        self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, wait) + EXIT_SLACK)
        alive = thread is not None and thread.is_alive()
        if not alive:
            self._settle_answers()  # answers that came after the worker's last cycle
        self._state = State.CLOSED
        self._thread = None  # a later submit() fails loudly instead of queueing for no one
        lost: list[tuple[dict[str, Any], OnDiscard | None]] = []
        while self._queue:
            record, route = self._queue.popleft()
            lost.append((record.to_wire(), route.on_discard))
        sending = False
        for state in list(self._states.values()):
            held = list(state.pending)
            if state.ready is not None:
                held += state.ready.entries
            unsent = [e for e in held if e.row is not None]
            if unsent and self._spooled is not None:
                # Claimed but never sent: hand the rows back at once, so the next engine
                # or process need not wait for the lease to expire.
                with contextlib.suppress(Exception):
                    self._spooled.release(state, unsent, self._clock())
            if state.busy or alive:  # a request still out (or a worker stuck in one)
                held += state.inflight
                sending = sending or state.busy
            for entry in held:
                if entry.record is not None:
                    lost.append((entry.record.to_wire(), entry.on_discard))
            state.pending.clear()
            state.ready = None
            state.memory = 0
        self._in_hand.count = 0
        if lost:
            self._discard(lost, "shutdown")
        if not alive and not sending:  # a request that hangs keeps its connection until exit
            self._sender.close()
            if self._spooled is not None:
                self._spooled.close()
        return left

    @property
    def closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def state(self) -> State:
        return self._state

    def outstanding(self) -> int:
        """Records not yet delivered: queued, being sent, or in the spool for known keys."""
        return len(self._queue) + self._in_hand.count + self._spool_known()

    def _spool_known(self) -> int:
        spooled = self._spooled
        return 0 if spooled is None else spooled.known

    @property
    def dead_letters(self) -> deque[tuple[dict[str, Any], str]]:
        return self.health_counts.dead_letters

    @property
    def total_retries(self) -> int:
        return self.health_counts.total_retries

    def start_spool(self) -> None:
        """Open the spool and start the worker, so rows an earlier process left move."""
        self._open_spool()
        if self._thread is None:
            self._start()
        self._wake.set()

    # -- the worker thread ------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._state is not State.OPEN:
                raise DeliveryError("the delivery engine is closed")
            self._thread = threading.Thread(target=self._run, name="aicm-delivery", daemon=True)
            self._thread.start()
        self._drain_in_children()

    def _drain_in_children(self) -> None:
        """A multiprocessing child leaves through os._exit, so atexit never runs there;
        the standard library runs its Finalize hooks first, so the drain goes there."""
        mp = sys.modules.get("multiprocessing")
        if mp is None or mp.parent_process() is None or self._finalizer is not None:
            return
        import multiprocessing.util

        self._finalizer = multiprocessing.util.Finalize(
            self, _drain_child, args=(weakref.ref(self),), exitpriority=100
        )

    def _open_spool(self) -> SpoolStore:
        with self._lock:
            if self._spooled is None:
                s = self.settings
                spooled = SpoolStore(
                    s.db_path,
                    self._lock,
                    self._in_hand,
                    self._state_of,
                    lambda target, known: self.route(target, known.lane),
                    self._keys,
                    self.health_counts,
                    lease_seconds=s.lease_seconds,
                    max_age=s.spool_max_age,
                    backoff_max=s.backoff_max,
                    wall=self._wall,
                    clock=self._clock,
                )
                spooled.batch = self._batch_size
                spooled.busy = self._busy
                self._spooled = spooled
            return self._spooled


def _drain_child(ref: weakref.ref[DeliveryEngine]) -> None:
    engine = ref()
    if engine is None or engine.closed:
        return
    left = engine.close(engine.settings.exit_budget)
    if left:
        log.warning(
            "aicm: %d record(s) undelivered when this process ended (spooled ones stay on disk)",
            left,
        )
