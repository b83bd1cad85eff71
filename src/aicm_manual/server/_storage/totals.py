"""All-time totals per (tenant, customer, service, currency) for both backends: the table,
its fill from the daily rollups (a migration), and the delta rows ingest and re-pricing add
in the transaction that moves the daily rollups. ``/costs/summary`` over an open window
reads them instead of every daily row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# All-time totals per (tenant, customer, service, currency), both backends; the cost as
# sum(cost / 1e9) and sum(cost % 1e9) (integer division towards zero), put together by
# ``protocol.split_nanos``. Kept in the transaction that changes the daily rollups.
TOTALS_TABLE = """
    CREATE TABLE rollups_total (
        tenant TEXT NOT NULL,
        client_customer_key TEXT NOT NULL,
        service_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        events BIGINT NOT NULL,
        cost_units BIGINT NOT NULL,
        cost_rem BIGINT NOT NULL,
        unpriced BIGINT NOT NULL,
        PRIMARY KEY (tenant, client_customer_key, service_id, currency)
    );
"""
TOTALS_FROM_DAILY = (
    "SELECT tenant, client_customer_key, service_id, currency, sum(events),"
    " sum(cost_nanos / 1000000000), sum(cost_nanos % 1000000000), sum(unpriced)"
    " FROM rollups_daily GROUP BY tenant, client_customer_key, service_id, currency"
)
# Adds a delta row (tenant, customer, service, currency, events, units, remainder, unpriced).
ADD_TOTAL = (
    "INSERT INTO rollups_total VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant, client_customer_key, service_id, currency) DO UPDATE SET"
    " events = rollups_total.events + excluded.events,"
    " cost_units = rollups_total.cost_units + excluded.cost_units,"
    " cost_rem = rollups_total.cost_rem + excluded.cost_rem,"
    " unpriced = rollups_total.unpriced + excluded.unpriced"
)


def split_cost(cost: int) -> tuple[int, int]:
    """``cost`` as (cost / 1e9, cost % 1e9) the way SQL divides integers (towards zero)."""
    units = abs(cost) // 1_000_000_000
    units = units if cost >= 0 else -units
    return units, cost - units * 1_000_000_000


def total_deltas(daily: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Daily rollup deltas (tenant, day, customer, service, currency, events, cost, unpriced)
    summed over the days, as ADD_TOTAL rows in key order (the lock order of every writer)."""
    sums: dict[tuple[str, str, str, str], list[int]] = {}
    for tenant, _day, customer, service, currency, events, cost, unpriced in daily:
        row = sums.setdefault((tenant, customer, service, currency), [0, 0, 0, 0])
        units, rem = split_cost(cost)
        row[0] += events
        row[1] += units
        row[2] += rem
        row[3] += unpriced
    return [(*key, *row) for key, row in sorted(sums.items()) if any(row)]
