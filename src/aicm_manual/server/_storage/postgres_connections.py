"""Connections of the PostgreSQL backend: a psycopg pool when installed, else a few idle
connections kept for reuse; either drops connections the server closed."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

Connection = psycopg.Connection[TupleRow]


class Connections(Protocol):
    def connection(self) -> AbstractContextManager[Connection]: ...

    def discard_stale(self) -> None:
        """Drop idle connections the server no longer serves."""
        ...

    def close(self) -> None: ...


class IdleConnections:
    """Connections kept for reuse, one per concurrent caller: the fallback without
    psycopg_pool. Not tied to threads, because the server's worker threads come and go."""

    def __init__(self, connect: Callable[[], Connection], max_idle: int = 8) -> None:
        self._connect = connect
        self._max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._lock:
            if self._closed:
                raise RuntimeError("PostgresStorage is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._release(conn)

    def _release(self, conn: Connection) -> None:
        with self._lock:
            keep = (
                not self._closed
                and not conn.closed
                and not conn.broken
                and conn.info.transaction_status == TransactionStatus.IDLE
                and len(self._idle) < self._max_idle
            )
            if keep:
                self._idle.append(conn)
        if not keep:
            conn.close()

    def discard_stale(self) -> None:
        # Cheaper than testing each one: when one was dropped, the others usually were too.
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.discard_stale()


class _PoolConnections:
    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._closed = False

    def connection(self) -> AbstractContextManager[Connection]:
        if self._closed:
            raise RuntimeError("PostgresStorage is closed")
        cm: AbstractContextManager[Connection] = self._pool.connection()
        return cm

    def discard_stale(self) -> None:
        self._pool.check()

    def close(self) -> None:
        self._closed = True
        self._pool.close()


def open_pool(
    url: str, options: dict[str, Any], configure: Callable[[Connection], None]
) -> _PoolConnections | None:
    try:
        pool_module = importlib.import_module("psycopg_pool")
    except ImportError:
        return None
    pool = pool_module.ConnectionPool(
        url,
        min_size=1,
        max_size=16,
        kwargs=options,
        configure=configure,
        name="aicm-postgres",
        open=True,
    )
    return _PoolConnections(pool)


# -- helpers ------------------------------------------------------------------------------


def connection_lost(conn: Connection, exc: psycopg.OperationalError) -> bool:
    # 08: connection exception; 57P01-3: the server is shutting down or restarting.
    state = exc.sqlstate or ""
    return conn.broken or state.startswith("08") or state in {"57P01", "57P02", "57P03"}
