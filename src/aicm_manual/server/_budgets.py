"""Budgets: a spend limit per UTC day or month on a scope (a customer, a service, both or
the whole tenant), its state, and the thresholds a new record crosses.

    budget = parse_budget("acme-daily", "tenant-a", {"scope": {"client_customer_key": "acme"},
                          "period": "day", "limit": "25.00", "thresholds": [0.5, 1.0]})
    start, end = period_bounds("day", timestamp_us)
    crossed(budget, spent_before, spent_after)        # -> [0.5] once, never again

Pure: no I/O. Amounts are integers of nano-units, like every cost the collector keeps; a
record counts in the period of its own timestamp, so a late record lands where it belongs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Literal

from .._records import format_timestamp_us
from ._ingest import cost_text
from ._pricing import to_nanos

Period = Literal["day", "month"]
Action = Literal["alert", "block"]
State = Literal["ok", "warning", "exceeded"]

BUDGET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_THRESHOLDS = 10
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_KEYS = frozenset({"scope", "period", "limit", "currency", "thresholds", "action"})
_SCOPE_KEYS = frozenset({"client_customer_key", "service_id"})


class BudgetError(ValueError):
    """A budget document that cannot be used; the message names every problem."""


@dataclass(frozen=True, slots=True)
class Budget:
    budget_id: str
    tenant: str
    client_customer_key: str | None
    service_id: str | None  # exact, or "vendor::*"
    period: Period
    limit_nanos: int
    currency: str
    thresholds: tuple[Fraction, ...]  # ascending, each in (0, 10]
    action: Action

    def applies_to(self, client_customer_key: str | None, service_id: str) -> bool:
        """Whether a record of this customer and service counts against the budget."""
        customer = self.client_customer_key
        if customer is not None and client_customer_key != customer:
            return False
        if self.service_id is None or self.service_id == service_id:
            return True
        if self.service_id.endswith("::*"):
            return service_id.startswith(self.service_id[:-1])
        return False

    def scope(self) -> dict[str, str]:
        scope = {}
        if self.client_customer_key is not None:
            scope["client_customer_key"] = self.client_customer_key
        if self.service_id is not None:
            scope["service_id"] = self.service_id
        return scope

    def state(self, spent_nanos: int) -> State:
        """``exceeded`` at or past the limit, ``warning`` past the first threshold below it."""
        if spent_nanos >= self.limit_nanos:
            return "exceeded"
        below = [t for t in self.thresholds if t < 1]
        if below and spent_nanos * below[0].denominator >= self.limit_nanos * below[0].numerator:
            return "warning"
        return "ok"

    def crossed(self, before_nanos: int, after_nanos: int) -> list[Fraction]:
        """The thresholds that spend going from ``before`` to ``after`` passes (reaching a
        threshold counts as passing it), lowest first."""
        return [
            t
            for t in self.thresholds
            if not _reached(before_nanos, self.limit_nanos, t)
            and _reached(after_nanos, self.limit_nanos, t)
        ]

    def reached(self, spent_nanos: int) -> list[Fraction]:
        """Every threshold the spend has reached."""
        return [t for t in self.thresholds if _reached(spent_nanos, self.limit_nanos, t)]


def _reached(spent: int, limit: int, threshold: Fraction) -> bool:
    return spent * threshold.denominator >= limit * threshold.numerator


def period_bounds(period: Period, timestamp_us: int) -> tuple[int, int]:
    """The UTC day or calendar month holding ``timestamp_us``, as [start, end) in us."""
    when = _EPOCH + timedelta(microseconds=timestamp_us)
    if period == "day":
        start = datetime(when.year, when.month, when.day, tzinfo=timezone.utc)
        end = start + timedelta(days=1)
    else:
        start = datetime(when.year, when.month, 1, tzinfo=timezone.utc)
        end = datetime(when.year + when.month // 12, when.month % 12 + 1, 1, tzinfo=timezone.utc)
    return _us(start), _us(end)


def _us(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(microseconds=1)


def parse_budget(budget_id: str, tenant: str, body: object) -> Budget:
    """A budget from a ``PUT /api/v1/budgets/{budget_id}`` body; BudgetError names every
    problem found."""
    problems: list[str] = []
    if not isinstance(budget_id, str) or not BUDGET_ID.fullmatch(budget_id):
        problems.append("budget_id must be 1-128 letters, digits or ._:- (starting alphanumeric)")
    if not isinstance(body, Mapping):
        raise BudgetError("a budget must be a JSON object")
    unknown = sorted(str(k) for k in body if k not in _KEYS)
    if unknown:
        problems.append(f"unknown keys {unknown} (known: {sorted(_KEYS)})")
    customer, service = _scope(body.get("scope", {}), problems)
    period = body.get("period")
    if period not in ("day", "month"):
        problems.append(f"period must be 'day' or 'month', got {period!r}")
    limit_nanos = _limit(body.get("limit"), problems)
    currency = body.get("currency", "USD")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        problems.append(f"currency must be a 3-letter code such as 'USD', got {currency!r}")
    thresholds = _thresholds(body.get("thresholds", [0.5, 0.8, 1.0]), problems)
    action = body.get("action", "alert")
    if action not in ("alert", "block"):
        problems.append(f"action must be 'alert' or 'block', got {action!r}")
    if problems:
        raise BudgetError("; ".join(problems))
    return Budget(
        budget_id,
        tenant,
        customer,
        service,
        "day" if period == "day" else "month",
        limit_nanos,
        currency,
        thresholds,
        "block" if action == "block" else "alert",
    )


def _scope(raw: object, problems: list[str]) -> tuple[str | None, str | None]:
    if not isinstance(raw, Mapping):
        problems.append("scope must be an object with client_customer_key and/or service_id")
        return None, None
    unknown = sorted(str(k) for k in raw if k not in _SCOPE_KEYS)
    if unknown:
        problems.append(f"unknown scope keys {unknown} (known: {sorted(_SCOPE_KEYS)})")
    values: list[str | None] = []
    for name in ("client_customer_key", "service_id"):
        value = raw.get(name)
        if value is not None and (
            not isinstance(value, str) or not value or len(value) > 255 or not value.isprintable()
        ):
            problems.append(f"scope {name} must be a printable string of 1-255 characters")
            value = None
        values.append(value)
    service = values[1]
    if (
        service is not None
        and "*" in service
        and not (service.endswith("::*") and service.count("*") == 1 and len(service) > 3)
    ):
        problems.append(f"scope service_id {service!r}: only 'vendor::*' may use '*'")
    return values[0], values[1]


def _limit(raw: object, problems: list[str]) -> int:
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        problems.append(f"limit must be a decimal string such as '25.00', got {raw!r}")
        return 0
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation:
        problems.append(f"limit must be a decimal string such as '25.00', got {raw!r}")
        return 0
    if not amount.is_finite() or amount <= 0:
        problems.append(f"limit must be a positive amount, got {raw!r}")
        return 0
    nanos = to_nanos(amount)
    if nanos <= 0 or nanos >= 2**63:
        problems.append(f"limit {raw!r} is out of range (at least 1e-9, below 9.2e9)")
        return 0
    return nanos


def _thresholds(raw: object, problems: list[str]) -> tuple[Fraction, ...]:
    if not isinstance(raw, list) or not raw or len(raw) > MAX_THRESHOLDS:
        problems.append(f"thresholds must be a list of 1-{MAX_THRESHOLDS} fractions of the limit")
        return ()
    found: set[Fraction] = set()
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            problems.append(f"threshold {value!r} is not a number")
            continue
        try:
            fraction = Fraction(Decimal(str(value)))
        except (InvalidOperation, ValueError):
            problems.append(f"threshold {value!r} is not a number")
            continue
        if not 0 < fraction <= 10:
            problems.append(f"threshold {value!r} must be above 0 and at most 10 (1 = the limit)")
            continue
        found.add(fraction)
    return tuple(sorted(found))


def budget_view(budget: Budget, spent_nanos: int, start_us: int, end_us: int) -> dict[str, Any]:
    """The JSON a budget is shown as: its definition and the current period's spend."""
    return {
        "budget_id": budget.budget_id,
        "scope": budget.scope(),
        "period": budget.period,
        "limit": cost_text(budget.limit_nanos),
        "currency": budget.currency,
        "thresholds": [float(t) for t in budget.thresholds],
        "action": budget.action,
        "spent": cost_text(spent_nanos),
        "remaining": cost_text(max(0, budget.limit_nanos - spent_nanos)),
        "period_start": format_timestamp_us(start_us),
        "period_end": format_timestamp_us(end_us),
        "state": budget.state(spent_nanos),
    }
