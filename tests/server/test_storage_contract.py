"""The Storage contract (server/_storage.py), checked the same way against every backend.

Each test runs on a real SQLite file and on the local PostgreSQL, in a scratch schema that is
dropped afterwards. AICM_TEST_POSTGRES_URL points at another server; when none is reachable
the PostgreSQL runs are skipped, except under CI where that is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest

from aicm_manual.server._storage.keys import KeyTenantError
from aicm_manual.server._storage.protocol import (
    SUM_OUT_OF_RANGE,
    US_PER_DAY,
    ApiKeyRecord,
    NewEvent,
    Refused,
    Storage,
    SummaryRow,
    UsageRow,
)
from aicm_manual.server._storage.sqlite import SqliteStorage

POSTGRES_URL = os.environ.get("AICM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NOW = 1_795_500_000.25  # the injected clock: received_us is this in microseconds
HOUR = 3_600_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def us(year: int, month: int, day: int, hour: int = 0, *rest: int) -> int:
    """Microseconds since the epoch of a UTC date and time."""
    moment = datetime(year, month, day, hour, *rest, tzinfo=timezone.utc)
    return (moment - EPOCH) // timedelta(microseconds=1)


DAY0 = us(2026, 11, 24)  # a whole UTC day


def ev(
    rid: str,
    *,
    tenant: str = "tenant-a",
    service: str = "openai::gpt-4o",
    at: int = DAY0 + 10 * HOUR,
    customer: str | None = "acme",
    cost: int | None = 1_000,
    currency: str | None = "USD",
    usage: bytes = b'{"input_tokens": 1}',
    context: bytes | None = None,
) -> NewEvent:
    """A priced event; its payload_hash covers the payload, so a changed usage conflicts."""
    digest = hashlib.sha256(repr((rid, service, at, customer, usage, context)).encode()).hexdigest()
    return NewEvent(
        tenant=tenant,
        config_id="openai-chat",
        service_id=service,
        response_id=rid,
        timestamp_us=at,
        client_customer_key=customer,
        usage=usage,
        context=context,
        payload_hash=digest,
        cost_nanos=cost,
        currency=currency if cost is not None else None,
        price_source="unit" if cost is not None else None,
    )


# -- backends -------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    factory: Callable[[], Storage]
    schema: str | None = None  # PostgreSQL: the scratch schema
    opened: list[Storage] = field(default_factory=list)

    def open(self) -> Storage:
        storage = self.factory()
        self.opened.append(storage)
        return storage


@pytest.fixture(scope="session")
def postgres_url() -> str:
    psycopg = pytest.importorskip("psycopg")
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {exc}")
    return POSTGRES_URL


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name, dropped (with everything in it) after the test."""
    schema = f"aicm_test_{uuid4().hex[:12]}"
    yield schema
    drop_schema(postgres_url, schema)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "x.db"
        b = Backend("sqlite", lambda: SqliteStorage(path, clock=lambda: NOW))
    else:
        from aicm_manual.server._storage.postgres import PostgresStorage

        url, schema = request.getfixturevalue("postgres_url"), request.getfixturevalue("pg_schema")
        b = Backend(
            "postgres", lambda: PostgresStorage(url, schema=schema, clock=lambda: NOW), schema
        )
    yield b
    for storage in b.opened:
        storage.close()


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.open()


# -- ingest ---------------------------------------------------------------------------------


def test_accepted_then_duplicate_then_conflict(storage: Storage) -> None:
    assert storage.ingest([ev("r1"), ev("r2")]) == ["accepted", "accepted"]
    changed = ev("r2", usage=b'{"input_tokens": 2}')
    assert storage.ingest([ev("r1"), changed]) == ["duplicate", "conflict"]
    [stored] = storage.get_events("tenant-a", "r2")
    assert stored.usage == b'{"input_tokens": 1}'  # a conflict never overwrites


def test_repeats_within_one_batch_are_answered_in_order(storage: Storage) -> None:
    """The first occurrence is stored; later ones compare against it."""
    other = ev("r1", usage=b'{"input_tokens": 9}')
    batch = [ev("r1"), ev("r2"), ev("r1"), other, ev("r2"), other]
    statuses = storage.ingest(batch)
    assert statuses == ["accepted", "accepted", "duplicate", "conflict", "duplicate", "conflict"]
    assert [e.response_id for e in storage.list_events("tenant-a")] == ["r1", "r2"]
    [row] = storage.cost_summary("tenant-a", "service_id", None, None)
    assert (row.events, row.cost_nanos) == (2, 2_000)  # rollups count stored events only


