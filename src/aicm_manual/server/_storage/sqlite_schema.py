"""The collector's SQLite schema, as migrations: migration N is recorded as version N.

Never edit a migration that has shipped; add one. ``_migrations.apply_migrations`` runs
them (split by ``statements``, since a trigger's body holds semicolons of its own).
"""

from __future__ import annotations

import sqlite3

from .ledger import migration, stats_migration
from .protocol import US_PER_DAY
from .totals import TOTALS_FROM_DAILY, TOTALS_TABLE


def statements(script: str) -> list[str]:
    """A script's statements, split where SQLite says one is complete."""
    found: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                found.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"incomplete SQL statement in a migration: {pending!r}")
    return found


US_PER_HOUR = 3_600_000_000
SUM_OVERFLOW = "aicm: daily cost sum out of range"  # the trigger's message, read by the writer
HOUR_EXPR = f"timestamp_us / {US_PER_HOUR}"  # SQLite's integer division: towards zero

MIGRATIONS: list[str] = [
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        config_id TEXT NOT NULL,
        service_id TEXT NOT NULL,
        response_id TEXT NOT NULL,
        timestamp_us INTEGER NOT NULL,
        received_us INTEGER NOT NULL,
        client_customer_key TEXT,
        usage BLOB NOT NULL,
        context BLOB,
        payload_hash TEXT NOT NULL,
        cost_nanos INTEGER,
        currency TEXT,
        price_source TEXT,
        UNIQUE (tenant, response_id, service_id)
    );
    CREATE INDEX events_tenant_time ON events (tenant, timestamp_us);
    CREATE TABLE rollups_daily (
        tenant TEXT NOT NULL,
        day INTEGER NOT NULL,
        client_customer_key TEXT NOT NULL,
        service_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        events INTEGER NOT NULL,
        cost_nanos INTEGER NOT NULL,
        unpriced INTEGER NOT NULL,
        PRIMARY KEY (tenant, day, client_customer_key, service_id, currency)
    );
    CREATE TABLE api_keys (
        key_hash TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # Time windows through the event's hour: within an hour, entries are in rowid order, so
    # a new row's goes at the end of its hour's run. An index on the exact timestamp took one
    # page write per row for timestamps that are not in arrival order. Queries add the hour
    # bounds (_window).
    # The rollups' covering index serves costs/summary over every day without the table, and
    # by customer without a sort either.
    f"""
    CREATE INDEX events_tenant_hour ON events (tenant, {HOUR_EXPR});
    DROP INDEX events_tenant_time;
    CREATE INDEX rollups_daily_customer ON rollups_daily
        (tenant, client_customer_key, currency, day, service_id, events, cost_nanos, unpriced);
    """,
    # The rollups follow the events inside SQLite, so that a batch is one statement (see
    # SqliteStorage._ingest_rows). Same keys as _storage.rollup_key; the day is floored,
    # as Python's // does, for timestamps before 1970 too.
    f"""
    CREATE TRIGGER events_rollup AFTER INSERT ON events BEGIN
        INSERT INTO rollups_daily VALUES (
            NEW.tenant,
            CASE WHEN NEW.timestamp_us >= 0 THEN NEW.timestamp_us / {US_PER_DAY}
                 ELSE (NEW.timestamp_us + 1) / {US_PER_DAY} - 1 END,
            coalesce(NEW.client_customer_key, ''),
            NEW.service_id,
            CASE WHEN NEW.cost_nanos IS NULL THEN '' ELSE coalesce(NEW.currency, '') END,
            1, coalesce(NEW.cost_nanos, 0), NEW.cost_nanos IS NULL)
        ON CONFLICT (tenant, day, client_customer_key, service_id, currency) DO UPDATE SET
            events = events + 1,
            cost_nanos = cost_nanos + excluded.cost_nanos,
            unpriced = unpriced + excluded.unpriced;
    END
    """,
    # A daily rollup's cost stays a 64-bit integer: SQLite would turn an overflowing sum
    # into a float. The event that would carry it past is refused (the writer answers it
    # alone, see _storage.protocol.isolate); events before and after it are kept.
    f"""
    DROP TRIGGER events_rollup;
    CREATE TRIGGER events_rollup AFTER INSERT ON events BEGIN
        INSERT INTO rollups_daily VALUES (
            NEW.tenant,
            CASE WHEN NEW.timestamp_us >= 0 THEN NEW.timestamp_us / {US_PER_DAY}
                 ELSE (NEW.timestamp_us + 1) / {US_PER_DAY} - 1 END,
            coalesce(NEW.client_customer_key, ''),
            NEW.service_id,
            CASE WHEN NEW.cost_nanos IS NULL THEN '' ELSE coalesce(NEW.currency, '') END,
            1, coalesce(NEW.cost_nanos, 0), NEW.cost_nanos IS NULL)
        ON CONFLICT (tenant, day, client_customer_key, service_id, currency) DO UPDATE SET
            events = events + 1,
            cost_nanos = CASE
                WHEN (excluded.cost_nanos > 0
                      AND cost_nanos > 9223372036854775807 - excluded.cost_nanos)
                  OR (excluded.cost_nanos < 0
                      AND cost_nanos < (-9223372036854775807 - 1) - excluded.cost_nanos)
                THEN RAISE(ABORT, '{SUM_OVERFLOW}')
                ELSE cost_nanos + excluded.cost_nanos END,
            unpriced = unpriced + excluded.unpriced;
    END
    """,
    # When each key was last used (``keys list``), written at most once a minute per key.
    "ALTER TABLE api_keys ADD COLUMN last_used_at REAL;",
    # Tenant price rules, budgets, webhooks and the webhook outbox (see ledger).
    migration("sqlite"),
    # Records by status and rejection reasons per tenant and hour (ingest health).
    stats_migration(),
    # All-time totals per customer, service and currency: costs/summary over an open window
    # reads these instead of every daily rollup (which grow with days x customers). The
    # cost is kept as whole units and a nano remainder (``split_nanos``), so that a total
    # over many days never leaves 64 bits where each day's fits. WITHOUT ROWID: the
    # trigger's upsert updates one b-tree, not a table and its key's index.
    f"""
    {TOTALS_TABLE.rstrip().rstrip(";")} WITHOUT ROWID;
    INSERT INTO rollups_total {TOTALS_FROM_DAILY};
    DROP TRIGGER events_rollup;
    CREATE TRIGGER events_rollup AFTER INSERT ON events BEGIN
        INSERT INTO rollups_daily VALUES (
            NEW.tenant,
            CASE WHEN NEW.timestamp_us >= 0 THEN NEW.timestamp_us / {US_PER_DAY}
                 ELSE (NEW.timestamp_us + 1) / {US_PER_DAY} - 1 END,
            coalesce(NEW.client_customer_key, ''),
            NEW.service_id,
            CASE WHEN NEW.cost_nanos IS NULL THEN '' ELSE coalesce(NEW.currency, '') END,
            1, coalesce(NEW.cost_nanos, 0), NEW.cost_nanos IS NULL)
        ON CONFLICT (tenant, day, client_customer_key, service_id, currency) DO UPDATE SET
            events = events + 1,
            cost_nanos = CASE
                WHEN (excluded.cost_nanos > 0
                      AND cost_nanos > 9223372036854775807 - excluded.cost_nanos)
                  OR (excluded.cost_nanos < 0
                      AND cost_nanos < (-9223372036854775807 - 1) - excluded.cost_nanos)
                THEN RAISE(ABORT, '{SUM_OVERFLOW}')
                ELSE cost_nanos + excluded.cost_nanos END,
            unpriced = unpriced + excluded.unpriced;
        INSERT INTO rollups_total VALUES (
            NEW.tenant,
            coalesce(NEW.client_customer_key, ''),
            NEW.service_id,
            CASE WHEN NEW.cost_nanos IS NULL THEN '' ELSE coalesce(NEW.currency, '') END,
            1, coalesce(NEW.cost_nanos, 0) / 1000000000, coalesce(NEW.cost_nanos, 0) % 1000000000,
            NEW.cost_nanos IS NULL)
        ON CONFLICT (tenant, client_customer_key, service_id, currency) DO UPDATE SET
            events = events + 1,
            cost_units = cost_units + excluded.cost_units,
            cost_rem = cost_rem + excluded.cost_rem,
            unpriced = unpriced + excluded.unpriced;
    END
    """,
]
