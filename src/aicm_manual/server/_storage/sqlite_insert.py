"""The SQLite backend's event insert: rows of the events table, and one multi-row
``INSERT .. SELECT .. FROM (VALUES ..) .. ON CONFLICT DO NOTHING`` per chunk of a batch."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

from .protocol import NewEvent

INSERT_COLUMNS = (
    "tenant, config_id, service_id, response_id, timestamp_us, received_us,"
    " client_customer_key, usage, context, payload_hash, cost_nanos, currency, price_source"
)
ON_KEY = " ON CONFLICT (tenant, response_id, service_id) DO NOTHING"
# Rows per statement come in steps (padded), so that few statement texts exist (the
# statement cache keeps them prepared); a statement's spare rows are NULLs WHERE leaves out.
ROW_STEP = 100
NO_ROW = (None,) * 13
_values_sql: dict[int, str] = {}


def padded(n: int, max_rows: int) -> int:
    """Rows in the statement for n rows: a power of two under ROW_STEP, else a multiple."""
    if n < ROW_STEP:
        size = min(1 << (n - 1).bit_length(), ROW_STEP)
    else:
        size = -(-n // ROW_STEP) * ROW_STEP
    return min(size, max_rows)


def insert_values(
    db: sqlite3.Connection, rows: list[tuple[Any, ...]], max_rows: int
) -> tuple[int, int]:
    """Insert the rows in one statement (in their order: a later copy of a key is the
    duplicate); the number inserted and the id of the last one."""
    size = padded(len(rows), max_rows)
    sql = _values_sql.get(size)
    if sql is None:
        row = f"({', '.join('?' * 13)})"
        sql = _values_sql[size] = (
            f"INSERT INTO events ({INSERT_COLUMNS})"
            f" SELECT * FROM (VALUES {', '.join([row] * size)}) WHERE column1 IS NOT NULL" + ON_KEY
        )
    params = list(itertools.chain.from_iterable(rows))
    params.extend(NO_ROW * (size - len(rows)))
    cursor = db.execute(sql, params)
    return cursor.rowcount, cursor.lastrowid or 0


def max_rows(db: sqlite3.Connection) -> int:
    """Rows per statement: 2,500, or what the limit on bound parameters allows."""
    getlimit = getattr(db, "getlimit", None)  # Python 3.11+
    if getlimit is not None:
        limit: int = getlimit(9)  # SQLITE_LIMIT_VARIABLE_NUMBER
    else:  # SQLite's default limit, raised in 3.32
        limit = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
    rows = min(2500, limit // len(NO_ROW))
    return rows if rows < ROW_STEP else rows // ROW_STEP * ROW_STEP


def event_rows(events: Sequence[NewEvent], received: Sequence[int]) -> list[tuple[Any, ...]]:
    """The events as rows of INSERT_COLUMNS."""
    return [
        (
            e.tenant,
            e.config_id or "",
            e.service_id,
            e.response_id,
            e.timestamp_us,
            at,
            e.client_customer_key,
            e.usage,
            e.context,
            e.payload_hash,
            e.cost_nanos,
            e.currency,
            e.price_source,
        )
        for e, at in zip(events, received, strict=True)
    ]