def test_a_conflict_first_seen_in_the_batch_against_a_stored_record(storage: Storage) -> None:
    storage.ingest([ev("r1")])
    other = ev("r1", usage=b"{}")
    assert storage.ingest([other, ev("r1"), other]) == ["conflict", "duplicate", "conflict"]


def test_key_is_tenant_service_and_response_id(storage: Storage) -> None:
    batch = [ev("r1"), ev("r1", service="openai::gpt-4o-mini"), ev("r1", tenant="tenant-b")]
    assert storage.ingest(batch) == ["accepted"] * 3
    assert [e.service_id for e in storage.get_events("tenant-a", "r1")] == [
        "openai::gpt-4o",
        "openai::gpt-4o-mini",
    ]
    assert len(storage.get_events("tenant-b", "r1")) == 1


def test_empty_batch_stores_nothing(storage: Storage) -> None:
    assert storage.ingest([]) == []
    assert storage.list_events("tenant-a") == []


def test_get_events_round_trips_every_field(storage: Storage) -> None:
    usage = '{"model": "gpt-4o", "note": "naïve ✓"}'.encode()
    event = ev("r1", usage=usage, context=b'{"trace": "\\u0000x"}', customer=None)
    unpriced = ev("r2", cost=None)
    storage.ingest([event, unpriced])
    [stored] = storage.get_events("tenant-a", "r1")
    assert stored.id > 0
    assert (stored.received_us, stored.timestamp_us) == (int(NOW * 1_000_000), event.timestamp_us)
    fields = ["tenant", "config_id", "service_id", "response_id", "client_customer_key"]
    fields += ["usage", "context", "payload_hash", "cost_nanos", "currency", "price_source"]
    for name in fields:
        assert getattr(stored, name) == getattr(event, name), name
    assert isinstance(stored.usage, bytes)
    [stored2] = storage.get_events("tenant-a", "r2")
    assert (stored2.cost_nanos, stored2.currency, stored2.price_source) == (None, None, None)
    assert storage.get_events("tenant-a", "nope") == []


def test_an_event_without_a_config_comes_back_without_one(storage: Storage) -> None:
    no_config = replace(ev("r1", service="acme::anything", cost=None), config_id=None)
    assert storage.ingest([no_config, ev("r2")]) == ["accepted", "accepted"]
    [stored] = storage.get_events("tenant-a", "r1")
    assert (stored.config_id, stored.service_id, stored.cost_nanos) == (
        None,
        "acme::anything",
        None,
    )
    assert [e.config_id for e in storage.list_events("tenant-a")] == [None, "openai-chat"]
    assert storage.ingest([no_config]) == ["duplicate"]
    by_service = storage.cost_summary("tenant-a", "service_id", None, None)
    assert SummaryRow("acme::anything", None, 1, 0, 1) in by_service


def test_one_batch_for_several_tenants_updates_each_tenants_rollups(storage: Storage) -> None:
    storage.ingest([ev("r1"), ev("r1", tenant="tenant-b", cost=7), ev("r2", cost=5)])
    assert storage.cost_summary("tenant-a", "service_id", None, None) == [
        SummaryRow("openai::gpt-4o", "USD", 2, 1_005, 0)
    ]
    assert storage.cost_summary("tenant-b", "service_id", None, None) == [
        SummaryRow("openai::gpt-4o", "USD", 1, 7, 0)
    ]


# -- tenants --------------------------------------------------------------------------------


