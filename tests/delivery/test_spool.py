"""The SQLite spool on real files: leases, owners, acks, dead letters, inspection."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aicm_manual import SpoolError
from aicm_manual._delivery.spool import Spool

KEY = "k" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def fill(spool: Spool, n: int, key: str = KEY) -> None:
    for i in range(n):
        spool.put(key, "http://c", f"r{i}", b'{"response_id": "r%d"}' % i)


def test_claims_are_exclusive_until_the_lease_expires(tmp_path: Path) -> None:
    clock = Clock()
    a = Spool(tmp_path / "s.db", owner="hostA:1:a", clock=clock)
    b = Spool(tmp_path / "s.db", owner="hostB:2:b", clock=clock)
    fill(a, 10)
    first = a.claim({KEY}, 6, lease_seconds=30)
    second = b.claim({KEY}, 6, lease_seconds=300)
    assert [r.response_id for r in first] == [f"r{i}" for i in range(6)]
    assert [r.response_id for r in second] == [f"r{i}" for i in range(6, 10)]
    assert b.claim({KEY}, 10, lease_seconds=30) == []
    clock.now += 31  # a's lease ran out: b may take those rows
    assert {r.response_id for r in b.claim({KEY}, 10, 30)} == {f"r{i}" for i in range(6)}


def test_only_the_lease_owner_acks(tmp_path: Path) -> None:
    clock = Clock()
    a = Spool(tmp_path / "s.db", owner="hostA:1:a", clock=clock)
    b = Spool(tmp_path / "s.db", owner="hostB:2:b", clock=clock)
    fill(a, 1)
    [row] = a.claim({KEY}, 1, 10)
    clock.now += 11
    [again] = b.claim({KEY}, 1, 10)
    a.ack([row.id])  # a was too slow: the row is b's now
    assert a.count() == 1
    b.ack([again.id])
    assert a.count() == 0


def test_rows_of_a_dead_process_on_this_host_are_freed(tmp_path: Path) -> None:
    import socket

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    a = Spool(tmp_path / "s.db", owner=f"{socket.gethostname()}:{pid}:x")
    fill(a, 3)
    assert len(a.claim({KEY}, 3, lease_seconds=3600)) == 3
    b = Spool(tmp_path / "s.db")
    assert b.claim({KEY}, 3, 3600) == []
    assert b.free_dead_owners() == 3
    assert len(b.claim({KEY}, 3, 3600)) == 3


def test_claims_only_known_keys(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    fill(spool, 2, key="a" * 64)
    fill(spool, 3, key="b" * 64)
    assert len(spool.claim({"b" * 64}, 10, 30)) == 3
    assert spool.stats()["by_key"]["a" * 64]["records"] == 2


def test_dead_letters_requeue_and_purge(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    fill(spool, 3)
    rows = spool.claim({KEY}, 3, 30)
    spool.dead_letter([(rows[0], "rejected: bad"), (rows[1], "conflict: other payload")])
    assert spool.count() == 1
    dead = spool.rows("dead_letters")
    assert [(r.response_id, r.reason) for r in dead] == [
        ("r0", "rejected: bad"),
        ("r1", "conflict: other payload"),
    ]
    assert spool.purge("dead_letters", []) == 0  # an empty selection purges nothing
    assert spool.requeue([dead[0].id]) == 1
    assert spool.count() == 2
    assert spool.purge("dead_letters", None) == 1
    assert spool.stats()["dead_letters"] == 0


def test_inspecting_never_creates_or_changes_a_file(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="no spool at"):
        Spool(tmp_path / "absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(SpoolError, match="not an aicm-manual spool"):
        Spool(other, create=False)
    with sqlite3.connect(other) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["t"]


@pytest.mark.parametrize("create", [True, False])
def test_a_newer_schema_version_is_refused(tmp_path: Path, create: bool) -> None:
    """A spool migrated by a newer aicm-manual is refused, whether opened to write or read."""
    Spool(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 0)")
    with pytest.raises(SpoolError, match="schema version 99"):
        Spool(tmp_path / "s.db", create=create)


def test_a_spool_from_before_recorded_migrations_is_taken_up(tmp_path: Path) -> None:
    """A spool whose version lived in a ``meta`` row opens, keeps its rows, and records
    migration 1 in schema_migrations."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, key_ref TEXT NOT NULL,"
            " api_base TEXT NOT NULL, response_id TEXT NOT NULL, body BLOB NOT NULL,"
            " enqueued_at REAL NOT NULL, lease_owner TEXT,"
            " lease_expires REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0);"
            "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at)"
            " VALUES ('anonymous', 'http://127.0.0.1:1', 'r1', x'7b7d', 1.0);"
        )
    db.close()
    spool = Spool(path)
    try:
        assert [r.response_id for r in spool.claim({"anonymous"}, 10, 60)] == ["r1"]
    finally:
        spool.close()
    with sqlite3.connect(path) as db:
        versions = db.execute("SELECT version FROM schema_migrations").fetchall()
        assert versions == [(1,), (2,)]
    db.close()


