"""Overview: the window's cost per currency, events, unpriced share, active customers,
budget burn, and cost over time stacked by service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...._records import format_timestamp_us
from ..._ingest import cost_text
from ..._storage.protocol import Storage
from ..window import Window, main_currency, merge, money, series, share, totals
from . import budgets

TEMPLATE = "overview.html"


def build(
    storage: Storage, tenant: str, window: Window, query: Mapping[str, str]
) -> dict[str, Any]:
    since, until = window.since_us, window.until_us
    services = merge(storage.cost_summary(tenant, "service_id", since, until))
    customers = merge(storage.cost_summary(tenant, "client_customer_key", since, until))
    costs = totals(services)
    events = sum(line.events for line in services)
    unpriced = sum(line.unpriced for line in services)
    currency = query.get("currency") or main_currency(costs)
    rows = storage.usage(tenant, window.bucket, "service_id", since, until)  # type: ignore[arg-type]
    points: dict[tuple[int, str], int] = {}
    per_bucket: dict[int, list[int]] = {}
    for row in rows:
        bucket = per_bucket.setdefault(row.bucket_start_us, [0, 0])
        bucket[0] += row.events
        if row.currency == currency:
            key = (row.bucket_start_us, row.key or "(none)")
            points[key] = points.get(key, 0) + row.cost_nanos
            bucket[1] += row.cost_nanos
    services.sort(key=lambda line: (-line.cost(currency), -line.events, line.key or ""))
    keys = [line.key or "(none)" for line in services]
    top = costs.get(currency, 0)
    return {
        "totals": money(costs),
        "events": events,
        "unpriced": unpriced,
        "unpriced_share": share(unpriced, events),
        "active_customers": sum(1 for c in customers if c.key is not None and c.events),
        "currency": currency,
        "currencies": sorted(costs),
        "chart": series(window.bucket_starts(), points, keys),
        "services": [
            {
                "service_id": line.key,
                "events": line.events,
                "unpriced": line.unpriced,
                "cost": cost_text(line.cost(currency)),
                "share": share(line.cost(currency), top),
            }
            for line in services
        ],
        "buckets": [
            {
                "start": format_timestamp_us(start)[: 16 if window.bucket == "hour" else 10],
                "events": values[0],
                "cost": cost_text(values[1]),
            }
            for start, values in sorted(per_bucket.items())
        ],
        "budgets": budgets.burn(storage, tenant),
    }
