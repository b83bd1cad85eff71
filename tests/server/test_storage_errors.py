"""A driver error inside any storage call, the ledger's and the dashboard reports' included,
reaches the collector as StorageError (a 503 and a "storage unavailable" page), never as a
sqlite3 or psycopg exception. The error is real: a table dropped under a running storage."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aicm_manual.errors import StorageError
from aicm_manual.server._storage import open_storage
from aicm_manual.server._storage.protocol import Storage


@pytest.fixture
def storage(database: str) -> Iterator[Storage]:
    opened = open_storage(database)
    try:
        yield opened
    finally:
        opened.close()


def drop(database: str, table: str) -> None:
    """DROP TABLE through a connection of its own, as an operator's mistake would."""
    if database.startswith("sqlite:///"):
        conn = sqlite3.connect(database.removeprefix("sqlite:///"))
        try:
            conn.execute(f"DROP TABLE {table}")
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {table} CASCADE")


CALLS: list[tuple[str, str, Callable[[Storage], Any]]] = [
    ("price_rules", "ledger.price_rules", lambda s: s.ledger.price_rules("t")),
    ("price_rules", "ledger.price_rules_mark", lambda s: s.ledger.price_rules_mark()),
    ("budgets", "ledger.budget_documents", lambda s: s.ledger.budget_documents("t")),
    ("budgets", "budget_statuses", lambda s: s.budget_statuses("t", 0)),
    ("ingest_stats", "ingest_counts", lambda s: s.ingest_counts("t", None, None)),
    ("ingest_stats", "rejection_reasons", lambda s: s.rejection_reasons("t", None, None)),
    (
        "ingest_stats",
        "ledger.add_ingest_stats",
        lambda s: s.ledger.add_ingest_stats({("t", 0, "accepted", ""): 1}),
    ),
    ("webhooks", "ledger.webhooks", lambda s: s.ledger.webhooks("t")),
]


@pytest.mark.parametrize(("table", "name", "call"), CALLS, ids=[c[1] for c in CALLS])
def test_a_driver_error_is_a_storage_error(
    database: str, storage: Storage, table: str, name: str, call: Callable[[Storage], Any]
) -> None:
    call(storage)  # works before the table goes
    drop(database, table)
    with pytest.raises(StorageError) as raised:
        call(storage)
    assert not isinstance(raised.value, sqlite3.Error)
    assert raised.value.__cause__ is not None  # the driver's error, chained for the log