def test_callers_rows_wait_in_the_inbox_counted_until_taken_in_in_order(tmp_path: Path) -> None:
    """put() writes to the inbox; the rows count everywhere a flush or a full spool looks,
    and a worker moves them into the queue oldest first, a bounded number at a time."""
    spool = Spool(tmp_path / "s.db", owner="hostA:1:a")
    fill(spool, 5)
    spool.put_many("other" * 13, "http://c", [("o1", b"{}"), ("o2", b"{}")])
    assert spool.count() == 7
    assert spool.count_for(KEY, "http://c") == 5
    assert spool.stats()["by_key"][KEY]["records"] == 5
    assert spool.rows("records") == []  # no queue id yet
    assert spool.take_in(3) == 3
    assert [r.response_id for r in spool.rows("records")] == ["r0", "r1", "r2"]
    assert spool.count() == 7
    assert spool.count_for(KEY, "http://c") == 5
    # A claim leases the queue's rows, then its keys' inbox rows (moved in leased).
    claimed = spool.claim({KEY}, 10, lease_seconds=30)
    assert [r.response_id for r in claimed] == [f"r{i}" for i in range(5)]
    assert [r.attempts for r in claimed] == [1] * 5
    assert spool.claim({KEY}, 10, lease_seconds=30) == []
    assert spool.count() == 7
    assert spool.count_for(KEY, "http://c") == 5
    assert spool.take_in(10) == 2  # the other key's rows waited in the inbox
    assert [r.response_id for r in spool.rows("records")][-2:] == ["o1", "o2"]


def test_a_claim_moving_inbox_rows_respects_busy_lanes_and_the_limit(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    fill(spool, 3)
    fill(spool, 2, key="x" * 64)
    assert spool.claim({KEY, "x" * 64}, 10, 30, exclude=[(KEY, "http://c")]) != []
    assert {r.key_ref for r in spool.rows("records")} == {"x" * 64}
    two = spool.claim({KEY}, 2, 30)
    assert [r.response_id for r in two] == ["r0", "r1"]
    assert spool.count() == 5  # one row of KEY still waits in the inbox


def test_two_processes_taking_in_at_once_move_each_row_once(tmp_path: Path) -> None:
    writer = Spool(tmp_path / "s.db")
    fill(writer, 3000)
    script = (
        "import sys; from aicm_manual._delivery.spool import Spool\n"
        "s = Spool(sys.argv[1])\n"
        "while s.take_in(100): pass\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "s.db")]) for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    ids = [r.response_id for r in writer.rows("records", limit=10_000)]
    assert sorted(ids) == sorted(f"r{i}" for i in range(3000))
    assert ids == [f"r{i}" for i in range(3000)]  # moved in order
    assert writer.take_in(10) == 0


def test_backpressure_drops_from_the_inbox_when_the_queue_has_none(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    fill(spool, 2)
    spool.take_in(1)
    fill(spool, 1, key="x" * 64)
    dropped = spool.drop_oldest(2, KEY, "http://c")
    assert [r.response_id for r in dropped] == ["r0", "r1"]  # queue first, then the inbox
    assert spool.count() == 1
    assert spool.count_for("x" * 64, "http://c") == 1


def test_purging_all_queued_records_empties_the_inbox_too(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    fill(spool, 4)
    spool.take_in(2)
    assert spool.purge("records", None) == 4
    assert spool.count() == 0


def test_a_spool_of_schema_1_can_be_inspected_without_changing_it(tmp_path: Path) -> None:
    """Opened to look (create=False), a spool without an inbox answers from its queue."""
    path = tmp_path / "v1.db"
    Spool(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE inbox")
        db.execute("DELETE FROM schema_migrations WHERE version = 2")
        db.execute(
            "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at)"
            " VALUES (?, 'http://c', 'old', x'7b7d', 1.0)",
            (KEY,),
        )
    db.close()
    spool = Spool(path, create=False)
    assert spool.count() == 1
    assert spool.count_for(KEY, "http://c") == 1
    assert spool.take_in(10) == 0
    assert [r.response_id for r in spool.rows("records")] == ["old"]
    spool.close()
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert "inbox" not in names


def test_take_in_without_waiting_gives_up_while_another_connection_writes(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "s.db")
    fill(spool, 3)
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    try:
        assert spool.take_in(10, wait=False) == 0
        assert spool.count() == 3  # reads still work, with the normal busy timeout back
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert spool.take_in(10, wait=False) == 3
