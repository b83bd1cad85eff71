"""PostgreSQL storage for the collector; several collector processes may share one database.

    storage = PostgresStorage("postgresql://collector@db.internal/aicm", schema="aicm")
    storage.ingest(events)          # committed when it returns

The events table's UNIQUE key decides who stores a record, so processes ingesting the same
records at once store each exactly once. Every write transaction takes its row locks in one
global order (events by key, then rollup rows by key), so concurrent batches cannot
deadlock. Migrations run at construction under an advisory lock. Connections come from
psycopg_pool when it is installed, else from a short list of idle connections kept here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from ..._migrations import apply_migrations, split_statements
from . import keys
from .ledger import Ledger
from .postgres_connections import (
    Connection,
    Connections,
    IdleConnections,
    connection_lost,
    open_pool,
)
from .postgres_schema import MIGRATIONS
from .protocol import (
    SUM_OUT_OF_RANGE,
    US_PER_DAY,
    ApiKeyRecord,
    Bucket,
    GroupBy,
    IngestResult,
    NewEvent,
    StoredEvent,
    SummaryRow,
    UsageRow,
    event_window,
    isolate,
    split_nanos,
    translating,
    whole_days,
)
from .reports import LedgerReports

_T = TypeVar("_T")
_Key = tuple[str, str, str]  # (tenant, service_id, response_id): what makes a record unique


def _index_order(key: _Key) -> _Key:
    """A key as the unique index ``events_key`` orders it: (tenant, response_id, service)."""
    return (key[0], key[2], key[1])


# config_id '' is "no config" (see _storage): handed back as NULL.
_EVENT_COLUMNS = (
    "id, tenant, NULLIF(config_id, ''), service_id, response_id, timestamp_us, received_us,"
    " client_customer_key, usage, context, payload_hash, cost_nanos, currency, price_source"
)
_GROUP_COLUMN = {"client_customer_key": "client_customer_key", "service_id": "service_id"}
_BUCKET_START = {
    "hour": "(timestamp_us / 3600000000) * 3600000000",
    "day": f"(timestamp_us / {US_PER_DAY}) * {US_PER_DAY}",
    "month": "extract(epoch FROM date_trunc('month',"
    " to_timestamp(timestamp_us / 1000000) AT TIME ZONE 'UTC'))::bigint * 1000000",
}

# One statement stores a batch and moves its rollups, committed on its own (no BEGIN,
# COMMIT or round trip between the parts, and the hot rollup rows stay locked only until
# it ends). Rows come sorted by key and are inserted in that order; their ids are drawn
# first, ascending, and handed out by arrival rank, so that storage order follows arrival.
# The rollup deltas are summed from what was inserted, then taken in key order (the daily
# rows before the totals, which wait on them): one global lock order, so concurrent
# batches cannot deadlock. The answer is one character per offered row, in arrival
# order: 1 inserted, 0 already stored.
_DAY = "86400000000"
_INGEST = f"""
    WITH ids AS MATERIALIZED (
        SELECT array_agg(v ORDER BY v) AS a
        FROM (SELECT nextval(%s::regclass) AS v FROM generate_series(1, %s::int)) AS s
    ), ins AS (
        INSERT INTO events (id, tenant, config_id, service_id, response_id, timestamp_us,
            received_us, client_customer_key, usage, context, payload_hash, cost_nanos,
            currency, price_source)
        SELECT ids.a[u.rank], u.tenant, u.config_id, u.service_id, u.response_id,
            u.timestamp_us, %b::bigint, u.customer, u.usage, u.context, u.payload_hash,
            u.cost_nanos, u.currency, u.price_source
        FROM ids, unnest(%b::int[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::bigint[], %b::text[], %b::bytea[], %b::bytea[], %b::text[], %b::bigint[],
            %b::text[], %b::text[])
            AS u(rank, tenant, config_id, service_id, response_id, timestamp_us, customer,
                usage, context, payload_hash, cost_nanos, currency, price_source)
        ON CONFLICT (tenant, service_id, response_id) DO NOTHING
        RETURNING id, tenant, timestamp_us, client_customer_key, service_id, currency,
            cost_nanos
    ), d AS (
        SELECT tenant,
            CASE WHEN timestamp_us >= 0 THEN timestamp_us / {_DAY}
                ELSE (timestamp_us + 1) / {_DAY} - 1 END AS day,  -- floor, as Python's //
            coalesce(client_customer_key, '') AS customer, service_id,
            CASE WHEN cost_nanos IS NULL THEN '' ELSE coalesce(currency, '') END AS currency,
            count(*) AS events,
            coalesce(sum(cost_nanos), 0)::bigint AS cost,  -- past 64 bits: out of range
            count(*) - count(cost_nanos) AS unpriced
        FROM ins GROUP BY 1, 2, 3, 4, 5
    ), daily AS (
        INSERT INTO rollups_daily AS r
        SELECT * FROM d ORDER BY tenant, day, customer, service_id, currency
        ON CONFLICT (tenant, day, client_customer_key, service_id, currency) DO UPDATE SET
            events = r.events + excluded.events,
            cost_nanos = r.cost_nanos + excluded.cost_nanos,
            unpriced = r.unpriced + excluded.unpriced
        RETURNING 1
    ), total AS (
        INSERT INTO rollups_total AS t
        SELECT tenant, customer, service_id, currency, sum(events),
            sum(cost / 1000000000), sum(cost %% 1000000000), sum(unpriced)  -- totals.split_cost
        FROM d
        WHERE (SELECT count(*) FROM daily) >= 0  -- the daily rows are locked first
        GROUP BY tenant, customer, service_id, currency
        ORDER BY tenant, customer, service_id, currency
        ON CONFLICT (tenant, client_customer_key, service_id, currency) DO UPDATE SET
            events = t.events + excluded.events,
            cost_units = t.cost_units + excluded.cost_units,
            cost_rem = t.cost_rem + excluded.cost_rem,
            unpriced = t.unpriced + excluded.unpriced
    )
    SELECT string_agg(CASE WHEN ins.id IS NULL THEN '0' ELSE '1' END, '' ORDER BY x.rank)
    FROM ids CROSS JOIN LATERAL unnest(ids.a) WITH ORDINALITY AS x(id, rank)
    LEFT JOIN ins ON ins.id = x.id
"""
_STORED_HASHES = """
    SELECT e.tenant, e.service_id, e.response_id, e.payload_hash
    FROM unnest(%b::text[], %b::text[], %b::text[]) AS k(tenant, service_id, response_id)
    JOIN events AS e USING (tenant, service_id, response_id)
"""


@translating(psycopg.Error)
class _PostgresLedger(Ledger):
    """The ledger raising StorageError for the driver's errors, as the backend does."""


@translating(psycopg.Error)
class PostgresStorage(LedgerReports):
    """The Storage contract on PostgreSQL. ``schema`` puts every table in that schema
    (created if missing); without it the URL's search_path decides."""

    def __init__(
        self, url: str, *, schema: str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._schema = schema
        self._clock = clock
        self._options: dict[str, Any] = {"autocommit": True}
        given = conninfo_to_dict(url)
        if "connect_timeout" not in given:  # an unreachable host must not hang readiness
            self._options["connect_timeout"] = 10
        if "application_name" not in given:
            self._options["application_name"] = "aicm-manual collector"
        self._url = url
        with self._connect() as conn:
            self._migrate(conn)
            row = conn.execute("SELECT pg_get_serial_sequence('events', 'id')").fetchone()
        assert row is not None
        self._sequence: str = row[0]
        self._connections: Connections = open_pool(url, self._options, self._configure) or (
            IdleConnections(self._connect)
        )
        self.ledger = _PostgresLedger(
            self._run, self._run, lambda c: c.transaction(), dialect="postgres", clock=clock
        )

    # -- connections and migrations ---------------------------------------------------------

    def _connect(self) -> Connection:
        conn = psycopg.connect(self._url, **self._options)
        self._configure(conn)
        return conn

    def _configure(self, conn: Connection) -> None:
        if self._schema is not None:
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))

    def _migrate(self, conn: Connection) -> None:
        with conn.transaction():
            # Two processes starting together: the second waits here, then finds it done.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"aicm-manual migrations {self._schema or ''}",),
            )
            if self._schema is not None:
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema))
                )
            scripts = [split_statements(script) for script in MIGRATIONS]
            apply_migrations(conn.execute, scripts, self._clock(), param="%s")

    def _run(self, fn: Callable[[Connection], _T]) -> _T:
        """Run ``fn`` on a connection; once more on a fresh one if the server dropped it (an
        idle connection outlived a restart or failover). A retried ingest is safe: its
        transaction was rolled back, or committed and the retry answers ``duplicate``."""
        for attempt in (1, 2):
            with self._connections.connection() as conn:
                try:
                    return fn(conn)
                except psycopg.OperationalError as exc:
                    if attempt == 2 or not connection_lost(conn, exc):
                        raise
                    conn.close()  # never reused
            self._connections.discard_stale()
        raise AssertionError("unreachable")

    # -- writes -----------------------------------------------------------------------------

    def ingest(self, events: Sequence[NewEvent]) -> list[IngestResult]:
        if not events:
            return []
        received = int(self._clock() * 1_000_000)
        # A record the database refuses is answered alone; its neighbours are kept.
        return isolate(
            events,
            lambda part: self._run(lambda conn: self._ingest(conn, part, received)),
            _refusal,
        )

    def _ingest(
        self, conn: Connection, events: Sequence[NewEvent], received: int
    ) -> list[IngestResult]:
        keys = [(e.tenant, e.service_id, e.response_id) for e in events]
        first: dict[_Key, int] = {}  # only a key's first occurrence is offered for insert
        for n, key in enumerate(keys):
            first.setdefault(key, n)
        offered = list(first.values())  # in arrival order; rank r is offered[r - 1]
        # One lock order for every process, and the unique index's own order.
        order = sorted(range(len(offered)), key=lambda r: _index_order(keys[offered[r]]))
        rows = [events[offered[r]] for r in order]
        args = (self._sequence, len(rows), received, [r + 1 for r in order], *_columns(rows))
        row = conn.execute(_INGEST, args).fetchone()
        mask: str = (row[0] if row is not None else None) or ""
        if len(mask) == len(events) and "0" not in mask:
            return ["accepted"] * len(events)
        accepted = {n for n, flag in zip(offered, mask, strict=True) if flag == "1"}
        # What another process committed is visible: ON CONFLICT waited for it, and this
        # query has a snapshot of its own.
        other = sorted({k for n, k in enumerate(keys) if n not in accepted})
        found = conn.execute(_STORED_HASHES, [[k[i] for k in other] for i in range(3)])
        stored: dict[_Key, str] = {(t, s, r): h for t, s, r, h in found}
        return [
            "accepted"
            if n in accepted
            else "duplicate"
            if e.same_as(stored[keys[n]])
            else "conflict"
            for n, e in enumerate(events)
        ]

    def put_key(self, key_hash: str, tenant: str, scopes: frozenset[str]) -> None:
        now = self._clock()
        self._run(lambda conn: keys.put_key(conn.execute, "%s", key_hash, tenant, scopes, now))

    def revoke_key(self, key_hash: str, tenant: str | None = None) -> bool:
        return self._run(lambda conn: keys.revoke_key(conn.execute, "%s", key_hash, tenant))

    def touch_key(self, key_hash: str) -> None:
        now = self._clock()
        self._run(lambda conn: keys.touch_key(conn.execute, "%s", key_hash, now))

    def list_keys(self, tenant: str | None = None) -> list[keys.KeyInfo]:
        return self._run(lambda conn: keys.list_keys(conn.execute, "%s", tenant))

    # -- reads ------------------------------------------------------------------------------

    def _fetch(self, query: str, args: Sequence[Any]) -> list[TupleRow]:
        return self._run(lambda conn: conn.execute(query, args).fetchall())

    def find_key(self, key_hash: str) -> ApiKeyRecord | None:
        rows = self._fetch("SELECT tenant, scopes FROM api_keys WHERE key_hash = %s", [key_hash])
        if not rows:
            return None
        tenant, scopes = rows[0]
        return ApiKeyRecord(tenant, frozenset(s for s in scopes.split(",") if s))

    def get_events(self, tenant: str, response_id: str) -> list[StoredEvent]:
        rows = self._fetch(
            f"SELECT {_EVENT_COLUMNS} FROM events"
            " WHERE tenant = %s AND response_id = %s ORDER BY id",
            [tenant, response_id],
        )
        return [StoredEvent(*r) for r in rows]

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
        where, args = event_window(
            tenant,
            since_us,
            until_us,
            "%s",
            service_id=service_id,
            client_customer_key=client_customer_key,
            after_id=after_id,
        )
        query = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} ORDER BY id LIMIT %s"
        return [StoredEvent(*r) for r in self._fetch(query, [*args, limit])]

    def cost_summary(
        self, tenant: str, group_by: GroupBy, since_us: int | None, until_us: int | None
    ) -> list[SummaryRow]:
        column = _GROUP_COLUMN[group_by]
        if since_us is None and until_us is None:
            query = (
                f"SELECT {column}, currency, sum(events)::bigint, sum(cost_units),"
                " sum(cost_rem), sum(unpriced)::bigint FROM rollups_total WHERE tenant = %s"
                f" GROUP BY {column}, currency ORDER BY {column}, currency"
            )
            return [
                SummaryRow(
                    r[0] or None, r[1] or None, r[2], split_nanos(int(r[3]), int(r[4])), r[5]
                )
                for r in self._fetch(query, [tenant])
            ]
        if whole_days(since_us) and whole_days(until_us):
            where: list[str] = ["tenant = %s"]
            args: list[Any] = [tenant]
            if since_us is not None:
                where.append("day >= %s")
                args.append(since_us // US_PER_DAY)
            if until_us is not None:
                where.append("day < %s")
                args.append(until_us // US_PER_DAY)
            query = (
                f"SELECT {column}, currency, sum(events)::bigint, sum(cost_nanos),"
                f" sum(unpriced)::bigint FROM rollups_daily WHERE {' AND '.join(where)}"
                f" GROUP BY {column}, currency ORDER BY {column}, currency"
            )
            return [
                SummaryRow(r[0] or None, r[1] or None, r[2], int(r[3]), r[4])
                for r in self._fetch(query, args)
            ]
        window, window_args = event_window(tenant, since_us, until_us, "%s")
        query = (
            f"SELECT {column}, CASE WHEN cost_nanos IS NULL THEN NULL ELSE currency END AS cur,"
            " count(*), coalesce(sum(cost_nanos), 0),"  # numeric: exact past 64 bits
            " count(*) FILTER (WHERE cost_nanos IS NULL)"
            f" FROM events WHERE {window} GROUP BY {column}, cur"
            f" ORDER BY {column} NULLS FIRST, cur NULLS FIRST"  # SQLite puts NULL first
        )
        return [
            SummaryRow(r[0], r[1], r[2], int(r[3]), r[4]) for r in self._fetch(query, window_args)
        ]

    def usage(
        self,
        tenant: str,
        bucket: Bucket,
        group_by: GroupBy,
        since_us: int | None,
        until_us: int | None,
    ) -> list[UsageRow]:
        column = _GROUP_COLUMN[group_by]
        where, args = event_window(tenant, since_us, until_us, "%s")
        query = (
            f"SELECT {_BUCKET_START[bucket]} AS b, {column},"
            " CASE WHEN cost_nanos IS NULL THEN NULL ELSE currency END AS cur,"
            " count(*), coalesce(sum(cost_nanos), 0),"  # numeric: exact past 64 bits
            " count(*) FILTER (WHERE cost_nanos IS NULL)"
            f" FROM events WHERE {where} GROUP BY b, {column}, cur"
            f" ORDER BY b, {column} NULLS FIRST, cur NULLS FIRST"
        )
        return [UsageRow(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in self._fetch(query, args)]

    def ping(self) -> None:
        self._fetch("SELECT 1", [])

    def close(self) -> None:
        self._connections.close()


# -- connections --------------------------------------------------------------------------


def _refusal(exc: Exception) -> str | None:
    """Why the database refused an event for its data, or None (then it is unavailable)."""
    if isinstance(exc, psycopg.errors.NumericValueOutOfRange):
        return SUM_OUT_OF_RANGE  # only the rollups' sums can leave bigint: costs are checked
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)):
        return f"the storage refused it: {str(exc).splitlines()[0]}"
    return None


def _columns(rows: Sequence[NewEvent]) -> list[list[Any]]:
    return [
        [e.tenant for e in rows],
        [e.config_id or "" for e in rows],
        [e.service_id for e in rows],
        [e.response_id for e in rows],
        [e.timestamp_us for e in rows],
        [e.client_customer_key for e in rows],
        [e.usage for e in rows],
        [e.context for e in rows],
        [e.payload_hash for e in rows],
        [e.cost_nanos for e in rows],
        [e.currency for e in rows],
        [e.price_source for e in rows],
    ]