def test_every_query_is_scoped_to_one_tenant(storage: Storage) -> None:
    storage.ingest([ev("r1"), ev("r2", at=DAY0 + 30 * HOUR)])
    storage.ingest([ev("r1", tenant="tenant-b", cost=50), ev("r3", tenant="tenant-b", cost=50)])

    assert [e.tenant for e in storage.get_events("tenant-a", "r1")] == ["tenant-a"]
    assert storage.get_events("tenant-a", "r3") == []
    assert {e.tenant for e in storage.list_events("tenant-a")} == {"tenant-a"}
    assert len(storage.list_events("tenant-a")) == 2
    whole = storage.cost_summary("tenant-a", "client_customer_key", None, None)
    partial = storage.cost_summary("tenant-a", "client_customer_key", DAY0 + 1, None)
    assert whole == partial == [SummaryRow("acme", "USD", 2, 2_000, 0)]
    for bucket in ("hour", "day", "month"):
        rows = storage.usage("tenant-a", bucket, "service_id", None, None)  # type: ignore[arg-type]
        assert sum(r.events for r in rows) == 2
        assert sum(r.cost_nanos for r in rows) == 2_000
    assert storage.list_events("tenant-c") == []
    assert storage.cost_summary("tenant-c", "service_id", None, None) == []
    assert storage.cost_summary("tenant-c", "service_id", 1, 2) == []
    assert storage.usage("tenant-c", "day", "service_id", None, None) == []


# -- list_events ----------------------------------------------------------------------------


def test_list_events_filters(storage: Storage) -> None:
    storage.ingest(
        [
            ev("a", at=DAY0),
            ev("b", at=DAY0 + HOUR, customer="globex"),
            ev("c", at=DAY0 + 2 * HOUR, service="openai::gpt-4o-mini"),
            ev("d", at=DAY0 + 3 * HOUR, customer=None),
        ]
    )

    def rids(**filters: object) -> list[str]:
        return [e.response_id for e in storage.list_events("tenant-a", **filters)]  # type: ignore[arg-type]

    assert rids() == ["a", "b", "c", "d"]
    assert rids(service_id="openai::gpt-4o-mini") == ["c"]
    assert rids(client_customer_key="acme") == ["a", "c"]
    assert rids(since_us=DAY0 + HOUR) == ["b", "c", "d"]  # since is inclusive
    assert rids(until_us=DAY0 + 2 * HOUR) == ["a", "b"]  # until is exclusive
    assert rids(since_us=DAY0 + 1, until_us=DAY0 + 3 * HOUR + 1) == ["b", "c", "d"]
    assert rids(client_customer_key="acme", service_id="openai::gpt-4o") == ["a"]
    assert rids(limit=2) == ["a", "b"]
    assert rids(service_id="nope") == []


def test_time_windows_around_hours_and_before_1970(storage: Storage) -> None:
    """Windows cut inside hours and around the epoch (SQLite finds them by hour, and its
    integer division rounds towards zero, unlike Python's)."""
    epoch_hour = [-HOUR - 1, -HOUR, -2, -1, 0, 1, HOUR - 1, HOUR, 5 * HOUR + 7]
    storage.ingest([ev(f"t{n}", at=at) for n, at in enumerate(epoch_hour)])

    def rids(since: int | None, until: int | None) -> list[str]:
        events = storage.list_events("tenant-a", since_us=since, until_us=until)
        expected = [
            f"t{n}"
            for n, at in enumerate(epoch_hour)
            if (since is None or at >= since) and (until is None or at < until)
        ]
        assert [e.response_id for e in events] == expected, (since, until)
        usage = storage.usage("tenant-a", "day", "service_id", since, until)
        summary = storage.cost_summary("tenant-a", "service_id", since, until)
        assert sum(r.events for r in usage) == sum(r.events for r in summary) == len(expected)
        return expected

    assert len(rids(None, None)) == 9
    for since, until in [
        (-HOUR, -1),
        (-HOUR, 0),
        (-HOUR + 1, 1),
        (-2 * HOUR, -HOUR),
        (-1, HOUR),
        (1, HOUR - 1),
        (-HOUR - 1, 5 * HOUR + 7),
        (HOUR, None),
        (None, -HOUR),
        (5 * HOUR, 5 * HOUR + 8),
    ]:
        rids(since, until)


