"""The ledger tables (price rules, budgets, webhooks, outbox) behave alike on SQLite and
PostgreSQL: run on a real file and a scratch PostgreSQL schema, beside a real storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aicm_manual.server._webhooks import Message

from .ledger_support import DAY, Side, event, open_side


@pytest.fixture(params=["sqlite", "postgres"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    with open_side(request.param, tmp_path) as made:
        yield made


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
