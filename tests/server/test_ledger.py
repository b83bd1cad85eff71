"""The ledger tables (price rules, budgets, webhooks, outbox) behave alike on SQLite and
PostgreSQL: run on a real file and a scratch PostgreSQL schema, beside a real storage."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from aicm_manual._migrations import split_statements
from aicm_manual.server._storage.ledger import Ledger, migration, sqlite_atomic
from aicm_manual.server._storage.protocol import US_PER_DAY, NewEvent, Storage
from aicm_manual.server._storage.sqlite import SqliteStorage
from aicm_manual.server._webhooks import Message

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

    with sqlite_atomic(db):  # the backend will run it as one of its migrations
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


@pytest.fixture(params=["sqlite", "postgres"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    if request.param == "sqlite":
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


def test_price_rules_are_appended_and_listed_per_tenant(side: Side) -> None:
    """Rules keep their history (a change is a new rule) and each tenant sees its own."""
    ledger = side.ledger
    first = ledger.add_price_rule("a", "openai::*", 10, {"currency": "USD", "unit": {}})
    second = ledger.add_price_rule("a", "openai::*", 20, {"currency": "EUR", "unit": {}})
    ledger.add_price_rule("b", "x::y", 0, {"unit": {}})
    assert second.rule_id > first.rule_id
    assert [r.effective_from_us for r in ledger.price_rules("a")] == [10, 20]
    assert ledger.price_rules("a")[1].pricing == {"currency": "EUR", "unit": {}}
    assert {r.tenant for r in ledger.price_rules()} == {"a", "b"}
    assert ledger.price_rules_mark() == max(r.rule_id for r in ledger.price_rules())


def test_budgets_are_created_replaced_listed_and_deleted(side: Side) -> None:
    """put answers whether the budget is new; delete whether there was one."""
    ledger = side.ledger
    assert ledger.put_budget("a", "daily", {"limit": "1"}) is True
    assert ledger.put_budget("a", "daily", {"limit": "2"}) is False
    ledger.put_budget("b", "daily", {"limit": "3"})
    assert ledger.budget_documents("a") == [("a", "daily", {"limit": "2"})]
    assert ledger.delete_budget("a", "daily") is True
    assert ledger.delete_budget("a", "daily") is False
    assert ledger.budget_documents() == [("b", "daily", {"limit": "3"})]


def test_spend_reads_the_rollups_by_scope_and_days(side: Side) -> None:
    """Customer exact, service exact or vendor::*, days half-open; other vendors excluded."""
    side.storage.ingest(
        [
            event("r1", customer="acme", service="openai::gpt-4o", cost=100),
            event("r2", customer="acme", service="openai::o3", cost=20),
            event("r3", customer="acme", service="openaix::m", cost=4),
            event("r4", customer="globex", service="openai::gpt-4o", cost=1),
            event("r5", customer="acme", service="openai::gpt-4o", cost=1000, day=DAY + 1),
        ]
    )
    spend = side.ledger.spend
    assert spend("tenant-a", "acme", "openai::*", DAY, DAY + 1) == {"USD": 120}
    assert spend("tenant-a", "acme", "openai::gpt-4o", DAY, DAY + 2) == {"USD": 1100}
    assert spend("tenant-a", None, None, DAY, DAY + 1) == {"USD": 125}
    assert spend("tenant-a", "nobody", None, DAY, DAY + 1) == {}
    assert spend("tenant-b", None, None, DAY, DAY + 2) == {}


def test_outbox_messages_are_stored_once_claimed_once_and_recorded(side: Side) -> None:
    """The same message id twice is stored once; a claimed message is not handed out again
    until its attempt is recorded; a delivered one never again."""
    ledger = side.ledger
    message = Message("msg_1", "ops", "a", b'{"type":"budget.threshold"}', 1_000)
    ledger.add_messages([message, message])
    ledger.add_messages([message])
    claimed = ledger.due_messages(2_000, 10)
    assert [m.message_id for m in claimed] == ["msg_1"]
    assert claimed[0].body == message.body
    assert ledger.due_messages(2_000, 10) == []  # leased
    ledger.record_attempt("msg_1", 1, 5_000, None, "HTTP 500")
    assert ledger.due_messages(4_000, 10) == []
    assert [m.attempts for m in ledger.due_messages(5_000, 10)] == [1]
    ledger.record_attempt("msg_1", 2, None, 6_000, None)
    assert ledger.due_messages(10**12, 10) == []
    listed = ledger.messages_for("a", "ops")
    assert [(m.attempts, m.delivered_us, m.last_error) for m in listed] == [(2, 6_000, None)]


def test_webhooks_are_upserted_per_tenant(side: Side) -> None:
    """A webhook id is per tenant; putting it again replaces url, secret and events."""
    ledger = side.ledger
    ledger.put_webhook("a", "ops", "http://127.0.0.1:1/", "whsec_x", ["budget.threshold"])
    ledger.put_webhook("a", "ops", "http://127.0.0.1:2/", "whsec_y", ["budget.threshold"])
    ledger.put_webhook("b", "ops", "http://127.0.0.1:3/", "whsec_z", ["budget.threshold"])
    rows = ledger.webhooks("a")
    assert [(r.url, r.secret, r.events) for r in rows] == [
        ("http://127.0.0.1:2/", "whsec_y", ("budget.threshold",))
    ]
    assert ledger.delete_webhook("a", "ops") is True
    assert [r.tenant for r in ledger.webhooks()] == ["b"]
