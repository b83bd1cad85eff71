"""SQLite-only behaviour of the storage: migrations of an older file and the indexes its
queries rely on (the contract itself is in test_storage_contract.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from test_storage_contract import DAY0, HOUR, ev

from aicm_manual.server._sqlite import MIGRATIONS, SqliteStorage
from aicm_manual.server._storage import US_PER_DAY, SummaryRow


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
        assert summary == [
            "SEARCH rollups_daily USING COVERING INDEX rollups_daily_customer (tenant=?)"
        ]
        one_day = query_plans(
            storage,
            lambda: storage.cost_summary(
                "tenant-a", "client_customer_key", DAY0, DAY0 + US_PER_DAY
            ),
        )
        assert "(tenant=? AND day>? AND day<?)" in one_day[0], one_day  # the key's day range
    finally:
        storage.close()
