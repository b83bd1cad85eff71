"""The SQLite collector's write path: one writer thread, and checkpoints beside it.

    writer = Writer(db, ingest_rows, checkpointer)
    writer.ingest(events, received_us)   # statuses, once committed
    writer.call(fn)                      # fn(db) in a write transaction, its result

All writes go through one thread that takes every job waiting in its queue into one
transaction, so concurrent requests never fight over the write lock. Waiting ingest jobs
are merged into one batch; a later job's record that an earlier job of the group stored is
that job's duplicate or conflict, as if they had run one after the other. A group of ingest
jobs alone is handed to ``ingest_rows`` outside any transaction, which it must make atomic
(SQLite's storage makes it one statement). If a group fails, its jobs are redone one
transaction each, so a bad job cannot sink the others (a savepoint per job cost a third of
the rate). A job's future is answered only after its group committed.

WAL checkpoints copy committed pages back into the database file and fsync it. Run on
the writer (SQLite's autocheckpoint on commit) they stalled every request queued behind
them. The ``Checkpointer`` runs them in its
own thread and connection, which WAL allows beside the writer; the writer only copies the
last few pages before the WAL starts over (see ``Checkpointer``). The writer's
autocheckpoint stays on, with a high threshold, as a safety net.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from .protocol import SUM_OUT_OF_RANGE, IngestResult, NewEvent, isolate
from .sqlite_schema import SUM_OVERFLOW

log = logging.getLogger("aicm_manual.server")
_T = TypeVar("_T")
IngestRows = Callable[[sqlite3.Connection, Sequence[NewEvent], Sequence[int]], list[IngestResult]]
MAX_GROUP_JOBS = 64
MAX_GROUP_EVENTS = 20_000  # a bound on one transaction's size, and on its first job's wait


class _Ingest:
    __slots__ = ("events", "received_us")

    def __init__(self, events: Sequence[NewEvent], received_us: int) -> None:
        self.events = events
        self.received_us = received_us


_Job = tuple[Callable[[sqlite3.Connection], Any] | _Ingest, "Future[Any]"]


class Writer:
    def __init__(
        self,
        db: sqlite3.Connection,
        ingest_rows: IngestRows,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self._db = db
        self._ingest_rows = ingest_rows
        self._checkpointer = checkpointer
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="aicm-sqlite-writer", daemon=True)
        self._thread.start()

    def ingest(self, events: Sequence[NewEvent], received_us: int) -> list[IngestResult]:
        result: list[IngestResult] = self._submit(_Ingest(events, received_us))
        return result

    def queue_depth(self) -> int:
        """Jobs waiting for the writer thread (for /metrics)."""
        return self._jobs.qsize()

    def call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        result: _T = self._submit(fn)
        return result

    def _submit(self, job: Callable[[sqlite3.Connection], Any] | _Ingest) -> Any:
        if self._closed:
            raise RuntimeError("the storage is closed")
        future: Future[Any] = Future()
        self._jobs.put((job, future))
        return future.result()

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued jobs, then stop the thread (and the checkpointer)."""
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._thread.join(timeout)
        if self._checkpointer is not None:
            self._checkpointer.close(timeout)

    # -- the thread ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            group, events = [job], _size(job)
            while len(group) < MAX_GROUP_JOBS and events < MAX_GROUP_EVENTS:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)
                    break
                group.append(more)
                events += _size(more)
            self._run_group(group)
            if self._checkpointer is not None:
                if self._checkpointer.handover_due():
                    self._checkpointer.finish(self._db)
                self._checkpointer.poke()

    def _run_group(self, group: list[_Job]) -> None:
        try:
            results = self._transaction([job for job, _ in group])
        except Exception:
            results = [self._attempt(job) for job, _ in group]
        # Answer only now: every job's effects are committed.
        for (_, future), result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _transaction(self, jobs: list[Callable[[sqlite3.Connection], Any] | _Ingest]) -> list[Any]:
        db = self._db
        results: list[Any] = [None] * len(jobs)
        batches = [(n, job) for n, job in enumerate(jobs) if isinstance(job, _Ingest)]
        if len(batches) == len(jobs):
            # ingest_rows makes the batches one statement, its own transaction: no BEGIN or
            # COMMIT, each of which would have to win the GIL back from the event loop.
            return self._ingest_batches(batches, results)
        db.execute("BEGIN IMMEDIATE")
        try:
            for n, job in enumerate(jobs):
                if not isinstance(job, _Ingest):
                    results[n] = job(db)
            if batches:
                self._ingest_batches(batches, results)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    def _ingest_batches(self, batches: list[tuple[int, _Ingest]], results: list[Any]) -> list[Any]:
        """Ingest the batches as one (results[n] for the batch of index n); return results."""
        events: list[NewEvent] = []
        received: list[int] = []
        for _, batch in batches:
            events.extend(batch.events)
            received.extend([batch.received_us] * len(batch.events))
        statuses = self._ingest_rows(self._db, events, received)
        start = 0
        for n, batch in batches:
            results[n] = statuses[start : start + len(batch.events)]
            start += len(batch.events)
        return results

    def _attempt(self, job: Callable[[sqlite3.Connection], Any] | _Ingest) -> Any:
        try:
            if isinstance(job, _Ingest):
                # A record the database refuses is answered alone; its neighbours are kept.
                return isolate(
                    job.events,
                    lambda events: self._transaction([_Ingest(events, job.received_us)])[0],
                    _refusal,
                )
            return self._transaction([job])[0]
        except Exception as exc:
            return exc


