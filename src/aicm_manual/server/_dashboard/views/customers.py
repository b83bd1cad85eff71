"""Customers: the top customers by cost with inline bars, and one customer's page with
daily cost split by service and their latest events with context."""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping
from typing import Any

from ..._ingest import cost_text
from ..._storage.protocol import US_PER_DAY, Storage, StoredEvent
from ..window import Window, bar_class, main_currency, merge, money, series, share, totals
from . import when

TEMPLATE = "customers.html"
CUSTOMER_TEMPLATE = "customer.html"
TOP = 500
LATEST = 50
SCAN_LIMIT = 200_000  # events read for one customer's page before it says "partial"
PAGE = 1000


def build(
    storage: Storage, tenant: str, window: Window, query: Mapping[str, str]
) -> dict[str, Any]:
    since, until = window.since_us, window.until_us
    lines = merge(storage.cost_summary(tenant, "client_customer_key", since, until))
    costs = totals(lines)
    currency = query.get("currency") or main_currency(costs)
    lines.sort(key=lambda line: (-line.cost(currency), -line.events, line.key or ""))
    top = max((line.cost(currency) for line in lines), default=0)
    return {
        "currency": currency,
        "currencies": sorted(costs),
        "count": len(lines),
        "shown": min(len(lines), TOP),
        "totals": money(costs),
        "customers": [
            {
                "key": line.key,
                "events": line.events,
                "unpriced": line.unpriced,
                "cost": cost_text(line.cost(currency)),
                "others": [m for m in money(line.costs or {}) if m["currency"] != currency]
                if line.costs
                else [],
                "bar": bar_class(line.cost(currency), top),
                "share": share(line.cost(currency), costs.get(currency, 0)),
            }
            for line in lines[:TOP]
        ],
    }


def build_customer(
    storage: Storage, tenant: str, window: Window, query: Mapping[str, str]
) -> dict[str, Any]:
    """One customer: daily cost per service and the latest events, from their events (the
    rollups have no per-customer daily split by service yet)."""
    customer = query.get("customer", "")
    daily: dict[tuple[int, str, str], int] = {}
    table: dict[tuple[int, str], list[int]] = {}
    costs: dict[str, int] = {}
    latest: list[tuple[int, int, StoredEvent]] = []
    scanned, after, partial = 0, None, False
    while customer:
        page = storage.list_events(
            tenant,
            client_customer_key=customer,
            since_us=window.since_us,
            until_us=window.until_us,
            after_id=after,
            limit=PAGE,
        )
        for event in page:
            day = event.timestamp_us - event.timestamp_us % US_PER_DAY
            cell = table.setdefault((day, event.service_id), [0, 0, 0])
            cell[0] += 1
            if event.cost_nanos is None:
                cell[2] += 1
            elif event.currency is not None:
                costs[event.currency] = costs.get(event.currency, 0) + event.cost_nanos
                daily_key = (day, event.service_id, event.currency)
                daily[daily_key] = daily.get(daily_key, 0) + event.cost_nanos
            item = (event.timestamp_us, event.id, event)
            if len(latest) < LATEST:
                heapq.heappush(latest, item)
            elif item[:2] > latest[0][:2]:
                heapq.heapreplace(latest, item)
        scanned += len(page)
        if len(page) < PAGE:
            break
        if scanned >= SCAN_LIMIT:
            partial = True
            break
        after = page[-1].id
    currency = query.get("currency") or main_currency(costs)
    points = {(day, service): n for (day, service, cur), n in daily.items() if cur == currency}
    services = sorted({service for _, service in table})
    day_window = Window(window.since_us, window.until_us, "day", True)
    return {
        "customer": customer,
        "currency": currency,
        "currencies": sorted(costs),
        "totals": money(costs),
        "events": sum(cell[0] for cell in table.values()),
        "unpriced": sum(cell[2] for cell in table.values()),
        "partial": partial,
        "scan_limit": SCAN_LIMIT,
        "chart": series(day_window.bucket_starts(), points, services),
        "days": [
            {
                "day": when(day)[:10],
                "service_id": service,
                "events": cell[0],
                "unpriced": cell[2],
                "cost": cost_text(points.get((day, service), 0)),
            }
            for (day, service), cell in sorted(table.items(), reverse=True)
        ],
        "latest": [_event_row(e) for _, _, e in sorted(latest, reverse=True)],
    }


def _event_row(event: StoredEvent) -> dict[str, Any]:
    return {
        "time": when(event.timestamp_us),
        "service_id": event.service_id,
        "response_id": event.response_id,
        "cost": None if event.cost_nanos is None else cost_text(event.cost_nanos),
        "currency": event.currency,
        "usage": _compact(event.usage),
        "context": _compact(event.context),
    }


def _compact(raw: bytes | None, limit: int = 240) -> str:
    """Stored JSON as one short line for a table cell."""
    if raw is None:
        return ""
    text = json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"
