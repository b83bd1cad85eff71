"""SQLite-only behaviour of the storage: migrations of an older file and the indexes its
queries rely on (the contract itself is in test_storage_contract.py)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from aicm_manual import StorageError
from aicm_manual.server._storage import sqlite_insert as _insert
from aicm_manual.server._storage.protocol import (
    US_PER_DAY,
    NewEvent,
    Refused,
    SummaryRow,
    rollup_deltas,
)
from aicm_manual.server._storage.sqlite import SqliteStorage
from aicm_manual.server._storage.sqlite_schema import MIGRATIONS

from .test_storage_contract import DAY0, HOUR, ev


def test_a_file_from_the_first_schema_is_migrated_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at REAL)")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            old.execute(statement)
    old.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    for n in range(3):
        old.execute(
            "INSERT INTO events (tenant, config_id, service_id, response_id, timestamp_us,"
            " received_us, client_customer_key, usage, payload_hash, cost_nanos, currency)"
            " VALUES ('tenant-a', 'openai-chat', 'openai::gpt-4o', ?, ?, 0, 'acme', x'7b7d', ?,"
            " 1000, 'USD')",
            (f"r{n}", DAY0 + n * HOUR, ev(f"r{n}").payload_hash),
        )
        old.execute(
            "INSERT INTO rollups_daily VALUES ('tenant-a', ?, 'acme', 'openai::gpt-4o', 'USD',"
            " 1, 1000, 0) ON CONFLICT DO UPDATE SET events = events + 1,"
            " cost_nanos = cost_nanos + 1000",
            (DAY0 // US_PER_DAY,),
        )
    old.close()

    storage = SqliteStorage(path)
    try:
        window = storage.list_events("tenant-a", since_us=DAY0 + 1, until_us=DAY0 + 2 * HOUR + 1)
        assert [e.response_id for e in window] == ["r1", "r2"]
        assert storage.cost_summary("tenant-a", "client_customer_key", None, None) == [
            SummaryRow("acme", "USD", 3, 3_000, 0)
        ]
        assert storage.ingest([ev("r3")]) == ["accepted"]
        # The rollups now follow by trigger: the new event counted once, the old ones kept.
        assert storage.cost_summary("tenant-a", "client_customer_key", None, None) == [
            SummaryRow("acme", "USD", 4, 4_000, 0)
        ]
        db = sqlite3.connect(path)
        versions = [v for (v,) in db.execute("SELECT version FROM schema_migrations")]
        indexes = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        db.close()
        assert versions == list(range(1, len(MIGRATIONS) + 1))
        assert {"events_tenant_hour", "rollups_daily_customer"} <= indexes
        assert "events_tenant_time" not in indexes
    finally:
        storage.close()


def query_plans(storage: SqliteStorage, read: Callable[[], object]) -> list[str]:
    """The query plans of the SELECTs that ``read`` runs on this thread's read connection."""
    statements: list[str] = []
    db = storage._reader()
    db.set_trace_callback(statements.append)  # the SQL with its arguments filled in
    try:
        read()
    finally:
        db.set_trace_callback(None)
    return [
        row[3]
        for sql in statements
        if sql.lstrip().upper().startswith("SELECT")
        for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")
    ]


def test_time_windows_and_open_summaries_use_their_indexes(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "c.db")
    try:
        storage.ingest([ev(f"r{n}", at=DAY0 + n * HOUR) for n in range(5)])
        window = query_plans(
            storage, lambda: storage.list_events("tenant-a", since_us=DAY0, until_us=DAY0 + 1)
        )
        # the hour bounds narrow the index search, not just the tenant
        assert any("events_tenant_hour (tenant=? AND <expr>" in line for line in window), window
        summary = query_plans(
            storage, lambda: storage.cost_summary("tenant-a", "client_customer_key", None, None)
        )
        # over all time, the totals: a row per customer, service and currency, not per day
        assert summary[0].startswith("SEARCH rollups_total USING"), summary
        one_day = query_plans(
            storage,
            lambda: storage.cost_summary(
                "tenant-a", "client_customer_key", DAY0, DAY0 + US_PER_DAY
            ),
        )
        assert "(tenant=? AND day>? AND day<?)" in one_day[0], one_day  # the key's day range
    finally:
        storage.close()


