"""The collector's storage seam: what a backend (SQLite, PostgreSQL) must do.

Pure: types and a protocol, no I/O. Contract, shared by every backend and checked by the
same tests:

- ``ingest(events)`` stores each event at most once per (tenant, service_id, response_id)
  and answers, in order, ``accepted`` (new), ``duplicate`` (same payload hash) or
  ``conflict`` (same key, other payload). It returns only after the accepted events are
  committed, and updates the daily rollups in the same transaction. Safe when several
  collector processes ingest the same events at once. An event the backend cannot keep
  for a reason of its data is answered ``Refused(reason)`` alone (``isolate``): its
  neighbours are stored; ``StorageError`` is kept for the storage being unavailable.
- A daily rollup's cost (tenant, day, customer, service, currency) fits in a signed
  64-bit integer of nano-units; the event that would carry it past is ``Refused`` with
  ``SUM_OUT_OF_RANGE``. Sums over several rollups or events are exact (no 64-bit limit).
- Costs are integers in nano-units of their currency (1e-9), never floats.
- Every query is scoped to one tenant.
- ``config_id`` is None for a record no config lists (stored unpriced). Both backends
  keep it as '' in the events table (no config id is empty), so that needed no migration,
  and hand it back as None.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from ...errors import StorageError

if TYPE_CHECKING:
    from .keys import KeyInfo
    from .ledger import Ledger

IngestStatus = Literal["accepted", "duplicate", "conflict"]
SUM_OUT_OF_RANGE = (
    "the costs of this customer and service on this UTC day would sum past"
    " 9223372036.854775807 of the currency, the most one daily total holds"
)
GroupBy = Literal["client_customer_key", "service_id"]
Bucket = Literal["hour", "day", "month"]
SCOPES = frozenset({"ingest", "read", "admin"})
US_PER_DAY = 86_400_000_000
_C = TypeVar("_C", bound=type)


@dataclass(frozen=True, slots=True)
class Refused:
    """An event the storage could not keep for a reason of its data (answered rejected)."""

    reason: str


IngestResult = IngestStatus | Refused


def isolate(
    events: Sequence[NewEvent],
    store: Callable[[Sequence[NewEvent]], list[IngestResult]],
    refusal: Callable[[Exception], str | None],
) -> list[IngestResult]:
    """``store(events)``; if it fails for a data reason (``refusal`` names it, None for
    anything else, which is raised), the events are stored in halves, down to the one
    event that fails, which alone is Refused. Each half commits on its own, in order, so a
    key repeated across halves is the later half's duplicate, as in one batch."""
    try:
        return store(events)
    except Exception as exc:
        reason = refusal(exc)
        if reason is None:
            raise
        if len(events) == 1:
            return [Refused(reason)]
    mid = len(events) // 2
    return isolate(events[:mid], store, refusal) + isolate(events[mid:], store, refusal)


def split_nanos(hi: int | None, lo: int | None) -> int:
    """A sum a backend returned as sum(x / 1e9) and sum(x % 1e9) (each far from 64-bit
    overflow), put together exactly."""
    return (hi or 0) * 1_000_000_000 + (lo or 0)


def translating(driver_error: type[BaseException]) -> Callable[[_C], _C]:
    """Class decorator for a backend: its constructor and public methods raise
    ``StorageError`` (chained) for the driver's own errors, so nothing above the backend
    ever sees ``sqlite3`` or ``psycopg`` exceptions."""

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except driver_error as exc:
                raise StorageError(f"{name}: {exc}") from exc

        return call

    def decorate(cls: _C) -> _C:
        # Inherited methods too (the report mixin, a shared ledger): the nearest definition
        # of each name is wrapped, once, on the decorated class.
        seen: set[str] = set()
        for klass in cls.__mro__[:-1]:
            for name, member in list(vars(klass).items()):
                if (
                    name in seen
                    or not callable(member)
                    or isinstance(member, (type, staticmethod, classmethod))
                ):
                    continue
                seen.add(name)
                if name == "__init__" or not name.startswith("_"):
                    setattr(cls, name, wrap(name.strip("_"), member))
        return cls

    return decorate


@dataclass(slots=True)  # not frozen: a frozen init costs a microsecond per record
class NewEvent:
    """One validated, priced record ready to store (treat as read-only)."""

    tenant: str
    config_id: str | None  # None: no config lists the service
    service_id: str
    response_id: str
    timestamp_us: int  # event time, microseconds since the epoch (UTC)
    client_customer_key: str | None
    usage: bytes  # the usage payload as JSON
    context: bytes | None  # the context as JSON
    payload_hash: str  # a hash of what the record bills: tells duplicate from conflict
    cost_nanos: int | None  # None: not priced (unknown service or price); stored anyway
    currency: str | None
    price_source: str | None  # what priced it, e.g. "unit" or "genai-prices 0.2.3 openai/gpt-4o"
    # The hash events stored by earlier versions carry (the whole record as sent): a stored
    # event with it is the same record too.
    earlier_hash: str | None = None

    def same_as(self, stored_hash: str) -> bool:
        """Whether an event stored with ``stored_hash`` is this record (a duplicate)."""
        return stored_hash == self.payload_hash or stored_hash == self.earlier_hash


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int  # storage order; the keyset for pagination
    tenant: str
    config_id: str | None
    service_id: str
    response_id: str
    timestamp_us: int
    received_us: int
    client_customer_key: str | None
    usage: bytes
    context: bytes | None
    payload_hash: str
    cost_nanos: int | None
    currency: str | None
    price_source: str | None


