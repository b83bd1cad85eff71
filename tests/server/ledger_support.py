"""Shared by the ledger, webhook and budget tests: a storage with a ledger beside it on
both backends, and a loopback webhook receiver that verifies every signature."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from standardwebhooks import Webhook

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
    """A backend's storage and the ledger it carries."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.ledger = storage.ledger

    def close(self) -> None:
        self.storage.close()


def sqlite_side(path: Path) -> Side:
    return Side(SqliteStorage(path))


def postgres_side(schema: str) -> Side:
    pytest.importorskip("psycopg")
    from aicm_manual.server._storage.postgres import PostgresStorage

    try:
        return Side(PostgresStorage(POSTGRES_URL, schema=schema))
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable: {exc}")


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