def test_list_events_keyset_pagination_follows_storage_order(storage: Storage) -> None:
    rids = [f"r{i:02d}" for i in range(25)]
    # arrival order differs from key order, across batches and inside each one
    arrival = rids[::-1]
    services = ["openai::gpt-4o", "openai::gpt-4o-mini"]
    for start in (0, 10, 20):
        batch = [ev(r, service=services[int(r[1:]) % 2]) for r in arrival[start : start + 10]]
        storage.ingest(batch)

    def pages(**filters: object) -> list[list[str]]:
        out: list[list[str]] = []
        after: int | None = None
        while True:
            page = storage.list_events("tenant-a", after_id=after, limit=7, **filters)  # type: ignore[arg-type]
            if not page:
                return out
            ids = [e.id for e in page]
            assert ids == sorted(ids)
            assert after is None or ids[0] > after
            out.append([e.response_id for e in page])
            after = ids[-1]

    got = pages()
    assert [len(p) for p in got] == [7, 7, 7, 4]
    assert [r for p in got for r in p] == arrival
    mini = [r for p in pages(service_id="openai::gpt-4o-mini") for r in p]
    assert mini == [r for r in arrival if int(r[1:]) % 2]


# -- cost_summary ---------------------------------------------------------------------------

SPREAD = [
    ev("a1", at=DAY0 + 1 * HOUR, cost=1_000),
    ev("a2", at=DAY0 + 5 * HOUR, cost=2_500, currency="EUR"),
    ev("a3", at=DAY0 + 23 * HOUR, cost=None),
    ev("b1", at=DAY0 + 25 * HOUR, customer="globex", cost=700),
    ev("b2", at=DAY0 + 26 * HOUR, customer="globex", service="openai::gpt-4o-mini", cost=30),
    ev("c1", at=DAY0 + 50 * HOUR, customer=None, cost=9),
    ev("c2", at=DAY0 + 51 * HOUR, customer=None, cost=None, service="x::unknown"),
    ev("d1", at=DAY0 - 2 * HOUR, cost=100_000),  # the day before
]


def test_cost_summary_by_customer_counts_unpriced_and_keeps_currencies_apart(
    storage: Storage,
) -> None:
    storage.ingest(SPREAD)
    expected = [
        SummaryRow(None, None, 1, 0, 1),  # no customer, unpriced
        SummaryRow(None, "USD", 1, 9, 0),
        SummaryRow("acme", None, 1, 0, 1),
        SummaryRow("acme", "EUR", 1, 2_500, 0),
        SummaryRow("acme", "USD", 2, 101_000, 0),
        SummaryRow("globex", "USD", 2, 730, 0),
    ]
    assert storage.cost_summary("tenant-a", "client_customer_key", None, None) == expected
    # the same through the events: a window that is not whole days but holds them all
    assert storage.cost_summary("tenant-a", "client_customer_key", DAY0 - 3 * HOUR, None) == (
        expected
    )


def test_cost_summary_by_service(storage: Storage) -> None:
    storage.ingest(SPREAD)
    expected = [
        SummaryRow("openai::gpt-4o", None, 1, 0, 1),
        SummaryRow("openai::gpt-4o", "EUR", 1, 2_500, 0),
        SummaryRow("openai::gpt-4o", "USD", 4, 101_709, 0),
        SummaryRow("openai::gpt-4o-mini", "USD", 1, 30, 0),
        SummaryRow("x::unknown", None, 1, 0, 1),
    ]
    assert storage.cost_summary("tenant-a", "service_id", None, None) == expected
    assert storage.cost_summary("tenant-a", "service_id", None, DAY0 + 999 * HOUR + 1) == expected


@pytest.mark.parametrize("group_by", ["client_customer_key", "service_id"])
@pytest.mark.parametrize(
    ("whole", "partial"),
    [
        ((DAY0, DAY0 + US_PER_DAY), (DAY0 - 1, DAY0 + US_PER_DAY)),
        ((DAY0, None), (DAY0 - HOUR, None)),
        ((None, DAY0 + US_PER_DAY), (None, DAY0 + US_PER_DAY - 1)),
        ((DAY0 + US_PER_DAY, DAY0 + 3 * US_PER_DAY), (DAY0 + 24 * HOUR + 1, DAY0 + 52 * HOUR)),
        ((DAY0 + 5 * US_PER_DAY, None), (DAY0 + 52 * HOUR, None)),
    ],
)
def test_rollups_and_events_agree_on_the_same_events(
    storage: Storage,
    group_by: str,
    whole: tuple[int | None, int | None],
    partial: tuple[int | None, int | None],
) -> None:
    """A whole-day window (rollups) and a partial window (events) holding the same events
    give the same rows."""
    storage.ingest(SPREAD[:4])
    storage.ingest(SPREAD[4:])
    from_rollups = storage.cost_summary("tenant-a", group_by, *whole)  # type: ignore[arg-type]
    from_events = storage.cost_summary("tenant-a", group_by, *partial)  # type: ignore[arg-type]
    assert from_rollups == from_events


