"""Pricing over stored events: the unpriced report, and re-pricing under today's rules with
the daily rollups moved exactly (one transaction per batch of events).

    rows = unpriced_report(ledger, "tenant-a", since_us, until_us)
    result = reprice(ledger, "tenant-a", None, since_us, until_us, True, pricer_quote)

Re-pricing is idempotent: an event whose cost, currency and price source come out the same
is left alone, so a second run changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..._records import format_timestamp_us
from ...errors import AicmError
from .ledger import Ledger
from .protocol import US_PER_DAY
from .totals import ADD_TOTAL, total_deltas

INT64_MAX = 2**63 - 1


class RepriceOverflow(AicmError, ValueError):
    """Re-pricing would carry a day's cost sum past 64 bits (SQLite would turn it into a
    float, PostgreSQL refuse it): the batch is not applied; earlier batches stay."""


@dataclass(frozen=True, slots=True)
class UnpricedRow:
    service_id: str
    events: int
    first_seen_us: int
    last_seen_us: int
    reason: str


@dataclass(frozen=True, slots=True)
class Repriced:
    repriced: int  # events whose cost, currency or price source changed
    cost_before: dict[str, int]  # per currency, over the events looked at
    cost_after: dict[str, int]


Quote = Callable[[str | None, str, dict[str, Any], int, str], tuple[int | None, str | None, str]]


def unpriced_report(
    ledger: Ledger, tenant: str, since_us: int | None, until_us: int | None
) -> list[UnpricedRow]:
    """Unpriced events per service and reason (the reason kept as their price source)."""
    where, args = _window(tenant, since_us, until_us)
    sql = ledger.sql(
        "SELECT service_id, count(*), min(timestamp_us), max(timestamp_us),"
        " coalesce(price_source, '') FROM events WHERE "
        + where
        + " AND cost_nanos IS NULL GROUP BY service_id, coalesce(price_source, '')"
        " ORDER BY 2 DESC, 1"
    )
    rows = ledger.read(lambda db: db.execute(sql, args).fetchall())
    return [
        UnpricedRow(r[0], int(r[1]), int(r[2]), int(r[3]), r[4] or "no reason recorded")
        for r in rows
    ]


def reprice(
    ledger: Ledger,
    tenant: str,
    service_id: str | None,
    since_us: int | None,
    until_us: int | None,
    only_unpriced: bool,
    quote: Quote,
    batch: int = 5_000,
) -> Repriced:
    """Price stored events again with ``quote`` (config_id, service_id, usage, timestamp,
    tenant) -> (cost, currency, source or unpriced reason), moving each changed event's
    amount between rollup rows in the same transaction, a batch at a time. Running it
    again changes nothing."""
    where, args = _window(tenant, since_us, until_us)
    if service_id is not None:
        where += " AND service_id = ?"
        args += (service_id,)
    if only_unpriced:
        where += " AND cost_nanos IS NULL"
    select = ledger.sql(
        "SELECT id, config_id, service_id, timestamp_us, client_customer_key, usage,"
        " cost_nanos, currency, price_source FROM events"
        + ledger.rowid_order
        + " WHERE "
        + where
        + " AND id > ? ORDER BY id LIMIT ?"
    )
    update = ledger.sql(
        "UPDATE events SET cost_nanos = ?, currency = ?, price_source = ? WHERE id = ?"
    )
    repriced = 0
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    last_id = 0

    def page(db: Any) -> list[Any]:
        found: list[Any] = db.execute(select, (*args, last_id, batch)).fetchall()
        return found

    while True:
        rows = ledger.read(page)
        if not rows:
            break
        last_id = rows[-1][0]
        changes: list[tuple[Any, ...]] = []
        for row in rows:
            event_id, config_id, service, at, customer, usage, cost, currency, source = row
            if cost is not None:
                before[currency] = before.get(currency, 0) + cost
            new_cost, new_currency, new_source = quote(
                config_id or None, service, _decode(usage), at, tenant
            )
            if new_cost is not None and new_currency is not None:
                after[new_currency] = after.get(new_currency, 0) + new_cost
            if (new_cost, new_currency if new_cost is not None else None, new_source) != (
                cost,
                currency if cost is not None else None,
                source,
            ):
                changes.append(
                    (
                        event_id,
                        at,
                        customer,
                        service,
                        cost,
                        currency,
                        new_cost,
                        new_currency,
                        new_source,
                    )
                )
        if changes:

            def apply(db: Any, changes: list[tuple[Any, ...]] = changes) -> None:
                _apply_reprice(ledger, db, changes, update, tenant)

            ledger.write(apply)
            repriced += len(changes)
    return Repriced(repriced, before, after)


def _apply_reprice(
    ledger: Ledger, db: Any, changes: list[tuple[Any, ...]], update: str, tenant: str
) -> None:
    move = ledger.sql(
        "INSERT INTO rollups_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (tenant, day, client_customer_key, service_id, currency) DO UPDATE SET"
        " events = rollups_daily.events + excluded.events,"
        " cost_nanos = rollups_daily.cost_nanos + excluded.cost_nanos,"
        " unpriced = rollups_daily.unpriced + excluded.unpriced"
    )
    emptied = ledger.sql(
        "DELETE FROM rollups_daily WHERE tenant = ? AND day = ? AND client_customer_key = ?"
        " AND service_id = ? AND currency = ? AND events = 0"
    )
    emptied_total = ledger.sql(
        "DELETE FROM rollups_total WHERE tenant = ? AND client_customer_key = ?"
        " AND service_id = ? AND currency = ? AND events = 0"
    )
    # Net rollup deltas per row, so a batch costs one statement per rollup row it touches.
    deltas: dict[tuple[int, str, str, str], list[int]] = {}
    updates = []
    for event_id, at, customer, service, cost, currency, new_cost, new_cur, src in changes:
        day, who = _floor_day(at), customer or ""
        old = deltas.setdefault(
            (day, who, service, (currency or "") if cost is not None else ""), [0, 0, 0]
        )
        old[0] -= 1
        old[1] -= cost or 0
        old[2] -= cost is None
        new_key = (new_cur or "") if new_cost is not None else ""
        new = deltas.setdefault((day, who, service, new_key), [0, 0, 0])
        new[0] += 1
        new[1] += new_cost or 0
        new[2] += new_cost is None
        updates.append((new_cost, new_cur if new_cost is not None else None, src, event_id))
    moves: list[tuple[Any, ...]] = [
        (tenant, *key, *delta) for key, delta in sorted(deltas.items()) if any(delta)
    ]
    totals = total_deltas(moves)
    current = ledger.sql(
        "SELECT cost_nanos FROM rollups_daily WHERE tenant = ? AND day = ?"
        " AND client_customer_key = ? AND service_id = ? AND currency = ?"
    )
    with ledger.atomic(db):
        cursor = db.cursor()
        for change in moves:  # checked inside the transaction that applies them
            if change[6]:
                found = cursor.execute(current, change[:5]).fetchone()
                after = (found[0] if found else 0) + change[6]
                if not -INT64_MAX - 1 <= after <= INT64_MAX:
                    _, day, who, service, currency = change[:5]
                    raise RepriceOverflow(
                        f"re-pricing would carry the {currency} cost of {service!r} for"
                        f" {who or 'no customer'!r} on {format_timestamp_us(day * US_PER_DAY)[:10]}"
                        " past the 64-bit limit of a day's sum (9,223,372,036.854775807);"
                        " this batch was not applied (earlier batches stay re-priced)"
                    )
        cursor.executemany(update, updates)
        if moves:
            cursor.executemany(move, moves)
            cursor.executemany(emptied, [m[:5] for m in moves])  # rows left with no event
        if totals:  # after the daily rows, as ingest: one lock order
            cursor.executemany(ledger.sql(ADD_TOTAL), totals)
            cursor.executemany(emptied_total, [t[:4] for t in totals])


def _window(tenant: str, since_us: int | None, until_us: int | None) -> tuple[str, tuple[Any, ...]]:
    where = "tenant = ?"
    bounds: list[Any] = [tenant]
    if since_us is not None:
        where += " AND timestamp_us >= ?"
        bounds.append(since_us)
    if until_us is not None:
        where += " AND timestamp_us < ?"
        bounds.append(until_us)
    return where, tuple(bounds)


def _floor_day(timestamp_us: int) -> int:
    return timestamp_us // US_PER_DAY


_decoder = msgspec.json.Decoder()


def _decode(usage: bytes | str | memoryview) -> Any:
    return _decoder.decode(usage if isinstance(usage, (bytes, str)) else bytes(usage))
