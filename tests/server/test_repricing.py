"""Re-pricing stored events under a new tenant rule, and the unpriced report, on both
backends: rollups move exactly, summaries equal the events to the nano-unit, twice is once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from aicm_manual._configs.model import Pricing, Rate
from aicm_manual.server._pricing import Pricer, PriceRule
from aicm_manual.server._storage.protocol import US_PER_DAY
from aicm_manual.server._storage.repricing import reprice, unpriced_report

from .ledger_support import DAY, Side, event, open_side

NANO = 1_000_000_000


@pytest.fixture(params=["sqlite", "postgres"])
def side(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Side]:
    with open_side(request.param, tmp_path) as made:
        yield made


def unpriced(rid: str, service: str, reason: str, day: int = DAY) -> object:
    return replace(
        event(rid, customer="acme", service=service, cost=0, day=day),
        cost_nanos=None,
        currency=None,
        price_source=reason,
        usage=json.dumps({"calls": 7}).encode(),
    )


def totals(side: Side) -> tuple[dict[str | None, int], dict[str | None, int]]:
    """(summary per currency over all time, sum of the stored events per currency); the
    all-time totals and the daily rollups over every day agree, row for row."""
    for group_by in ("service_id", "client_customer_key"):
        days = side.storage.cost_summary("tenant-a", group_by, 0, 4_102_444_800_000_000)  # type: ignore[arg-type]
        assert side.storage.cost_summary("tenant-a", group_by, None, None) == days  # type: ignore[arg-type]
    summary: dict[str | None, int] = {}
    for row in side.storage.cost_summary("tenant-a", "service_id", None, None):
        summary[row.currency] = summary.get(row.currency, 0) + row.cost_nanos
    events: dict[str | None, int] = {}
    for e in side.storage.list_events("tenant-a", limit=1000):
        if e.cost_nanos is not None:
            events[e.currency] = events.get(e.currency, 0) + e.cost_nanos
    return {k: v for k, v in summary.items() if k is not None}, events


def test_the_unpriced_report_groups_by_service_and_reason(side: Side) -> None:
    """Counts, first and last seen, and the reason recorded at ingest."""
    side.storage.ingest(
        [
            unpriced("u1", "internal::search", "no config lists the service", DAY),
            unpriced("u2", "internal::search", "no config lists the service", DAY + 2),
            unpriced("u3", "openai::nope", "genai-prices has no price for openai/nope"),
            event("p1", customer="acme", service="openai::gpt-4o", cost=NANO),
        ]
    )
    rows = unpriced_report(side.ledger, "tenant-a", None, None)
    assert [(r.service_id, r.events, r.reason) for r in rows] == [
        ("internal::search", 2, "no config lists the service"),
        ("openai::nope", 1, "genai-prices has no price for openai/nope"),
    ]
    assert rows[0].last_seen_us - rows[0].first_seen_us == 2 * US_PER_DAY
    assert unpriced_report(side.ledger, "tenant-b", None, None) == []
    window = unpriced_report(side.ledger, "tenant-a", (DAY + 1) * US_PER_DAY, None)
    assert [(r.service_id, r.events) for r in window] == [("internal::search", 1)]


def test_a_rule_added_later_prices_the_unpriced_and_totals_stay_exact(side: Side) -> None:
    """After re-pricing, unpriced events carry the rule's cost and source; the summary
    equals the events' sum to the nano-unit; a second run changes nothing."""
    side.storage.ingest(
        [
            unpriced("u1", "internal::search", "no config lists the service"),
            unpriced("u2", "internal::search", "no config lists the service", DAY + 1),
            event("p1", customer="acme", service="openai::gpt-4o", cost=3 * NANO + 7),
        ]
    )
    pricer = Pricer([])
    pricer.set_rules(
        [
            PriceRule(
                1,
                "tenant-a",
                "internal::search",
                0,
                Pricing("EUR", {"calls": Rate(Decimal("0.5"))}),
            )
        ]
    )

    def quote(config_id, service_id, usage, at, tenant):  # type: ignore[no-untyped-def]
        cost, currency, source = pricer.quote(config_id, service_id, usage, at, tenant)
        if cost is None:
            return None, None, pricer.explain(config_id, service_id, usage, at, tenant)
        return cost, currency, source

    result = reprice(side.ledger, "tenant-a", None, None, None, True, quote)
    assert result.repriced == 2
    assert result.cost_after == {"EUR": 7 * NANO}
    stored = {e.response_id: e for e in side.storage.list_events("tenant-a", limit=100)}
    assert (stored["u1"].cost_nanos, stored["u1"].currency) == (3_500_000_000, "EUR")
    assert stored["u1"].price_source == "rule 1: unit"
    summary, events = totals(side)
    assert summary == events == {"USD": 3 * NANO + 7, "EUR": 7 * NANO}
    unpriced_rows = [
        r for r in side.storage.cost_summary("tenant-a", "service_id", None, None) if r.unpriced
    ]
    assert unpriced_rows == []
    again = reprice(side.ledger, "tenant-a", None, None, None, True, quote)
    assert again.repriced == 0
    assert totals(side) == (summary, events)
    assert unpriced_report(side.ledger, "tenant-a", None, None) == []


def test_repricing_all_events_under_a_changed_rule_moves_costs_between_currencies(
    side: Side,
) -> None:
    """Re-pricing priced events under a rule in another currency moves their amounts out
    of the old currency's rollups exactly."""
    side.storage.ingest(
        [
            event("p1", customer="acme", service="x::y", cost=2 * NANO),
            event("p2", customer=None, service="x::y", cost=5, day=DAY + 3),
        ]
    )
    pricer = Pricer([])
    pricer.set_rules([PriceRule(2, "tenant-a", "x::*", 0, Pricing("GBP", {}))])

    def quote(config_id, service_id, usage, at, tenant):  # type: ignore[no-untyped-def]
        cost, currency, source = pricer.quote(config_id, service_id, usage, at, tenant)
        return cost, currency, source or "unpriced"

    result = reprice(side.ledger, "tenant-a", "x::y", None, None, False, quote)
    assert result.repriced == 2
    assert result.cost_before == {"USD": 2 * NANO + 5}
    assert result.cost_after == {"GBP": 0}
    summary, events = totals(side)
    assert summary == events == {"GBP": 0}
