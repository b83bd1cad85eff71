"""Pricing health: the services whose events are stored unpriced, and why.

Reads ``storage.unpriced_report(tenant, since_us, until_us)``: rows (objects or
mappings) with service_id, events, first_seen_us, last_seen_us and reason. A storage
without it still shows the unpriced events per service from the cost summary, and says
that first/last seen and reasons need a newer collector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._storage.protocol import Storage
from ..window import Window, merge, share
from . import Unavailable, field, when

TEMPLATE = "pricing.html"
METHOD = "unpriced_report"


def build(
    storage: Storage, tenant: str, window: Window, query: Mapping[str, str]
) -> dict[str, Any]:
    lines = merge(storage.cost_summary(tenant, "service_id", window.since_us, window.until_us))
    by_service = {line.key: line for line in lines}
    reader = getattr(storage, METHOD, None)
    report: list[dict[str, Any]] | Unavailable
    if reader is None:
        report = Unavailable("First and last seen, and the reason each service is unpriced", METHOD)
    else:
        report = []
        for row in reader(tenant, window.since_us, window.until_us):
            service = field(row, "service_id")
            report.append(
                {
                    "service_id": service,
                    "events": field(row, "events"),
                    "first_seen": when(field(row, "first_seen_us")),
                    "last_seen": when(field(row, "last_seen_us")),
                    "reason": field(row, "reason") or "-",
                }
            )
    unpriced = sorted(
        (line for line in lines if line.unpriced), key=lambda line: (-line.unpriced, line.key or "")
    )
    return {
        "report": report,
        "unpriced": [
            {
                "service_id": line.key,
                "unpriced": line.unpriced,
                "events": line.events,
                "share": share(line.unpriced, line.events),
            }
            for line in unpriced
        ],
        "total_unpriced": sum(line.unpriced for line in lines),
        "known": len(by_service),
    }
