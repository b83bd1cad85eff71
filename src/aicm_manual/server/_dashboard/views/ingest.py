"""Ingest health: records accepted, duplicate, rejected and in conflict over time, and the
most frequent rejection reasons.

Reads ``storage.ingest_counts(tenant, since_us, until_us)`` (rows with hour_start_us,
status and count: the collector's per tenant and hour counters) and
``storage.rejection_reasons(tenant, since_us, until_us, limit)`` (rows with reason and
count, most frequent first). A storage without them gets a panel saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..._storage.protocol import US_PER_DAY, Storage
from ..window import Window
from . import Unavailable, field, when

TEMPLATE = "ingest.html"
COUNTS, REASONS = "ingest_counts", "rejection_reasons"
STATUSES = ("accepted", "duplicate", "rejected", "conflict")


def build(
    storage: Storage, tenant: str, window: Window, query: Mapping[str, str]
) -> dict[str, Any]:
    counts_reader = getattr(storage, COUNTS, None)
    reasons_reader = getattr(storage, REASONS, None)
    context: dict[str, Any] = {"statuses": STATUSES}
    if counts_reader is None:
        context["counts"] = Unavailable("Record counts by status and hour", COUNTS)
    else:
        step = 3_600_000_000 if window.bucket == "hour" else US_PER_DAY
        buckets: dict[int, dict[str, int]] = {}
        totals = dict.fromkeys(STATUSES, 0)
        for row in counts_reader(tenant, window.since_us, window.until_us):
            start = int(field(row, "hour_start_us"))
            status, n = str(field(row, "status")), int(field(row, "count"))
            bucket = buckets.setdefault(start - start % step, dict.fromkeys(STATUSES, 0))
            bucket[status] = bucket.get(status, 0) + n
            totals[status] = totals.get(status, 0) + n
        starts = window.bucket_starts()
        context["counts"] = {
            "totals": totals,
            "rows": [{"start": when(start), **values} for start, values in sorted(buckets.items())],
            "chart": {
                "x": [s // 1_000_000 for s in starts],
                "series": {
                    status: [float(buckets.get(s, {}).get(status, 0)) for s in starts]
                    for status in STATUSES
                },
            },
        }
    if reasons_reader is None:
        context["reasons"] = Unavailable("The most frequent rejection reasons", REASONS)
    else:
        context["reasons"] = [
            {"reason": field(row, "reason"), "count": field(row, "count")}
            for row in reasons_reader(tenant, window.since_us, window.until_us, 20)
        ]
    return context