@pytest.mark.parametrize("group_by", ["client_customer_key", "service_id"])
def test_all_time_totals_agree_with_the_days_and_the_events(
    storage: Storage, group_by: str
) -> None:
    """An open window (the all-time totals) answers what every whole day (daily rollups) and
    a partial window (events) answer, over tenants, customers, currencies, unpriced events,
    negative costs, resends, conflicts, a refused event and days whose sum passes 64 bits."""
    storage.ingest(SPREAD[:5])
    storage.ingest([*SPREAD[3:], ev("a1", cost=1_000), ev("a2", cost=3)])  # resends, a conflict
    storage.ingest([ev("t-b", tenant="tenant-b", cost=77), ev("neg", cost=-1_999_999_999)])
    storage.ingest([ev(f"big{n}", cost=BIG, at=DAY0 + n * US_PER_DAY + HOUR) for n in range(3)])
    refused = storage.ingest([ev("big-again", cost=BIG, at=DAY0 + HOUR)])
    assert refused == [Refused(SUM_OUT_OF_RANGE)]
    for tenant in ("tenant-a", "tenant-b", "tenant-c"):
        totals = storage.cost_summary(tenant, group_by, None, None)  # type: ignore[arg-type]
        days = storage.cost_summary(tenant, group_by, DAY0 - 9 * US_PER_DAY, DAY0 + 9 * US_PER_DAY)  # type: ignore[arg-type]
        events = storage.cost_summary(
            tenant, group_by, DAY0 - 9 * US_PER_DAY, DAY0 + 999 * HOUR + 1
        )  # type: ignore[arg-type]
        assert totals == days == events
    assert totals == []  # tenant-c has none
    everything = storage.cost_summary("tenant-a", "service_id", None, None)
    assert sum(r.cost_nanos for r in everything) == 3 * BIG + 104_239 - 1_999_999_999


def test_cost_summary_partial_window_counts_only_events_inside(storage: Storage) -> None:
    storage.ingest(SPREAD)
    rows = storage.cost_summary(
        "tenant-a", "client_customer_key", DAY0 + 5 * HOUR, DAY0 + 25 * HOUR
    )
    assert rows == [SummaryRow("acme", None, 1, 0, 1), SummaryRow("acme", "EUR", 1, 2_500, 0)]
    # whole days: the day before DAY0 alone
    rows = storage.cost_summary("tenant-a", "client_customer_key", DAY0 - US_PER_DAY, DAY0)
    assert rows == [SummaryRow("acme", "USD", 1, 100_000, 0)]


def test_costs_are_exact_integers(storage: Storage) -> None:
    big = 123_456_789_012_345_678  # ~0.12 billion units in nanos
    storage.ingest([ev("r1", cost=big), ev("r2", cost=big + 1), ev("r3", cost=1)])
    total = 2 * big + 2
    for window in ((None, None), (DAY0, None), (DAY0 + 1, None)):
        [row] = storage.cost_summary("tenant-a", "service_id", *window)
        assert (row.cost_nanos, type(row.cost_nanos)) == (total, int)
    [row] = storage.usage("tenant-a", "month", "service_id", None, None)
    assert row.cost_nanos == total


# -- usage ----------------------------------------------------------------------------------


