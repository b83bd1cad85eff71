"""The SQLite write path: grouped transactions and checkpoints beside the writer.

Real SQLite files; the writer's queue is held still by a job that waits on an event, so
what lands in one group is decided by the test, not by timing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from aicm_manual.server._storage.sqlite import SqliteStorage
from aicm_manual.server._storage.sqlite_writer import Checkpointer

from .test_storage_contract import ev


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SqliteStorage]:
    s = SqliteStorage(tmp_path / "c.db")
    yield s
    s.close()


def queued(storage: SqliteStorage, count: int, timeout: float = 10.0) -> None:
    """Wait until ``count`` jobs wait in the writer's queue."""
    deadline = time.monotonic() + timeout
    while storage._writer._jobs.qsize() < count:
        assert time.monotonic() < deadline, "jobs never reached the writer's queue"
        time.sleep(0.001)


def hold(storage: SqliteStorage) -> tuple[threading.Event, Future[Any]]:
    """Keep the writer busy until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def wait(db: sqlite3.Connection) -> None:
        started.set()
        assert release.wait(10)

    pool = ThreadPoolExecutor(1)
    held = pool.submit(storage._writer.call, wait)
    pool.shutdown(wait=False)
    assert started.wait(10)
    return release, held


def in_one_group(storage: SqliteStorage, *calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` so that the writer takes them all into one transaction."""
    release, held = hold(storage)
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = []
        for n, call in enumerate(calls, start=1):
            futures.append(pool.submit(call))
            queued(storage, n)  # in this order
        release.set()
        held.result(10)
        return [f.result(10) for f in futures]


def test_merged_requests_answer_as_if_run_one_after_the_other(storage: SqliteStorage) -> None:
    a, b = ev("r1"), ev("r2")
    changed = ev("r1", usage=b'{"input_tokens": 2}')
    first, second, third = in_one_group(
        storage,
        lambda: storage.ingest([a, b]),
        lambda: storage.ingest([ev("r3"), a]),
        lambda: storage.ingest([changed, ev("r3"), ev("r4")]),
    )
    assert first == ["accepted", "accepted"]
    assert second == ["accepted", "duplicate"]
    assert third == ["conflict", "duplicate", "accepted"]
    assert {e.response_id for e in storage.list_events("tenant-a")} == {"r1", "r2", "r3", "r4"}
    (row,) = storage.cost_summary("tenant-a", "client_customer_key", None, None)
    assert (row.events, row.cost_nanos) == (4, 4_000)


def test_a_failing_job_does_not_sink_the_others_of_its_group(storage: SqliteStorage) -> None:
    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO no_such_table VALUES (1)")

    def attempt() -> str:
        try:
            storage._writer.call(broken)
        except sqlite3.OperationalError as exc:
            return str(exc)
        return "no error"

    stored, failed, also_stored = in_one_group(
        storage,
        lambda: storage.ingest([ev("r1")]),
        attempt,
        lambda: storage.ingest([ev("r2")]),
    )
    assert stored == also_stored == ["accepted"]
    assert "no_such_table" in failed
    assert len(storage.list_events("tenant-a")) == 2


def wal_restarts(path: Path) -> int:
    """The WAL header's checkpoint sequence number: it goes up each time the WAL starts over
    from its beginning (sqlite.org/fileformat2.html#walformat)."""
    with open(f"{path}-wal", "rb") as wal:
        return int.from_bytes(wal.read(16)[12:16], "big")


def test_the_wal_starts_over_while_writes_go_on(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    storage = SqliteStorage(path)
    try:
        assert storage._writer._checkpointer is not None
        storage._writer._checkpointer._restart_frames = 50
        storage.ingest([ev("r0")])
        before = wal_restarts(path)
        for n in range(1, 2000):  # bounded: far more frames than 50 if it never restarts
            storage.ingest([ev(f"r{n}-{i}", customer=f"c{n}-{i}") for i in range(20)])
            if wal_restarts(path) > before:
                break
        else:
            pytest.fail("the WAL never started over")
        stored = storage.cost_summary("tenant-a", "service_id", None, None)
        assert sum(row.events for row in stored) == 1 + 20 * n  # nothing lost
    finally:
        storage.close()


def test_the_checkpointer_stops_with_the_storage(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "c.db")
    storage.ingest([ev("r1")])
    checkpointer = storage._writer._checkpointer
    assert isinstance(checkpointer, Checkpointer)
    storage.close()
    assert not checkpointer._thread.is_alive()
    assert not storage._writer._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        storage.ingest([ev("r2")])


def test_the_writer_is_handed_the_copy_once_per_wal(tmp_path: Path) -> None:
    """A pass right after the writer's copy finds the old WAL all copied and still as long:
    handing over again would make the writer copy the next WAL's first pages for nothing."""
    path = tmp_path / "c.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (x BLOB)")
    for _ in range(60):
        db.execute("INSERT INTO t VALUES (randomblob(3000))")
    page = db.execute("PRAGMA page_size").fetchone()[0]
    connect = lambda: sqlite3.connect(path, check_same_thread=False)  # noqa: E731
    checkpointer = Checkpointer(connect, restart_bytes=50 * page)
    try:
        frames = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        assert frames >= 50
        assert checkpointer._hand_over_after(0, frames, frames, 0)  # long enough, all copied
        assert not checkpointer._hand_over_after(1, frames, frames, 0)  # a pass was busy
        assert not checkpointer._hand_over_after(0, frames, frames - 1, 0)  # not all copied
        assert not checkpointer._hand_over_after(0, 49, 49, 0)  # too short to start over
        checkpointer.finish(db)  # the writer copies the rest...
        assert not checkpointer._hand_over_after(0, frames, frames, 0)  # ...once for this WAL
        db.execute("INSERT INTO t VALUES (randomblob(3000))")  # the WAL starts over
        db.execute("INSERT INTO t VALUES (randomblob(3000))")
        grown = frames + 2
        assert checkpointer._hand_over_after(0, grown, grown, 2)  # it did not: hand over again
    finally:
        checkpointer.close()
        db.close()


def test_the_copy_is_handed_over_after_a_short_pass(tmp_path: Path) -> None:
    """What a pass copied beyond the last one is what the writer wrote meanwhile: after a
    long pass the writer would have as much to copy, so passes go on (up to 16)."""
    path = tmp_path / "c.db"
    sqlite3.connect(path).close()
    connect = lambda: sqlite3.connect(path, check_same_thread=False)  # noqa: E731
    checkpointer = Checkpointer(connect, restart_bytes=64 * 4096 * 4)  # pages of 4 KiB
    try:
        assert checkpointer._restart_frames == 256
        long_pass = checkpointer._settle_frames + 1
        for _ in range(16):
            assert not checkpointer._hand_over_after(0, 300, 300, long_pass)
        assert checkpointer._hand_over_after(0, 300, 300, long_pass)  # tried long enough
        assert checkpointer._hand_over_after(0, 301, 301, checkpointer._settle_frames)
    finally:
        checkpointer.close()


def test_passes_wait_between_them_while_the_wal_is_short(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("CREATE TABLE t (x BLOB)")
    passes: list[str] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.set_trace_callback(passes.append)
        return conn

    checkpointer = Checkpointer(connect, pace=0.5)
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # pokes far faster than the pace
            db.execute("INSERT INTO t VALUES (randomblob(100))")
            checkpointer.poke()
            time.sleep(0.01)
        ran = [p for p in passes if "wal_checkpoint" in p]
        assert 1 <= len(ran) <= 3  # about one per half second, not one per poke
    finally:
        checkpointer.close()
        db.close()
