"""What the storage hands back, shaped into the collector's answers (``_wire``). Pure.

json_response(summary(storage.cost_summary(tenant, "service_id", None, None), "service_id"))
"""

from __future__ import annotations

from typing import Any

from msgspec import Raw

from .._records import format_timestamp_us
from ._ingest import cost_text
from ._storage.keys import KeyInfo
from ._storage.protocol import StoredEvent
from ._storage.protocol import SummaryRow as StoredSummaryRow
from ._storage.protocol import UsageRow as StoredUsageRow
from ._wire import Event, KeyOut, Summary, SummaryRow, UsageAnswer, UsageRow


def event(e: StoredEvent) -> Event:
    return Event(
        response_id=e.response_id,
        config_id=e.config_id,
        service_id=e.service_id,
        timestamp=format_timestamp_us(e.timestamp_us),
        received_at=format_timestamp_us(e.received_us),
        client_customer_key=e.client_customer_key,
        usage=Raw(e.usage),  # stored as the JSON it is sent as: no decoding and re-encoding
        context=None if e.context is None else Raw(e.context),
        priced=e.cost_nanos is not None,
        cost=None if e.cost_nanos is None else cost_text(e.cost_nanos),
        currency=e.currency,
        price_source=e.price_source,
        cursor=str(e.id),
    )


def key_out(k: KeyInfo) -> KeyOut:
    """A stored key as the API and ``keys list --json`` show it: never the key itself."""
    return KeyOut(
        key=k.abbreviation,
        tenant=k.tenant,
        scopes=sorted(k.scopes),  # type: ignore[arg-type]  # SCOPES: the Literal's values
        created_at=_seconds_text(k.created_at),
        last_used_at=None if k.last_used_at is None else _seconds_text(k.last_used_at),
    )


def _seconds_text(seconds: float) -> str:
    return format_timestamp_us(int(seconds * 1_000_000))


def summary(rows: list[StoredSummaryRow], group_by: str) -> Summary:
    """One row per key, costs summed per currency (a string when one currency is in play,
    else one per currency), and the total."""
    merged: dict[str | None, tuple[list[int], dict[str, int]]] = {}
    totals: dict[str, int] = {}
    for r in rows:
        counts, costs = merged.setdefault(r.key, ([0, 0], {}))
        counts[0] += r.events
        counts[1] += r.unpriced
        if r.currency is not None:
            costs[r.currency] = costs.get(r.currency, 0) + r.cost_nanos
            totals[r.currency] = totals.get(r.currency, 0) + r.cost_nanos
    single = next(iter(totals)) if len(totals) == 1 else None
    out: list[SummaryRow] = []
    for key in sorted(merged, key=lambda k: (k is None, k or "")):
        (events, unpriced), costs = merged[key]
        cost: Any
        if single is not None or not costs:
            cost = cost_text(costs.get(single or "", 0))
        else:
            cost = {cur: cost_text(n) for cur, n in sorted(costs.items())}
        out.append(SummaryRow(events, cost, unpriced, **{group_by: key}))
    if len(totals) <= 1:
        return Summary(out, cost_text(totals.get(single or "", 0)), single or "USD")
    return Summary(out, {cur: cost_text(n) for cur, n in sorted(totals.items())}, None)


def usage_answer(rows: list[StoredUsageRow], bucket: Any, group_by: Any) -> UsageAnswer:
    return UsageAnswer(
        bucket,
        group_by,
        [
            UsageRow(
                start=format_timestamp_us(r.bucket_start_us),
                events=r.events,
                cost=cost_text(r.cost_nanos),
                currency=r.currency,
                unpriced=r.unpriced,
                **{group_by: r.key},
            )
            for r in rows
        ],
    )
