"""What only the PostgreSQL backend does: schemas, URLs, lost connections, closing.

The shared behaviour is in test_storage_contract.py; these use the same local server and
scratch schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest

from aicm_manual.server._storage.postgres_schema import MIGRATIONS
from aicm_manual.server._storage.protocol import SummaryRow

from .test_storage_contract import ev, pg_schema, postgres_url  # noqa: F401 - fixtures

psycopg = pytest.importorskip("psycopg")

from aicm_manual.server._storage import open_storage  # noqa: E402
from aicm_manual.server._storage.postgres import PostgresStorage  # noqa: E402 - needs psycopg


def tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    return {name for (name,) in rows}


@pytest.fixture
def pg(postgres_url: str, pg_schema: str) -> Iterator[PostgresStorage]:  # noqa: F811
    storage = PostgresStorage(postgres_url, schema=pg_schema)
    yield storage
    storage.close()


def test_schema_holds_every_table_and_is_created_once(
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
    pg: PostgresStorage,
) -> None:
    assert tables(postgres_url, pg_schema) == {
        "api_keys",
        "budgets",
        "events",
        "ingest_stats",
        "price_rules",
        "rollups_daily",
        "rollups_total",
        "schema_migrations",
        "webhook_messages",
        "webhooks",
    }
    PostgresStorage(postgres_url, schema=pg_schema).close()  # a second start changes nothing
    with psycopg.connect(postgres_url) as conn:
        versions = conn.execute(
            psycopg.sql.SQL("SELECT version FROM {}.schema_migrations").format(
                psycopg.sql.Identifier(pg_schema)
            )
        ).fetchall()
    assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


def test_a_url_with_its_own_search_path_is_used_as_is(
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(pg_schema)))
    storage = open_storage(f"{postgres_url}?options=-csearch_path%3D{pg_schema}")
    try:
        assert isinstance(storage, PostgresStorage)
        assert storage.ingest([ev("r1")]) == ["accepted"]
        assert storage.cost_summary("tenant-a", "service_id", None, None) == [
            SummaryRow("openai::gpt-4o", "USD", 1, 1_000, 0)
        ]
    finally:
        storage.close()
    assert "events" in tables(postgres_url, pg_schema)


def test_connections_the_server_dropped_are_replaced(
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    """An idle connection killed by the server (a restart, a failover) costs no failed call."""
    name = f"aicm_test_{uuid4().hex[:8]}"
    storage = PostgresStorage(f"{postgres_url}?application_name={name}", schema=pg_schema)
    try:
        storage.ping()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            # The call sits in the select list so it runs only on the rows WHERE kept.
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
        assert killed
        assert all(ok for (ok,) in killed)
        assert storage.ingest([ev("r1")]) == ["accepted"]
        storage.ping()
        assert [e.response_id for e in storage.list_events("tenant-a")] == ["r1"]
    finally:
        storage.close()


def test_calls_after_close_fail_loudly(pg: PostgresStorage) -> None:
    pg.close()
    with pytest.raises(RuntimeError, match="closed"):
        pg.ingest([ev("r1")])
    with pytest.raises(RuntimeError, match="closed"):
        pg.ping()


def test_an_unreachable_server_fails_at_construction() -> None:
    """The driver's error is translated inside the backend: StorageError, chained."""
    from aicm_manual import StorageError

    with pytest.raises(StorageError) as caught:
        PostgresStorage("postgresql://postgres@127.0.0.1:1/test", schema="unused")
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


def test_a_schema_from_before_the_totals_gets_them_from_its_daily_rollups(
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    from psycopg import sql

    from aicm_manual._migrations import apply_migrations, split_statements
    from aicm_manual.server._storage.protocol import US_PER_DAY

    from .test_storage_contract import DAY0

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_schema)))
        # Migrations 1-4: before the totals (5).
        scripts = [split_statements(script) for script in MIGRATIONS[:4]]
        apply_migrations(conn.execute, scripts, 0.0, param="%s")
        for day, customer, cost in (
            (0, "acme", 5 * 10**18),
            (1, "acme", 5 * 10**18 + 7),
            (1, "", 3),
        ):
            conn.execute(
                "INSERT INTO rollups_daily VALUES ('tenant-a', %s, %s, 'openai::gpt-4o', 'USD',"
                " 2, %s, 0)",
                (DAY0 // US_PER_DAY + day, customer, cost),
            )
    storage = PostgresStorage(postgres_url, schema=pg_schema)
    try:
        assert storage.cost_summary("tenant-a", "client_customer_key", None, None) == [
            SummaryRow(None, "USD", 2, 3, 0),
            SummaryRow("acme", "USD", 4, 10**19 + 7, 0),
        ]
        assert storage.ingest([ev("r1")]) == ["accepted"]
        [*_, acme] = storage.cost_summary("tenant-a", "client_customer_key", None, None)
        assert acme == SummaryRow("acme", "USD", 5, 10**19 + 1_007, 0)
    finally:
        storage.close()


def events_indexes(url: str, schema: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
            " AND tablename = 'events'",
            (schema,),
        ).fetchall()
    return {name: definition.split(" USING btree ")[1] for name, definition in rows}


def test_a_schema_with_two_id_indexes_keeps_one_and_its_records_stay_unique(
    postgres_url: str,  # noqa: F811
    pg_schema: str,  # noqa: F811
) -> None:
    """Migration 6 replaces the UNIQUE (tenant, service_id, response_id) constraint and
    the (tenant, response_id) index with one unique index: events stored before it are
    still found by id and still answer duplicate or conflict."""
    from psycopg import sql

    from aicm_manual._migrations import apply_migrations, split_statements

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(pg_schema)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_schema)))
        apply_migrations(
            conn.execute, [split_statements(m) for m in MIGRATIONS[:5]], 0.0, param="%s"
        )
    assert set(events_indexes(postgres_url, pg_schema)) == {
        "events_pkey",
        "events_tenant_service_id_response_id_key",
        "events_tenant_time",
        "events_tenant_response",
    }
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg_schema)))
        conn.execute(
            "INSERT INTO events (tenant, config_id, service_id, response_id, timestamp_us,"
            " received_us, usage, payload_hash) VALUES"
            " ('tenant-a', 'openai-chat', 'openai::gpt-4o', 'old/1', 0, 0, '{}', %s)",
            (ev("old/1").payload_hash,),
        )
    storage = PostgresStorage(postgres_url, schema=pg_schema)
    try:
        assert events_indexes(postgres_url, pg_schema) == {
            "events_pkey": "(id)",
            "events_tenant_time": "(tenant, timestamp_us)",
            "events_key": "(tenant, response_id, service_id)",
        }
        assert [e.response_id for e in storage.get_events("tenant-a", "old/1")] == ["old/1"]
        again = ev("old/1")
        other = ev("old/1", usage=b'{"input_tokens": 2}')
        other_service = ev("old/1", service="openai::gpt-4o-mini")
        assert storage.ingest([again, other, other_service]) == [
            "duplicate",
            "conflict",
            "accepted",
        ]
        assert len(storage.get_events("tenant-a", "old/1")) == 2
    finally:
        storage.close()


