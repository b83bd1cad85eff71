"""Budget burn: each budget's spend in its current period against its limit.

Reads ``storage.budget_statuses(tenant, now_us)``: one mapping per budget in the shape
``GET /api/v1/budgets`` answers (budget_id, scope, period, limit, currency, spent,
remaining, period_start, period_end, state). A storage without it gets a panel saying so.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from ..._storage.protocol import Storage
from ..window import Window
from . import Unavailable, field

TEMPLATE = "budgets.html"
METHOD = "budget_statuses"


def statuses(storage: Storage, tenant: str) -> list[dict[str, Any]] | Unavailable:
    reader = getattr(storage, METHOD, None)
    if reader is None:
        return Unavailable("Budgets", METHOD)
    out = []
    for row in reader(tenant, time.time_ns() // 1000):
        spent, limit = str(field(row, "spent")), str(field(row, "limit"))
        scope = field(row, "scope") or {}
        out.append(
            {
                "budget_id": field(row, "budget_id"),
                "scope": ", ".join(f"{k}={v}" for k, v in sorted(scope.items())) or "tenant",
                "period": field(row, "period"),
                "spent": spent,
                "limit": limit,
                "remaining": field(row, "remaining"),
                "currency": field(row, "currency"),
                "state": field(row, "state"),
                "action": field(row, "action"),
                "period_end": field(row, "period_end"),
                "bar": _burn_class(spent, limit),
                "burn": _burn_text(spent, limit),
            }
        )
    return out


def burn(storage: Storage, tenant: str) -> dict[str, Any] | Unavailable:
    """The overview's card: how many budgets, and how many warn or are exceeded."""
    found = statuses(storage, tenant)
    if isinstance(found, Unavailable):
        return found
    states = [b["state"] for b in found]
    return {
        "count": len(found),
        "warning": states.count("warning"),
        "exceeded": states.count("exceeded"),
    }


def build(
    storage: Storage, tenant: str, window: Window, query: Mapping[str, str]
) -> dict[str, Any]:
    return {"budgets": statuses(storage, tenant)}


def _ratio(spent: str, limit: str) -> Decimal | None:
    try:
        s, lim = Decimal(spent), Decimal(limit)
    except InvalidOperation:
        return None
    return None if lim <= 0 else s / lim


def _burn_text(spent: str, limit: str) -> str:
    ratio = _ratio(spent, limit)
    return "-" if ratio is None else f"{100 * ratio:.1f}%"


def _burn_class(spent: str, limit: str) -> str:
    ratio = _ratio(spent, limit)
    return "w0" if ratio is None else f"w{min(100, max(0, round(100 * ratio)))}"