def _refusal(exc: Exception) -> str | None:
    """Why the database refused an event for its data, or None (then it is unavailable)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return SUM_OUT_OF_RANGE if SUM_OVERFLOW in str(exc) else f"the storage refused it: {exc}"
    if isinstance(exc, (sqlite3.DataError, OverflowError)):
        return f"the storage refused it: {exc}"
    return None


def _size(job: _Job) -> int:
    return len(job[0].events) if isinstance(job[0], _Ingest) else 1


class Checkpointer:
    """WAL checkpoints in their own thread and connection, a pass each time the writer
    pokes, at most one per ``pace`` seconds while the WAL is short. PASSIVE: a pass never
    waits for, nor blocks, readers or the writer; it copies what is committed and safe to
    copy. Pacing matters because the disk is the limit under load: most pages the writer
    changes are index leaves it changes again and again (random response ids), and a pass
    copies and fsyncs each once. Paced, 200,000 records wrote 0.96 GB instead of 1.4-1.5
    GB, and the thread's CPU fell from 1.0 s to 0.3 s.

    A pass beside a busy writer never empties the WAL. Where load pauses, the WAL starts
    over by itself once a pass caught up; under load that never stops, once the WAL holds
    ``restart_bytes`` and a pass copied all it saw, the thread hands over: the writer
    copies the rest between two transactions (``finish``) and the WAL starts over. That
    stalls the writer, longer as the file grows and not much shorter for a small rest (the
    fsyncs wait behind the disk's queue). Near the limit passes still follow each other until one is
    short, so that rest (what the writer wrote meanwhile) is small, and the limit is high
    (1 GiB of WAL), so the stalls are rare; docs/benchmarks.md has the measurements.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        restart_bytes: int = 1 << 30,
        pace: float = 0.25,
    ) -> None:
        self._db = connect()
        page_size: int = self._db.execute("PRAGMA page_size").fetchone()[0]
        self._restart_frames: int = restart_bytes // page_size
        self._settle_frames = max(self._restart_frames // 64, 64)
        self._tries = 0  # passes since the WAL reached restart_frames
        self._pace = pace
        self._wake = threading.Event()
        self._handover = threading.Event()  # the writer's turn to finish the copy
        self._handed_over = -1  # the WAL's length when the writer last finished the copy
        self._back = threading.Event()  # the writer finished it
        self._closing = threading.Event()
        self._failures = 0
        self._thread = threading.Thread(
            target=self._loop, name="aicm-sqlite-checkpointer", daemon=True
        )
        self._thread.start()

    @property
    def restart_frames(self) -> int:
        return self._restart_frames

    def poke(self) -> None:
        self._wake.set()

    def handover_due(self) -> bool:
        return self._handover.is_set()

    def finish(self, db: sqlite3.Connection) -> None:
        """On the writer, outside a transaction: copy what the last pass did not see."""
        try:
            self._handed_over = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        except sqlite3.Error as exc:
            self._failed(exc)
        finally:
            self._handover.clear()
            self._back.set()

    def _loop(self) -> None:
        seen = 0  # the WAL's length at the last pass
        try:
            while True:
                self._wake.wait()
                if self._closing.is_set():
                    return
                self._wake.clear()
                try:
                    busy, frames, copied = self._db.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                except sqlite3.Error as exc:
                    self._failed(exc)
                    continue
                seen, previous = frames, seen
                if self._hand_over_after(busy, frames, copied, frames - previous):
                    self._back.clear()
                    self._handover.set()
                    # The writer finishes after its next transaction, whenever that is.
                    while not self._back.wait(1.0):
                        if self._closing.is_set():
                            return
                elif frames < self._restart_frames:
                    # Far from a restart, let pages gather: a page the writer changes again
                    # and again is copied once per pass (and fsynced once). Near it, passes
                    # follow each other, so the writer's share (finish) stays small.
                    self._closing.wait(self._pace)
        finally:
            self._db.close()

    def _hand_over_after(self, busy: int, frames: int, copied: int, new: int) -> bool:
        """Whether a pass that answered (busy, frames in the WAL, frames copied, ``new`` of
        them since the last pass) leaves the rest to the writer: it copied all it saw, the
        WAL is long enough to start over, and the pass was short (so the writer's share,
        what came in meanwhile, is small too) or passes have tried long enough.
        Until the writer's next commit starts the WAL over, a pass finds it as long as the
        writer left it and all copied: no reason to hand over again for that WAL."""
        if busy or copied != frames or frames < self._restart_frames:
            self._tries = 0
            return False
        if frames == self._handed_over:
            return False
        self._tries += 1
        return new <= self._settle_frames or self._tries > 16

    def _failed(self, exc: sqlite3.Error) -> None:
        # The writer's own autocheckpoint still bounds the WAL: log (not every time), go on.
        self._failures += 1
        if self._failures == 1 or self._failures % 1000 == 0:
            log.warning("aicm collector: WAL checkpoint failed (%d): %s", self._failures, exc)

    def close(self, timeout: float = 10.0) -> None:
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