def test_usage_buckets_hour_day_month_in_utc(storage: Storage) -> None:
    storage.ingest(
        [
            ev("dec", at=us(2025, 12, 31, 23, 30)),
            ev("jan1", at=us(2026, 1, 31, 22, 0), cost=2),
            ev("jan2", at=us(2026, 1, 31, 23, 59, 59, 999_999), cost=3),
            ev("feb1", at=us(2026, 2, 1), cost=None),
            ev("feb2", at=us(2026, 2, 1, 0, 40), cost=5),
            ev("feb3", at=us(2026, 2, 15, 12), cost=7, currency="EUR"),
        ]
    )
    key = "acme"
    assert storage.usage("tenant-a", "month", "client_customer_key", None, None) == [
        UsageRow(us(2025, 12, 1), key, "USD", 1, 1_000, 0),
        UsageRow(us(2026, 1, 1), key, "USD", 2, 5, 0),
        UsageRow(us(2026, 2, 1), key, None, 1, 0, 1),
        UsageRow(us(2026, 2, 1), key, "EUR", 1, 7, 0),
        UsageRow(us(2026, 2, 1), key, "USD", 1, 5, 0),
    ]
    assert storage.usage("tenant-a", "day", "client_customer_key", us(2026, 1, 1), None) == [
        UsageRow(us(2026, 1, 31), key, "USD", 2, 5, 0),
        UsageRow(us(2026, 2, 1), key, None, 1, 0, 1),
        UsageRow(us(2026, 2, 1), key, "USD", 1, 5, 0),
        UsageRow(us(2026, 2, 15), key, "EUR", 1, 7, 0),
    ]
    hours = storage.usage(
        "tenant-a", "hour", "client_customer_key", us(2026, 1, 31, 22), us(2026, 2, 1, 1)
    )
    assert hours == [
        UsageRow(us(2026, 1, 31, 22), key, "USD", 1, 2, 0),
        UsageRow(us(2026, 1, 31, 23), key, "USD", 1, 3, 0),
        UsageRow(us(2026, 2, 1), key, None, 1, 0, 1),
        UsageRow(us(2026, 2, 1), key, "USD", 1, 5, 0),
    ]


def test_usage_groups_by_service_with_a_window(storage: Storage) -> None:
    storage.ingest(SPREAD)
    rows = storage.usage("tenant-a", "day", "service_id", DAY0, DAY0 + 2 * US_PER_DAY)
    assert rows == [
        UsageRow(DAY0, "openai::gpt-4o", None, 1, 0, 1),
        UsageRow(DAY0, "openai::gpt-4o", "EUR", 1, 2_500, 0),
        UsageRow(DAY0, "openai::gpt-4o", "USD", 1, 1_000, 0),
        UsageRow(DAY0 + US_PER_DAY, "openai::gpt-4o", "USD", 1, 700, 0),
        UsageRow(DAY0 + US_PER_DAY, "openai::gpt-4o-mini", "USD", 1, 30, 0),
    ]
    by_customer = storage.usage("tenant-a", "day", "client_customer_key", DAY0 + US_PER_DAY, None)
    assert [r.key for r in by_customer] == ["globex", None, None]  # a new day: None first again
    assert [r.bucket_start_us for r in by_customer] == [DAY0 + US_PER_DAY] + [
        DAY0 + 2 * US_PER_DAY
    ] * 2


# -- keys, ping, restart --------------------------------------------------------------------


def test_keys_put_find_replace(storage: Storage) -> None:
    """A key is found by its hash; named again for its tenant its scopes are replaced;
    named for another tenant it is refused, naming both, and stays where it was."""
    assert storage.find_key("h1") is None
    storage.put_key("h1", "tenant-a", frozenset({"ingest", "read"}))
    storage.put_key("h2", "tenant-b", frozenset())
    assert storage.find_key("h1") == ApiKeyRecord("tenant-a", frozenset({"ingest", "read"}))
    assert storage.find_key("h2") == ApiKeyRecord("tenant-b", frozenset())
    storage.put_key("h1", "tenant-a", frozenset({"admin"}))
    assert storage.find_key("h1") == ApiKeyRecord("tenant-a", frozenset({"admin"}))
    with pytest.raises(KeyTenantError, match=r"'tenant-a'.*'tenant-c'"):
        storage.put_key("h1", "tenant-c", frozenset({"admin"}))
    assert storage.find_key("h1") == ApiKeyRecord("tenant-a", frozenset({"admin"}))
    assert storage.find_key("h2") == ApiKeyRecord("tenant-b", frozenset())


def test_keys_list_touch_revoke(storage: Storage) -> None:
    """Keys are listed (all, or a tenant's) with created and last-used times; a revoke
    scoped to another tenant deletes nothing; a revoked key is no longer found."""
    storage.put_key("a" * 64, "tenant-a", frozenset({"read"}))
    storage.put_key("b" * 64, "tenant-b", frozenset({"ingest"}))
    assert [(k.tenant, k.last_used_at) for k in storage.list_keys()] == [
        ("tenant-a", None),
        ("tenant-b", None),
    ]
    storage.touch_key("a" * 64)
    [mine] = storage.list_keys("tenant-a")
    assert mine.abbreviation == "sha256:aaaaaaaa"
    assert mine.scopes == frozenset({"read"})
    assert mine.last_used_at is not None
    assert storage.revoke_key("a" * 64, "tenant-b") is False
    assert storage.revoke_key("a" * 64, "tenant-a") is True
    assert storage.find_key("a" * 64) is None
    assert storage.revoke_key("a" * 64) is False
    assert [k.tenant for k in storage.list_keys()] == ["tenant-b"]


