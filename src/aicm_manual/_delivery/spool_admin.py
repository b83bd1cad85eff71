"""The spool's rows listed and changed by hand (``aicm-manual queue``): listing, requeueing
dead letters, purging, and the bulk insert salvage uses. A mixin of Spool, which supplies
the connection (``_run``, ``_transaction``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from .spool_schema import SpoolRow


class SpoolAdmin:
    _inbox: bool  # the file has an inbox table (schema 2 and later)
    _clock: Callable[[], float]

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        raise NotImplementedError

    def _transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        raise NotImplementedError

    def rows(self, table: str = "records", limit: int = 50) -> list[SpoolRow]:
        if table == "records":
            sql = (
                "SELECT id, key_ref, api_base, response_id, body, enqueued_at, attempts"
                " FROM records ORDER BY id LIMIT ?"
            )
            return [
                SpoolRow(*r) for r in self._run(lambda db: db.execute(sql, (limit,)).fetchall())
            ]
        if table == "dead_letters":
            sql = (
                "SELECT id, key_ref, api_base, response_id, body, failed_at, 0, reason"
                " FROM dead_letters ORDER BY id LIMIT ?"
            )
            return [
                SpoolRow(*r) for r in self._run(lambda db: db.execute(sql, (limit,)).fetchall())
            ]
        raise ValueError(f"unknown table {table!r}")

    def requeue(self, ids: Sequence[int] | None) -> int:
        """Move dead letters (all when ``ids`` is None) back to the queue."""
        now = self._clock()
        where, args = _selection(ids)

        def run(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at)"
                f" SELECT key_ref, api_base, response_id, body, ? FROM dead_letters{where}",
                (now, *args),
            )
            db.execute(f"DELETE FROM dead_letters{where}", args)
            return int(cursor.rowcount)

        result: int = self._transaction(run)
        return result

    def purge(self, table: str, ids: Sequence[int] | None) -> int:
        """Delete rows of ``table`` (all when ``ids`` is None); an empty list deletes nothing."""
        if table not in ("records", "dead_letters"):
            raise ValueError(f"unknown table {table!r}")
        where, args = _selection(ids)

        def run(db: sqlite3.Connection) -> int:
            n = int(db.execute(f"DELETE FROM {table}{where}", args).rowcount)
            if table == "records" and ids is None and self._inbox:
                n += int(db.execute("DELETE FROM inbox").rowcount)
            return n

        result: int = self._transaction(run)
        return result

    def insert_rows(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run one INSERT for many rows in one transaction (salvage)."""
        self._transaction(lambda db: db.executemany(sql, rows))


def _selection(ids: Sequence[int] | None) -> tuple[str, tuple[int, ...]]:
    if ids is None:
        return "", ()
    if not ids:
        return " WHERE 0", ()
    return f" WHERE id IN ({','.join('?' * len(ids))})", tuple(int(i) for i in ids)
