"""Budget alerts end to end: stored records -> spend from the rollups -> threshold
crossings in the outbox -> signed deliveries at a real loopback receiver, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aicm_manual.server._budget_watch import BudgetWatcher
from aicm_manual.server._storage.protocol import US_PER_DAY
from aicm_manual.server._webhooks import Dispatcher

from .ledger_support import SECRET, Receiver, Side, event, open_side, serve_receiver, sqlite_side

DAY = 20_000
NANO = 1_000_000_000


@pytest.fixture(params=["sqlite", "postgres"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    with open_side(request.param, tmp_path) as made:
        yield made


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as running:
        yield running


def watch(side: Side, receiver: Receiver, now_day: int = DAY) -> tuple[BudgetWatcher, Dispatcher]:
    clock = lambda: (now_day * US_PER_DAY + 12 * 3_600_000_000) / 1e6  # noqa: E731
    watcher = BudgetWatcher(side.ledger, clock=clock)
    # The receiver checks signature times against its own clock: sign with the real one.
    dispatcher = Dispatcher(side.ledger, watcher.endpoint)
    return watcher, dispatcher


def setup_budget(side: Side, receiver: Receiver, **scope: str) -> None:
    side.ledger.put_webhook("tenant-a", "ops", receiver.url, SECRET, ["budget.threshold"])
    side.ledger.put_budget(
        "tenant-a",
        "acme-daily",
        {"scope": scope, "period": "day", "limit": "10", "thresholds": [0.5, 1.0]},
    )


def test_thresholds_fire_once_each_in_order_with_the_amounts(
    side: Side, receiver: Receiver
) -> None:
    """50% then 100%, each once, bodies with spend, limit, period and scope, signed."""
    setup_budget(side, receiver, client_customer_key="acme")
    watcher, dispatcher = watch(side, receiver)
    first = [event("r1", customer="acme", service="openai::gpt-4o", cost=6 * NANO)]
    side.storage.ingest(first)
    watcher.stored(first)
    assert watcher.run_once() == 1
    dispatcher.run_once()
    second = [event("r2", customer="acme", service="openai::gpt-4o", cost=5 * NANO)]
    side.storage.ingest(second)
    watcher.stored(second)
    watcher.run_once()
    dispatcher.run_once()
    again = [event("r3", customer="acme", service="openai::o3", cost=NANO)]
    side.storage.ingest(again)
    watcher.stored(again)
    assert watcher.run_once() == 0  # both thresholds were announced already
    assert dispatcher.run_once() == 0
    data = [m["data"] for m in receiver.verified]
    assert [d["threshold"] for d in data] == [0.5, 1.0]
    assert [d["spent"] for d in data] == ["6.000000000", "11.000000000"]
    assert data[0]["limit"] == "10.000000000"
    assert data[0]["scope"] == {"client_customer_key": "acme"}
    assert data[0]["period_start"] == "2024-10-04T00:00:00.000000Z"
    assert data[0]["period_end"] == "2024-10-05T00:00:00.000000Z"
    assert len({h["webhook-id"] for h in receiver.seen}) == 2


def test_a_restart_between_crossing_and_delivery_still_delivers(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The crossing is in the database: a new process's dispatcher sends it."""
    first = sqlite_side(tmp_path / "c.db")
    setup_budget(first, receiver)
    watcher, _ = watch(first, receiver)
    events = [event("r1", customer="acme", service="x::y", cost=20 * NANO)]
    first.storage.ingest(events)
    watcher.stored(events)
    assert watcher.run_once() == 2
    first.close()  # the process dies before sending
    second = sqlite_side(tmp_path / "c.db")
    try:
        _, dispatcher = watch(second, receiver)
        assert dispatcher.run_once() == 2
        assert [m["data"]["threshold"] for m in receiver.verified] == [0.5, 1.0]
    finally:
        second.close()


def test_a_late_record_counts_in_its_own_period(side: Side, receiver: Receiver) -> None:
    """A record stamped yesterday fills yesterday's budget period, not today's."""
    setup_budget(side, receiver)
    watcher, dispatcher = watch(side, receiver, now_day=DAY + 1)
    late = [event("old", customer="acme", service="x::y", cost=6 * NANO, day=DAY)]
    side.storage.ingest(late)
    watcher.stored(late)
    watcher.run_once()
    dispatcher.run_once()
    assert [m["data"]["period_start"] for m in receiver.verified] == ["2024-10-04T00:00:00.000000Z"]
    budget = watcher._budgets["tenant-a"][0]
    today = watcher.view(budget, (DAY + 1) * US_PER_DAY)
    assert today["spent"] == "0.000000000"
    assert today["state"] == "ok"


def test_one_tenants_budget_never_sees_another_tenants_spend(
    side: Side, receiver: Receiver
) -> None:
    """Spend of tenant-b does not move tenant-a's budget, even for the same customer."""
    from dataclasses import replace

    setup_budget(side, receiver)
    watcher, _ = watch(side, receiver)
    other = [replace(event("b1", customer="acme", service="x::y", cost=50 * NANO), tenant="b")]
    side.storage.ingest(other)
    watcher.stored(other)
    assert watcher.run_once() == 0
    budget = watcher._budgets["tenant-a"][0]
    assert watcher.view(budget, DAY * US_PER_DAY)["spent"] == "0.000000000"


def test_deliveries_are_listed_with_their_attempts(side: Side, receiver: Receiver) -> None:
    """The outbox lists each message of a webhook with its attempts and outcome."""
    setup_budget(side, receiver)
    watcher, dispatcher = watch(side, receiver)
    events = [event("r1", customer="acme", service="x::y", cost=5 * NANO)]
    side.storage.ingest(events)
    watcher.stored(events)
    watcher.run_once()
    receiver.fail_next = 1
    dispatcher.run_once()
    listed = side.ledger.messages_for("tenant-a", "ops")
    assert [(m.attempts, m.delivered_us, m.last_error) for m in listed] == [(1, None, "HTTP 500")]
    assert json.loads(listed[0].body)["type"] == "budget.threshold"