def test_ping(storage: Storage) -> None:
    storage.ping()


def test_restart_keeps_data_keys_and_dedup(backend: Backend) -> None:
    first = backend.open()
    assert first.ingest([ev("r1"), ev("r2", cost=None)]) == ["accepted", "accepted"]
    first.put_key("h1", "tenant-a", frozenset({"read"}))
    first.close()

    again = backend.open()  # migrations find everything applied
    assert [e.response_id for e in again.list_events("tenant-a")] == ["r1", "r2"]
    assert again.find_key("h1") == ApiKeyRecord("tenant-a", frozenset({"read"}))
    statuses = again.ingest([ev("r1"), ev("r2", usage=b"{}"), ev("r3")])
    assert statuses == ["duplicate", "conflict", "accepted"]
    assert again.cost_summary("tenant-a", "service_id", None, None) == [
        SummaryRow("openai::gpt-4o", None, 1, 0, 1),
        SummaryRow("openai::gpt-4o", "USD", 2, 2_000, 0),
    ]
    ids = [e.id for e in again.list_events("tenant-a")]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


# -- several processes ----------------------------------------------------------------------

CHILD = """
import json, sys
from aicm_manual.server._storage.postgres import PostgresStorage
from aicm_manual.server._storage.sqlite import SqliteStorage
from aicm_manual.server._storage.protocol import NewEvent
with open(sys.argv[1]) as fh:
    p = json.load(fh)
events = [NewEvent(**{**e, "usage": e["usage"].encode()}) for e in p["events"]]
print("ready", flush=True)
sys.stdin.readline()  # start together
if p["kind"] == "postgres":
    storage = PostgresStorage(p["url"], schema=p["schema"])
else:
    storage = SqliteStorage(p["path"])
out = []
for batch in p["batches"]:
    out.extend(zip(batch, storage.ingest([events[i] for i in batch])))
storage.close()
print(json.dumps(out), flush=True)
"""