def stored_rollups(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return [
            ((day, customer, service, currency), events, cost, unpriced)
            for day, customer, service, currency, events, cost, unpriced in db.execute(
                "SELECT day, client_customer_key, service_id, currency, events, cost_nanos,"
                " unpriced FROM rollups_daily ORDER BY day, client_customer_key, service_id,"
                " currency"
            )
        ]
    finally:
        db.close()


def test_the_rollup_trigger_keys_and_sums_as_rollup_deltas_does(tmp_path: Path) -> None:
    # Before 1970 too (SQLite divides towards zero, the rollup day is floored), records
    # without a customer, unpriced ones, and a priced one with no currency.
    events = [
        ev("a", at=-1),
        ev("b", at=-US_PER_DAY),
        ev("c", at=-US_PER_DAY - 1),
        ev("d", at=0, customer=None),
        ev("e", at=DAY0, cost=None),
        ev("f", at=DAY0 + HOUR, cost=None, customer=None),
        ev("g", at=DAY0 + 2 * HOUR, cost=-5),
        ev("h", at=DAY0 + 3 * HOUR, currency=None),
        ev("i", at=US_PER_DAY - 1, service="heygen::streaming-avatar", cost=17),
    ]
    storage = SqliteStorage(tmp_path / "c.db")
    try:
        assert storage.ingest(events) == ["accepted"] * len(events)
    finally:
        storage.close()
    assert stored_rollups(tmp_path / "c.db") == sorted(rollup_deltas(events))


def test_a_batch_over_one_statement_is_one_transaction_with_in_batch_duplicates(
    tmp_path: Path,
) -> None:
    storage = SqliteStorage(tmp_path / "c.db")
    try:
        per_statement = storage._max_rows
        first = [ev(f"r{n}", at=DAY0 + n) for n in range(per_statement + 150)]
        # A copy inside the same batch, in the second statement: duplicate, or a conflict
        # if its payload differs; both answered after the one accepted copy.
        batch = [*first, ev("r3", at=DAY0 + 3), ev("r4", at=DAY0 + 4, usage=b"{}")]
        statuses = storage.ingest(batch)
        assert statuses == ["accepted"] * len(first) + ["duplicate", "conflict"]
        assert storage.ingest(first[:5]) == ["duplicate"] * 5
    finally:
        storage.close()
    assert stored_rollups(tmp_path / "c.db") == sorted(rollup_deltas(first))


def test_a_record_the_database_refuses_is_answered_alone_and_its_batch_is_stored(
    tmp_path: Path,
) -> None:
    """A record SQLite refuses (here NOT NULL) is Refused on its own; the rest of its batch,
    across statements, is accepted, and the rollups count only what was stored."""
    storage = SqliteStorage(tmp_path / "c.db")
    try:
        per_statement = storage._max_rows
        good = [ev(f"r{n}") for n in range(per_statement + 10)]
        bad = NewEvent(**{**_fields(ev("bad")), "usage": None})  # NOT NULL: the insert fails
        statuses = storage.ingest([*good[:5], bad, *good[5:]])
        assert statuses[:5] == ["accepted"] * 5
        assert isinstance(statuses[5], Refused)
        assert "NOT NULL" in statuses[5].reason
        assert statuses[6:] == ["accepted"] * (len(good) - 5)
        assert len(storage.list_events("tenant-a", limit=1000)) == min(1000, len(good))
        assert storage.ingest(good[:3]) == ["duplicate"] * 3
    finally:
        storage.close()
    assert stored_rollups(tmp_path / "c.db") == sorted(rollup_deltas(good))


def _fields(event: NewEvent) -> dict[str, object]:
    return {name: getattr(event, name) for name in NewEvent.__slots__}


def test_statement_sizes_are_few_and_fit_the_parameter_limit() -> None:
    sizes = {_insert.padded(n, 2500) for n in range(1, 2501)}
    assert len(sizes) <= 33
    assert all(_insert.padded(n, 2500) >= n for n in range(1, 2501))
    assert all(n <= _insert.padded(n, 76) <= 76 for n in range(1, 77))


def test_two_storages_on_one_file_answer_each_record_once(tmp_path: Path) -> None:
    """Two writers on one file (as two processes would be): the same batches sent to both
    at once, with repeats and changed payloads inside. Each record is accepted by exactly
    one of them, and the statuses name the others right although the other writer's rows
    land between a batch's insert and its look-up."""
    path = tmp_path / "c.db"
    batches: list[list[NewEvent]] = []
    for b in range(30):
        batch = [ev(f"b{b}-{n}", at=DAY0 + b * HOUR + n) for n in range(40)]
        if b:  # earlier records again: the same payload, and one changed
            batch += [ev(f"b{b - 1}-{n}", at=DAY0 + (b - 1) * HOUR + n) for n in range(5)]
            batch.append(ev(f"b{b - 1}-5", at=DAY0, usage=b'{"input_tokens": 2}'))
        batches.append(batch)
    storages = [SqliteStorage(path), SqliteStorage(path)]
    answers: list[list[list[str]]] = [[], []]
    try:

        def send(n: int) -> None:
            for batch in batches:
                answers[n].append(list(storages[n].ingest(batch)))

        threads = [threading.Thread(target=send, args=(n,)) for n in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for storage in storages:
            storage.close()
    accepted: dict[str, int] = {}
    for n in (0, 1):
        assert len(answers[n]) == len(batches)
        for batch, statuses in zip(batches, answers[n], strict=True):
            for event, status in zip(batch, statuses, strict=True):
                if status == "accepted":
                    accepted[event.response_id] = accepted.get(event.response_id, 0) + 1
                elif event.usage == b'{"input_tokens": 2}':
                    assert status == "conflict", event.response_id
                else:
                    assert status == "duplicate", event.response_id
    originals = {e.response_id: e for batch in batches for e in batch[:40]}
    assert accepted == dict.fromkeys(originals, 1)  # each once, by one of the two
    assert stored_rollups(path) == sorted(rollup_deltas(list(originals.values())))


def test_statuses_hold_when_another_writer_inserts_before_the_look_up(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    storage = SqliteStorage(path)
    assert storage.ingest([ev("old")]) == ["accepted"]
    storage.close()
    db = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        batch = [ev("new-1"), ev("old"), ev("new-2"), ev("new-1", usage=b"{}")]
        rows = _insert.event_rows(batch, [0] * len(batch))
        inserted, last = _insert.insert_values(db, rows, 2500)
        assert inserted == 2
        # Another process's row lands first, with a higher id than this batch's rows.
        _insert.insert_values(other, _insert.event_rows([ev("theirs")], [0]), 2500)
        statuses = SqliteStorage._sort_out(db, batch, inserted, last)
        assert statuses == ["accepted", "duplicate", "accepted", "conflict"]
    finally:
        db.close()
        other.close()


def test_warm_up_prepares_every_statement_size_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_insert, "_values_sql", {})  # built by this test alone
    storage = SqliteStorage(tmp_path / "c.db")
    try:
        storage.warm_up()
        sizes = {_insert.padded(n, storage._max_rows) for n in range(1, storage._max_rows + 1)}
        assert sizes <= set(_insert._values_sql)
        assert storage.list_events("tenant-a") == []
        assert storage.cost_summary("tenant-a", "service_id", None, None) == []
        assert storage.ingest([ev("r1")]) == ["accepted"]
    finally:
        storage.close()
    assert stored_rollups(tmp_path / "c.db") == sorted(rollup_deltas([ev("r1")]))


def test_driver_errors_leave_the_backend_as_storage_errors(tmp_path: Path) -> None:
    """sqlite3's exceptions never cross the backend: opening a file that is not a database
    raises StorageError, chained to the driver's error."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError) as caught:
        SqliteStorage(junk)
    assert isinstance(caught.value.__cause__, sqlite3.Error)
