"""Shared by the ledger, webhook and budget tests: a storage with a ledger beside it on
both backends, and a loopback webhook receiver that verifies every signature."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from standardwebhooks import Webhook

from aicm_manual._migrations import split_statements
from aicm_manual.server._storage.ledger import Ledger, migration, sqlite_atomic
from aicm_manual.server._storage.protocol import US_PER_DAY, NewEvent, Storage
from aicm_manual.server._storage.sqlite import SqliteStorage
from aicm_manual.server._webhooks import new_secret

POSTGRES_URL = os.environ.get("AICM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
DAY = 20_000  # days since the epoch


def event(rid: str, *, customer: str | None, service: str, cost: int, day: int = DAY) -> NewEvent:
    digest = hashlib.sha256(rid.encode()).hexdigest()
    return NewEvent(
        tenant="tenant-a",
        config_id="llm",
        service_id=service,
        response_id=rid,
        timestamp_us=day * US_PER_DAY + 3_600_000_000,
        client_customer_key=customer,
        usage=b"{}",
        context=None,
        payload_hash=digest,
        cost_nanos=cost,
        currency="USD",
        price_source="unit",
    )


class Side:
    """A backend's storage plus a ledger over a connection of its own to the same database."""

    def __init__(self, storage: Storage, ledger: Ledger, close: Callable[[], None]) -> None:
        self.storage, self.ledger, self._close = storage, ledger, close

    def close(self) -> None:
        self._close()
        self.storage.close()


def sqlite_side(path: Path) -> Side:
    storage = SqliteStorage(path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=30000")
    lock = threading.Lock()

    def run(fn: Callable[[Any], Any]) -> Any:
        with lock:
            return fn(db)

    made = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'price_rules'").fetchone()
    if made is None:  # a backend runs this as one of its migrations
        with sqlite_atomic(db):
            for statement in split_statements(migration("sqlite")):
                db.execute(statement)
    ledger = Ledger(run, run, sqlite_atomic, dialect="sqlite", clock=lambda: 5.0)
    return Side(storage, ledger, db.close)


def postgres_side(schema: str) -> Side:
    psycopg = pytest.importorskip("psycopg")
    from aicm_manual.server._storage.postgres import PostgresStorage

    try:
        storage = PostgresStorage(POSTGRES_URL, schema=schema)
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    conn = psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}")
    lock = threading.Lock()

    def run(fn: Callable[[Any], Any]) -> Any:
        with lock:
            return fn(conn)

    def atomic(c: Any) -> AbstractContextManager[object]:
        return c.transaction()  # type: ignore[no-any-return]

    with conn.transaction():
        for statement in split_statements(migration("postgres")):
            conn.execute(statement)
    ledger = Ledger(run, run, atomic, dialect="postgres", clock=lambda: 5.0)
    return Side(storage, ledger, conn.close)


SECRET = new_secret()


class Receiver:
    """A loopback webhook receiver that verifies every signature it is sent."""

    def __init__(self) -> None:
        self.fail_next = 0
        self.seen: list[dict[str, Any]] = []
        self.verified: list[Any] = []
        self.url = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        self.seen.append(headers)
        if self.fail_next:
            self.fail_next -= 1
            return 500
        self.verified.append(Webhook(SECRET).verify(body, headers))
        return 204


@contextmanager
def serve_receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            status = state.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def open_side(kind: str, tmp_path: Path) -> Iterator[Side]:
    if kind == "sqlite":
        made = sqlite_side(tmp_path / "ledger.db")
        yield made
        made.close()
        return
    schema = f"aicm_test_{uuid4().hex[:12]}"
    try:
        made = postgres_side(schema)
        yield made
        made.close()
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