@dataclass(frozen=True, slots=True)
class SummaryRow:
    key: str | None  # the customer key or service id (None: records without a customer)
    currency: str | None  # None for the unpriced part
    events: int
    cost_nanos: int
    unpriced: int  # events in this row that carry no cost


@dataclass(frozen=True, slots=True)
class UsageRow:
    bucket_start_us: int
    key: str | None
    currency: str | None
    events: int
    cost_nanos: int
    unpriced: int


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    tenant: str
    scopes: frozenset[str]


_NO_KEY = ""  # rollups keep "no customer" and "no currency" as '' inside the primary key


def rollup_key(event: NewEvent) -> tuple[int, str, str, str]:
    return (
        event.timestamp_us // US_PER_DAY,
        event.client_customer_key or _NO_KEY,
        event.service_id,
        (event.currency or _NO_KEY) if event.cost_nanos is not None else _NO_KEY,
    )


def rollup_deltas(
    accepted: Sequence[NewEvent],
) -> list[tuple[tuple[int, str, str, str], int, int, int]]:
    """(key, events, cost, unpriced) per rollup row, in a fixed key order: a backend that
    locks rows (PostgreSQL) then always takes them in the same order and cannot deadlock."""
    sums: dict[tuple[int, str, str, str], list[int]] = {}
    for event in accepted:
        row = sums.setdefault(rollup_key(event), [0, 0, 0])
        row[0] += 1
        row[1] += event.cost_nanos or 0
        row[2] += event.cost_nanos is None
    return [(key, *values) for key, values in sorted(sums.items())]  # type: ignore[misc]


def whole_days(us: int | None) -> bool:
    """An open bound or a UTC midnight: a window the daily rollups can answer."""
    return us is None or us % US_PER_DAY == 0


def event_window(
    tenant: str,
    since_us: int | None,
    until_us: int | None,
    mark: str,
    *,
    service_id: str | None = None,
    client_customer_key: str | None = None,
    after_id: int | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause and arguments selecting a tenant's events (``mark``: "?" or "%s");
    ``since`` is inclusive, ``until`` exclusive, ``after_id`` the pagination keyset."""
    where = [f"tenant = {mark}"]
    args: list[Any] = [tenant]
    for clause, value in (
        ("service_id =", service_id),
        ("client_customer_key =", client_customer_key),
        ("timestamp_us >=", since_us),
        ("timestamp_us <", until_us),
        ("id >", after_id),
    ):
        if value is not None:
            where.append(f"{clause} {mark}")
            args.append(value)
    return " AND ".join(where), args


class Storage(Protocol):
    # Tenant price rules, budgets, webhooks and their outbox: one SQL text for both backends.
    ledger: Ledger

    def ingest(self, events: Sequence[NewEvent]) -> list[IngestResult]: ...

    def get_events(self, tenant: str, response_id: str) -> list[StoredEvent]:
        """Every event of the tenant with this response_id (one per service)."""
        ...

    def list_events(
        self,
        tenant: str,
        *,
        service_id: str | None = None,
        client_customer_key: str | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        """Events in storage order after ``after_id`` (keyset pagination); the time window
        is on the event time, ``since`` inclusive and ``until`` exclusive."""
        ...

    def cost_summary(
        self, tenant: str, group_by: GroupBy, since_us: int | None, until_us: int | None
    ) -> list[SummaryRow]:
        """Cost per key and currency; served from the daily rollups when the window is
        whole days (or open), from the events otherwise."""
        ...

    def usage(
        self,
        tenant: str,
        bucket: Bucket,
        group_by: GroupBy,
        since_us: int | None,
        until_us: int | None,
    ) -> list[UsageRow]: ...

    def put_key(self, key_hash: str, tenant: str, scopes: frozenset[str]) -> None:
        """Register an API key by its SHA-256 (the key itself is never stored), or replace
        its scopes; ``keys.KeyTenantError`` if it is bound to another tenant."""
        ...

    def find_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    def list_keys(self, tenant: str | None = None) -> list[KeyInfo]:
        """Every key (of ``tenant`` when given), never the key itself."""
        ...

    def revoke_key(self, key_hash: str, tenant: str | None = None) -> bool:
        """Delete a key (only if it is ``tenant``'s, when given); whether one was."""
        ...

    def touch_key(self, key_hash: str) -> None:
        """Record that the key was used now (``last_used_at``)."""
        ...

    def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""
        ...

    def close(self) -> None: ...
