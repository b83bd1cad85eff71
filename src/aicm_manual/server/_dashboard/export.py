"""Events out as CSV or JSON Lines, streamed page by page with bounded memory.

    with open("events.csv", "wb") as out:
        export_events(storage, "acme", "csv", since_us, until_us, {"service_id": None}, out)

Each JSON line is the event exactly as ``GET /api/v1/events`` shows it; a CSV row has the
same fields, with ``usage`` and ``context`` as compact JSON text and ``priced`` as
``true``/``false``. Events come in storage order (the keyset ``/events`` pages by), a
thousand at a time, so an export of any size holds one page in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, Literal

from .._storage.protocol import Storage, StoredEvent

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
FILTERS = ("service_id", "client_customer_key")
COLUMNS = (
    "response_id",
    "config_id",
    "service_id",
    "timestamp",
    "received_at",
    "client_customer_key",
    "priced",
    "cost",
    "currency",
    "price_source",
    "usage",
    "context",
    "cursor",
)
PAGE = 1000
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def event_json(event: StoredEvent) -> dict[str, Any]:
    """The event as the API shows it (one definition: the API's own)."""
    import msgspec

    from .._answers import event as api_event

    shown: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(api_event(event)))
    return shown


def csv_row(event: dict[str, Any]) -> list[str]:
    """An event (as ``event_json`` gives it) as CSV cells in ``COLUMNS`` order."""
    cells = []
    for column in COLUMNS:
        value = event[column]
        if column in ("usage", "context"):
            value = "" if value is None else json.dumps(value, separators=(",", ":"))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        cells.append("" if value is None else str(value))
    return cells


def iter_export(
    storage: Storage,
    tenant: str,
    fmt: Format,
    since_us: int | None,
    until_us: int | None,
    filters: Mapping[str, str | None],
) -> Iterator[bytes]:
    """The export as chunks of bytes, one per page of events."""
    for chunk, _ in _pages(storage, tenant, fmt, since_us, until_us, filters):
        yield chunk


def _pages(
    storage: Storage,
    tenant: str,
    fmt: Format,
    since_us: int | None,
    until_us: int | None,
    filters: Mapping[str, str | None],
) -> Iterator[tuple[bytes, int]]:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} must be csv or jsonl")
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise ValueError(f"unknown filter(s) {sorted(unknown)}; known: {list(FILTERS)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if fmt == "csv":
        writer.writerow(COLUMNS)
    after: int | None = None
    while True:
        page = storage.list_events(
            tenant,
            service_id=filters.get("service_id") or None,
            client_customer_key=filters.get("client_customer_key") or None,
            since_us=since_us,
            until_us=until_us,
            after_id=after,
            limit=PAGE,
        )
        for event in page:
            shown = event_json(event)
            if fmt == "csv":
                writer.writerow(csv_row(shown))
            else:
                buffer.write(json.dumps(shown, ensure_ascii=False, separators=(",", ":")))
                buffer.write("\n")
        if buffer.tell():
            yield buffer.getvalue().encode(), len(page)
            buffer.seek(0)
            buffer.truncate()
        if len(page) < PAGE:
            return
        after = page[-1].id


def export_events(
    storage: Storage,
    tenant: str,
    fmt: Format,
    since_us: int | None,
    until_us: int | None,
    filters: Mapping[str, str | None],
    out: BinaryIO,
) -> int:
    """Write the tenant's events in the window (``since`` inclusive, ``until`` exclusive)
    matching ``filters`` to ``out`` as ``fmt``; returns how many events it wrote."""
    count = 0
    for chunk, events in _pages(storage, tenant, fmt, since_us, until_us, filters):
        out.write(chunk)
        count += events
    return count