def start_together(params: list[dict[str, object]], tmp_path: Path) -> list[list[list[object]]]:
    """Run one CHILD per params, released at the same moment; each returns (index, status)
    pairs. Every wait is bounded and every child is ended by its own handle."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for n, p in enumerate(params):
            plan = tmp_path / f"plan{n}.json"
            plan.write_text(json.dumps(p))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", CHILD, str(plan)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line == "ready\n", (line, proc.stderr and proc.stderr.read())
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def expected_summary(events: list[NewEvent], group_by: str) -> list[SummaryRow]:
    sums: dict[tuple[str | None, str | None], list[int]] = {}
    for e in events:
        key = e.client_customer_key if group_by == "client_customer_key" else e.service_id
        row = sums.setdefault((key, e.currency if e.cost_nanos is not None else None), [0, 0, 0])
        row[0] += 1
        row[1] += e.cost_nanos or 0
        row[2] += e.cost_nanos is None
    rows = [SummaryRow(k, c, *v) for (k, c), v in sums.items()]
    return sorted(rows, key=lambda r: (r.key is not None, r.key or "", r.currency or ""))


@pytest.mark.parametrize("start", ["migrated", "fresh"])
def test_two_processes_ingesting_the_same_batches_store_each_record_once(
    backend: Backend, tmp_path: Path, start: str, request: pytest.FixtureRequest
) -> None:
    """Both processes send every record, batched differently (the second also repeats some
    inside a batch): each record is accepted exactly once, the rollups are exact. "fresh":
    the processes also run the migrations at the same moment."""
    events = [
        ev(
            f"r{i:05d}",
            at=DAY0 + (i % 72) * HOUR,
            customer=[None, "acme", "globex", "initech"][i % 4],
            service=["openai::gpt-4o", "openai::gpt-4o-mini"][i % 3 == 0],
            cost=None if i % 11 == 0 else 1_000 + i,
            currency="EUR" if i % 5 == 0 else "USD",
        )
        for i in range(3_000)
    ]
    if start == "migrated":
        backend.open().close()
    order = list(range(len(events)))
    random.Random(7).shuffle(order)
    plans = [
        [list(range(s, s + 500)) for s in range(0, len(events), 500)],
        [order[s : s + 400] + order[s : s + 10] for s in range(0, len(events), 400)],
    ]
    common: dict[str, object] = {
        "kind": backend.name,
        "events": [{**asdict(e), "usage": e.usage.decode()} for e in events],
        "path": str(tmp_path / "x.db"),
        "url": POSTGRES_URL,
        "schema": backend.schema,
    }
    results = start_together([{**common, "batches": plan} for plan in plans], tmp_path)

    seen: dict[int, list[str]] = {}
    for out in results:
        for index, status in out:
            seen.setdefault(index, []).append(status)  # type: ignore[arg-type]
    assert sorted(seen) == list(range(len(events)))
    for statuses in seen.values():
        assert sorted(statuses) == ["accepted"] + ["duplicate"] * (len(statuses) - 1)

    check = backend.open()
    stored = check.list_events("tenant-a", limit=10_000)
    assert sorted(e.response_id for e in stored) == [e.response_id for e in events]
    for group_by in ("client_customer_key", "service_id"):
        want = expected_summary(events, group_by)
        assert check.cost_summary("tenant-a", group_by, None, None) == want  # type: ignore[arg-type]
        assert check.cost_summary("tenant-a", group_by, 1, None) == want  # type: ignore[arg-type]


# -- money past 64 bits ---------------------------------------------------------------------

BIG = 5 * 10**18  # 5e9 of the currency in nano-units: fits; two on one rollup row do not


def test_a_daily_total_past_64_bits_refuses_that_event_alone(storage: Storage) -> None:
    """Two events that would carry one day's rollup past 64 bits: the second is Refused
    with SUM_OUT_OF_RANGE, its batch neighbours are accepted, and nothing of it is kept."""
    assert storage.ingest([ev("big-1", cost=BIG)]) == ["accepted"]
    statuses = storage.ingest([ev("n-1"), ev("big-2", cost=BIG), ev("n-2")])
    assert statuses[0] == statuses[2] == "accepted"
    assert statuses[1] == Refused(SUM_OUT_OF_RANGE)
    assert storage.get_events("tenant-a", "big-2") == []
    [row] = storage.cost_summary("tenant-a", "service_id", None, None)
    assert row.cost_nanos == BIG + 2_000
    assert storage.ingest([ev("big-2", cost=BIG)]) == [Refused(SUM_OUT_OF_RANGE)]


@pytest.mark.parametrize("whole_days", [True, False], ids=["rollups", "events"])
def test_sums_over_several_days_are_exact_past_64_bits(storage: Storage, whole_days: bool) -> None:
    """Events on four days, each day's total within 64 bits and their sum far past it:
    cost_summary and usage answer the exact sum (rollups for whole days, events else)."""
    events = [ev(f"d{n}", cost=BIG, at=DAY0 + n * US_PER_DAY + HOUR) for n in range(4)]
    assert storage.ingest(events) == ["accepted"] * 4
    since, until = (DAY0, DAY0 + 4 * US_PER_DAY) if whole_days else (DAY0 + 1, None)
    [row] = storage.cost_summary("tenant-a", "client_customer_key", since, until)
    assert row.cost_nanos == 4 * BIG
    months = storage.usage("tenant-a", "month", "service_id", since, until)
    assert sum(r.cost_nanos for r in months) == 4 * BIG


def test_an_event_matching_the_earlier_hash_is_a_duplicate(storage: Storage) -> None:
    """A stored event whose hash is the incoming record's earlier_hash (events stored by an
    earlier version) answers duplicate; any other hash is a conflict."""
    old = ev("r1")
    assert storage.ingest([old]) == ["accepted"]
    again = replace(old, payload_hash="b:" + "0" * 64, earlier_hash=old.payload_hash)
    assert storage.ingest([again]) == ["duplicate"]
    other = replace(old, payload_hash="b:" + "1" * 64, earlier_hash="2" * 64)
    assert storage.ingest([other]) == ["conflict"]
