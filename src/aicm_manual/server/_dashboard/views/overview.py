"""Overview: the window's cost per currency, events, unpriced share, active customers,
budget burn, and cost over time stacked by service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...._records import format_timestamp_us
from ..._ingest import cost_text
from ..._storage.protocol import US_PER_DAY, Storage, UsageRow, whole_days
from ..window import Window, main_currency, merge, money, series, share, totals
from . import budgets

TEMPLATE = "overview.html"
ROLLUP_DAYS = 92  # up to this many day buckets are read from the daily rollups, one a day


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
    rows = _usage(storage, tenant, window)
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


def _usage(storage: Storage, tenant: str, window: Window) -> list[UsageRow]:
    """Cost per bucket and service. Day buckets of a whole-day window come from the daily
    rollups, a day at a time: ``storage.usage`` reads every event of the window instead,
    an order of magnitude slower on a month of events."""
    since, until = window.since_us, window.until_us
    days = (until - since) // US_PER_DAY
    if (
        window.bucket != "day"
        or not (whole_days(since) and whole_days(until))
        or days > ROLLUP_DAYS
    ):
        return storage.usage(tenant, window.bucket, "service_id", since, until)  # type: ignore[arg-type]
    rows = []
    for start in range(since, until, US_PER_DAY):
        for r in storage.cost_summary(tenant, "service_id", start, start + US_PER_DAY):
            rows.append(UsageRow(start, r.key, r.currency, r.events, r.cost_nanos, r.unpriced))
    return rows
