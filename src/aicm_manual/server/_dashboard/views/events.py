"""Events: the tenant's events filtered by service, customer and window, a page at a time
(keyset paging on the storage order, as ``/events``), with CSV and JSON Lines downloads of
the same filter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._storage.protocol import Storage
from ..window import Window, WindowError, merge
from .customers import _event_row

TEMPLATE = "events.html"
DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # a page stays under 200 KB with its assets


def filters(query: Mapping[str, str]) -> dict[str, str | None]:
    """The filters a URL carries, named as the export and ``/events`` name them."""
    return {
        "service_id": query.get("service_id", "").strip() or None,
        "client_customer_key": query.get("client_customer_key", "").strip() or None,
    }


def _number(text: str | None, name: str, default: int, high: int) -> int:
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= high:
        raise WindowError(f"{name} {text!r} must be a whole number from 1 to {high}")
    return int(text)


def build(
    storage: Storage, tenant: str, window: Window, query: Mapping[str, str]
) -> dict[str, Any]:
    chosen = filters(query)
    limit = _number(query.get("limit"), "limit", DEFAULT_LIMIT, MAX_LIMIT)
    cursor = _number(query.get("cursor"), "cursor", 0, 2**62) if query.get("cursor") else None
    page = storage.list_events(
        tenant,
        service_id=chosen["service_id"],
        client_customer_key=chosen["client_customer_key"],
        since_us=window.since_us,
        until_us=window.until_us,
        after_id=cursor,
        limit=limit + 1,
    )
    more = len(page) > limit
    page = page[:limit]
    services = merge(storage.cost_summary(tenant, "service_id", window.since_us, window.until_us))
    base = {k: v for k, v in chosen.items() if v}
    if limit != DEFAULT_LIMIT:
        base["limit"] = str(limit)
    return {
        "filters": chosen,
        "limit": limit,
        "cursor": cursor,
        "events": [
            {**_event_row(e), "customer": e.client_customer_key, "price_source": e.price_source}
            for e in page
        ],
        "next_query": window.query(**base, cursor=str(page[-1].id)) if more and page else None,
        "first_query": window.query(**base) if cursor else None,
        "export_query": window.query(**chosen),
        "service_ids": sorted(line.key for line in services if line.key),
    }