def test_concurrent_ingests_of_overlapping_batches_store_each_record_once(
    pg: PostgresStorage,
) -> None:
    import threading

    batches = [[ev(f"r{(n * 7 + k) % 40}") for k in range(10)] for n in range(12)]
    answers: list[list[object]] = [[] for _ in batches]

    def send(n: int) -> None:
        answers[n] = list(pg.ingest(batches[n]))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = [s for a in answers for s in a]
    assert len(statuses) == 120
    assert set(statuses) <= {"accepted", "duplicate"}
    assert statuses.count("accepted") == 40
    [row] = pg.cost_summary("tenant-a", "client_customer_key", None, None)
    assert (row.events, row.cost_nanos) == (40, 40_000)


def test_rollups_summed_in_sql_match_the_python_deltas(
    postgres_url: str,  # noqa: F811
    pg: PostgresStorage,
) -> None:
    """The ingest statement sums the rollups itself: its daily and total rows equal what
    rollup_deltas and total_deltas give for the accepted events, with days floored as
    Python floors them (before 1970 and at both ends of the 64-bit range), customers and
    currencies missing, unpriced and negative costs, and keys repeated within and across
    batches."""
    import random

    from psycopg import sql

    from aicm_manual.server._storage.protocol import US_PER_DAY, NewEvent, rollup_deltas
    from aicm_manual.server._storage.totals import total_deltas

    def daily_rows(events: list[NewEvent]) -> list[tuple[object, ...]]:
        return sorted(
            (tenant, *key, n, cost, unpriced)
            for tenant in ("tenant-a", "tenant-b")
            for key, n, cost, unpriced in rollup_deltas([e for e in events if e.tenant == tenant])
        )

    rng = random.Random(7)
    totals: dict[tuple[object, ...], list[int]] = {}  # each batch's deltas, as ingest adds them
    edges = [-(2**63), -(2**63) + 1, -US_PER_DAY - 1, -US_PER_DAY, -1, 0, 1, 2**63 - 1]
    accepted = []
    for batch in range(6):
        events = []
        for n in range(60):
            cost = rng.choice([None, 0, 1, 999_999_999, 1_000_000_001, -1_500_000_000])
            events.append(
                ev(
                    f"r{rng.randrange(200)}",
                    tenant=rng.choice(["tenant-a", "tenant-b"]),
                    service=rng.choice(["openai::gpt-4o", "x::y"]),
                    at=rng.choice(edges) if n % 3 == 0 else rng.randrange(-(10**15), 10**15),
                    customer=rng.choice([None, "acme", "globex"]),
                    cost=cost,
                    currency=rng.choice(["USD", "EUR"]),
                    usage=b'{"batch": %d}' % batch,
                )
            )
        statuses = pg.ingest(events)
        new = [e for e, s in zip(events, statuses, strict=True) if s == "accepted"]
        for *key, n, units, rem, unpriced in total_deltas(daily_rows(new)):
            row = totals.setdefault(tuple(key), [0, 0, 0, 0])
            for i, value in enumerate((n, units, rem, unpriced)):
                row[i] += value
        accepted += new
        assert set(statuses) <= {"accepted", "duplicate", "conflict"}
    assert 200 < len(accepted) < 400
    with psycopg.connect(postgres_url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(pg._schema or "")))
        stored_daily = conn.execute("SELECT * FROM rollups_daily ORDER BY 1, 2, 3, 4, 5").fetchall()
        stored_total = conn.execute("SELECT * FROM rollups_total ORDER BY 1, 2, 3, 4").fetchall()
    assert stored_daily == daily_rows(accepted)
    assert stored_total == [(*key, *row) for key, row in sorted(totals.items())]
