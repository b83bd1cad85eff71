"""Budget documents, UTC periods, states and threshold crossings (pure rules)."""

from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction

import pytest

from aicm_manual.server._budgets import BudgetError, parse_budget, period_bounds

NANO = 1_000_000_000


def us(text: str) -> int:
    when = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1_000_000)


def test_a_budget_document_is_parsed_with_its_defaults() -> None:
    """Limit as exact nano-units, thresholds sorted, alert and USD by default."""
    budget = parse_budget("b1", "t", {"period": "day", "limit": "25.10", "thresholds": [1, 0.5]})
    assert budget.limit_nanos == 25_100_000_000
    assert budget.thresholds == (Fraction(1, 2), Fraction(1))
    assert (budget.action, budget.currency, budget.scope()) == ("alert", "USD", {})


def test_every_problem_of_a_bad_budget_is_named_at_once() -> None:
    """A bad document lists each problem, not only the first."""
    with pytest.raises(BudgetError) as caught:
        parse_budget(
            "bad id!",
            "t",
            {
                "period": "week",
                "limit": "-3",
                "thresholds": [0, "x"],
                "action": "shout",
                "scope": {"service_id": "open*ai", "team": "x"},
                "colour": 1,
            },
        )
    text = str(caught.value)
    for fragment in (
        "budget_id",
        "period must be",
        "limit must be a positive",
        "threshold 0",
        "threshold 'x'",
        "action must be",
        "only 'vendor::*'",
        "unknown scope keys ['team']",
        "unknown keys ['colour']",
    ):
        assert fragment in text, fragment


@pytest.mark.parametrize(
    ("period", "at", "start", "end"),
    [
        ("day", "2026-03-13T23:59:59.999999", "2026-03-13", "2026-03-14"),
        ("day", "2024-02-29T00:00:00", "2024-02-29", "2024-03-01"),
        ("month", "2026-12-31T12:00:00", "2026-12-01", "2027-01-01"),
        ("month", "2026-02-01T00:00:00", "2026-02-01", "2026-03-01"),
        ("day", "1969-12-31T23:00:00", "1969-12-31", "1970-01-01"),
    ],
)
def test_periods_are_utc_calendar_days_and_months(
    period: str, at: str, start: str, end: str
) -> None:
    """A record's period is the UTC day or month of its own timestamp."""
    assert period_bounds(period, us(at)) == (us(start), us(end))  # type: ignore[arg-type]


def test_thresholds_fire_once_each_as_spend_passes_them() -> None:
    """Going 0 -> 6 -> 10 -> 12 of a 10 limit crosses 0.5, then 1.0, then nothing."""
    budget = parse_budget("b", "t", {"period": "day", "limit": "10", "thresholds": [0.5, 1]})
    assert budget.crossed(0, 6 * NANO) == [Fraction(1, 2)]
    assert budget.crossed(6 * NANO, 10 * NANO) == [Fraction(1)]
    assert budget.crossed(10 * NANO, 12 * NANO) == []
    assert budget.crossed(0, 12 * NANO) == [Fraction(1, 2), Fraction(1)]


def test_state_follows_the_first_threshold_and_the_limit() -> None:
    """ok below the first threshold, warning from it, exceeded at the limit."""
    budget = parse_budget("b", "t", {"period": "day", "limit": "10", "thresholds": [0.8, 1]})
    assert budget.state(7 * NANO) == "ok"
    assert budget.state(8 * NANO) == "warning"
    assert budget.state(10 * NANO) == "exceeded"


@pytest.mark.parametrize(
    ("scope", "customer", "service", "applies"),
    [
        ({}, None, "openai::gpt-4o", True),
        ({"client_customer_key": "acme"}, "acme", "x::y", True),
        ({"client_customer_key": "acme"}, "globex", "x::y", False),
        ({"client_customer_key": "acme"}, None, "x::y", False),
        ({"service_id": "openai::*"}, None, "openai::gpt-4o", True),
        ({"service_id": "openai::*"}, None, "openaix::gpt-4o", False),
        ({"service_id": "openai::gpt-4o"}, "a", "openai::gpt-4o-mini", False),
    ],
)
def test_a_budget_applies_to_its_scope_only(
    scope: dict[str, str], customer: str | None, service: str, applies: bool
) -> None:
    """Customer exact; service exact or vendor::* (and never another vendor's prefix)."""
    budget = parse_budget("b", "t", {"period": "day", "limit": "1", "scope": scope})
    assert budget.applies_to(customer, service) is applies
