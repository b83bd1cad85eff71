"""Services and models: events, unpriced events, cost and average cost per priced event,
from the daily rollups (whole-day windows) or the events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._ingest import cost_text
from ..._storage.protocol import Storage
from ..window import Window, average, bar_class, main_currency, merge, money, share, totals

TEMPLATE = "services.html"


def build(
    storage: Storage, tenant: str, window: Window, query: Mapping[str, str]
) -> dict[str, Any]:
    lines = merge(storage.cost_summary(tenant, "service_id", window.since_us, window.until_us))
    costs = totals(lines)
    currency = query.get("currency") or main_currency(costs)
    lines.sort(key=lambda line: (-line.cost(currency), -line.events, line.key or ""))
    top = max((line.cost(currency) for line in lines), default=0)
    rows = []
    for line in lines:
        vendor, _, model = (line.key or "").partition("::")
        rows.append(
            {
                "service_id": line.key,
                "vendor": vendor,
                "model": model,
                "events": line.events,
                "unpriced": line.unpriced,
                "unpriced_share": share(line.unpriced, line.events),
                "cost": cost_text(line.cost(currency)),
                "others": [m for m in money(line.costs or {}) if m["currency"] != currency]
                if line.costs
                else [],
                "average": average(line.cost(currency), line.priced),
                "bar": bar_class(line.cost(currency), top),
            }
        )
    return {
        "currency": currency,
        "currencies": sorted(costs),
        "totals": money(costs),
        "services": rows,
    }
