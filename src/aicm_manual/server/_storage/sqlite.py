"""SQLite storage for the collector: WAL, one writer thread, read connections per thread.

    storage = SqliteStorage("data/collector.db")
    storage.ingest(events)          # committed when it returns

All writes go through one thread that groups waiting batches into one transaction, so
concurrent requests never fight over the write lock (that is what kept p99 low in the
prototype); WAL checkpoints run beside it (``_sqlite_writer``). Queries use per-thread read
connections, which WAL lets run beside the writer. Uniqueness is enforced by the table's
UNIQUE key at write time, never by a cache.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..._migrations import apply_migrations, retry_while_locked
from . import keys
from .ledger import Ledger, sqlite_atomic
from .protocol import (
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
    split_nanos,
    translating,
    whole_days,
)
from .reports import LedgerReports
from .sqlite_insert import NO_ROW, event_rows, insert_values, max_rows, padded
from .sqlite_schema import HOUR_EXPR, MIGRATIONS, US_PER_HOUR, statements
from .sqlite_writer import Checkpointer, Writer

# The write connection's settings (benchmarks/collector.py times raw inserts with them too).
WRITER_PRAGMAS = (
    "PRAGMA synchronous=NORMAL",  # WAL: durable at checkpoints, never corrupt
    # Past this the WAL file is cut back when it starts over. Above the 1 GiB where it
    # starts over under sustained load (Checkpointer), so the file is reused as it is:
    # cutting the file back stalls the writer's next transaction.
    "PRAGMA journal_size_limit=2147483648",
    # Random-uuid keys touch index pages all over the file; a 64 MiB cache keeps the hot
    # ones in memory (with the default 2 MiB most inserts read a page back).
    "PRAGMA cache_size=-65536",
)
# config_id '' is "no config" (see _storage): handed back as NULL.
_EVENT_COLUMNS = (
    "id, tenant, NULLIF(config_id, ''), service_id, response_id, timestamp_us, received_us,"
    " client_customer_key, usage, context, payload_hash, cost_nanos, currency, price_source"
)
# SQLite's sum() of integers fails past 64 bits; summed as whole units and nano remainders
# (each far from overflow) and put together in Python, a total is exact (split_nanos).
_EXACT_SUM = "sum(cost_nanos / 1000000000), sum(cost_nanos % 1000000000)"
_GROUP_COLUMN = {"client_customer_key": "client_customer_key", "service_id": "service_id"}


def _rollup_summary(rows: Iterable[Any]) -> list[SummaryRow]:
    """Summary rows from rollups, where '' stands for no customer and for unpriced."""
    return [
        SummaryRow(r[0] or None, r[1] or None, r[2], split_nanos(r[3], r[4]), r[5]) for r in rows
    ]


@translating(sqlite3.Error)
class _SqliteLedger(Ledger):
    """The ledger raising StorageError for the driver's errors, as the backend does."""


@translating(sqlite3.Error)
class SqliteStorage(LedgerReports):
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._db = self._connect()
        self._max_rows = max_rows(self._db)
        self._set_wal()
        for pragma in WRITER_PRAGMAS:
            self._db.execute(pragma)
        self._migrate()
        checkpointer = Checkpointer(self._connect)
        # Checkpoints run beside the writer; the writer's own, far past the point where the
        # WAL starts over, is only a safety net should that thread fail.
        self._db.execute(f"PRAGMA wal_autocheckpoint={2 * checkpointer.restart_frames}")
        self._writer = Writer(self._db, self._ingest_rows, checkpointer)
        self.ledger = _SqliteLedger(
            self._writer.call,
            lambda fn: fn(self._reader()),
            sqlite_atomic,
            dialect="sqlite",
            clock=self._clock,
        )

    def queue_depth(self) -> int:
        """Write jobs waiting for the writer thread (for /metrics)."""
        return self._writer.queue_depth()

    def warm_up(self) -> None:
        """Prepare the insert of every statement size on the writer, so that no request
        pays for preparing one the first time its size is used."""

        def prepare(db: sqlite3.Connection) -> None:
            for size in sorted({padded(n, self._max_rows) for n in range(1, self._max_rows + 1)}):
                insert_values(db, [NO_ROW] * size, self._max_rows)  # NULL rows: none stored

        self._writer.call(prepare)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def _set_wal(self) -> None:
        retry_while_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"), _is_locked)

    def _migrate(self) -> None:
        db = self._db
        # Read what is applied under the write lock, so two processes migrating a fresh
        # file at once take turns instead of both creating the tables.
        db.execute("BEGIN IMMEDIATE")
        try:
            scripts = [statements(script) for script in MIGRATIONS]
            apply_migrations(db.execute, scripts, self._clock())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- writes -----------------------------------------------------------------------------

    def ingest(self, events: Sequence[NewEvent]) -> list[IngestResult]:
        if not events:
            return []
        return self._writer.ingest(events, int(self._clock() * 1_000_000))

    def _ingest_rows(
        self, db: sqlite3.Connection, events: Sequence[NewEvent], received: Sequence[int]
    ) -> list[IngestResult]:
        """Insert one batch (the writer merges waiting requests into one), in the writer's
        transaction if there is one, else in one of its own; answer each event in order.
        The rollups follow by trigger (migration 3).

        Few statements of many rows each, because of the GIL: ``executemany`` lets go of it
        for every row and must win it back from the event loop each time, which stalled the
        writer to a few hundred rows/s while a request was being checked. A batch of up to
        ``_max_rows`` events is one statement and so its own transaction: no BEGIN or COMMIT
        to win the GIL back for either."""
        rows = event_rows(events, received)
        chunks = [rows[i : i + self._max_rows] for i in range(0, len(rows), self._max_rows)]
        inserted, last = 0, 0
        with contextlib.nullcontext() if len(chunks) == 1 else _atomic(db):
            for chunk in chunks:
                count, last_id = insert_values(db, chunk, self._max_rows)
                if count:
                    inserted, last = inserted + count, last_id
        if inserted == len(events):  # every event new (the usual case): nothing to look up
            return ["accepted"] * len(events)
        return self._sort_out(db, events, inserted, last)

    @staticmethod
    def _sort_out(
        db: sqlite3.Connection, events: Sequence[NewEvent], inserted: int, last: int
    ) -> list[IngestResult]:
        """Statuses when some events were not inserted: the accepted ones are the
        ``inserted`` rows of highest id up to ``last``, this connection's last insert.
        AUTOINCREMENT ids only grow and nobody else writes while the insert holds the write
        lock, so this holds even if another process writes to the file right after (ids
        are not consecutive: a row skipped as a duplicate can use one up)."""
        new = {
            (tenant, service, rid)
            for tenant, service, rid in db.execute(
                "SELECT tenant, service_id, response_id FROM events WHERE id <= ?"
                " ORDER BY id DESC LIMIT ?",
                (last, inserted),
            )
        }
        statuses: list[IngestResult] = []
        for e in events:
            key = (e.tenant, e.service_id, e.response_id)
            if key in new:
                new.discard(key)  # a later copy in the same batch is not accepted again
                statuses.append("accepted")
                continue
            (stored_hash,) = db.execute(
                "SELECT payload_hash FROM events"
                " WHERE tenant = ? AND response_id = ? AND service_id = ?",
                (e.tenant, e.response_id, e.service_id),
            ).fetchone()
            statuses.append("duplicate" if e.same_as(stored_hash) else "conflict")
        return statuses

    def put_key(self, key_hash: str, tenant: str, scopes: frozenset[str]) -> None:
        now = self._clock()
        self._writer.call(lambda db: keys.put_key(db.execute, "?", key_hash, tenant, scopes, now))

    def revoke_key(self, key_hash: str, tenant: str | None = None) -> bool:
        return self._writer.call(lambda db: keys.revoke_key(db.execute, "?", key_hash, tenant))

    def touch_key(self, key_hash: str) -> None:
        now = self._clock()
        self._writer.call(lambda db: keys.touch_key(db.execute, "?", key_hash, now))

    def list_keys(self, tenant: str | None = None) -> list[keys.KeyInfo]:
        return keys.list_keys(self._reader().execute, "?", tenant)

    # -- reads ------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            if self._closed:
                raise RuntimeError("the storage is closed")
            db = self._local.db = self._connect()
            with self._readers_lock:
                self._readers.append(db)
        return db

    def find_key(self, key_hash: str) -> ApiKeyRecord | None:
        row = (
            self._reader()
            .execute("SELECT tenant, scopes FROM api_keys WHERE key_hash = ?", (key_hash,))
            .fetchone()
        )
        if row is None:
            return None
        return ApiKeyRecord(row[0], frozenset(s for s in row[1].split(",") if s))

    def get_events(self, tenant: str, response_id: str) -> list[StoredEvent]:
        rows = self._reader().execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE tenant = ? AND response_id = ? ORDER BY id",
            (tenant, response_id),
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
        where, args = _window(
            tenant,
            since_us,
            until_us,
            service_id=service_id,
            client_customer_key=client_customer_key,
            after_id=after_id,
        )
        query = f"SELECT {_EVENT_COLUMNS} FROM events WHERE {where} ORDER BY id LIMIT ?"
        return [StoredEvent(*r) for r in self._reader().execute(query, (*args, limit))]

    def cost_summary(
        self, tenant: str, group_by: GroupBy, since_us: int | None, until_us: int | None
    ) -> list[SummaryRow]:
        column = _GROUP_COLUMN[group_by]
        if since_us is None and until_us is None:
            sql = (
                f"SELECT {column}, currency, sum(events), sum(cost_units), sum(cost_rem),"
                f" sum(unpriced) FROM rollups_total WHERE tenant = ?"
                f" GROUP BY {column}, currency ORDER BY {column}, currency"
            )
            return _rollup_summary(self._reader().execute(sql, (tenant,)))
        if whole_days(since_us) and whole_days(until_us):
            where, args = ["tenant = ?"], [tenant]
            if since_us is not None:
                where.append("day >= ?")
                args.append(since_us // US_PER_DAY)  # type: ignore[arg-type]
            if until_us is not None:
                where.append("day < ?")
                args.append(until_us // US_PER_DAY)  # type: ignore[arg-type]
            # Given days, "+" keeps the planner on the primary key's (tenant, day) rather
            # than the covering index by customer.
            sql = (
                f"SELECT {column}, currency, sum(events), {_EXACT_SUM}, sum(unpriced)"
                f" FROM rollups_daily WHERE {' AND '.join(where)}"
                f" GROUP BY +{column}, +currency ORDER BY {column}, currency"
            )
            return _rollup_summary(self._reader().execute(sql, args))
        window, window_args = _window(tenant, since_us, until_us)
        sql = (
            f"SELECT {column}, CASE WHEN cost_nanos IS NULL THEN NULL ELSE currency END AS cur,"
            f" count(*), {_EXACT_SUM}, sum(cost_nanos IS NULL)"
            f" FROM events WHERE {window} GROUP BY {column}, cur ORDER BY {column}, cur"
        )
        return [
            SummaryRow(r[0], r[1], r[2], split_nanos(r[3], r[4]), r[5])
            for r in self._reader().execute(sql, window_args)
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
        start = {
            "hour": f"({HOUR_EXPR}) * {US_PER_HOUR}",
            "day": f"(timestamp_us / {US_PER_DAY}) * {US_PER_DAY}",
            "month": "CAST(strftime('%s', timestamp_us / 1000000, 'unixepoch', 'start of month')"
            " AS INTEGER) * 1000000",
        }[bucket]
        where, args = _window(tenant, since_us, until_us)
        sql = (
            f"SELECT {start} AS b, {column},"
            " CASE WHEN cost_nanos IS NULL THEN NULL ELSE currency END AS cur,"
            f" count(*), {_EXACT_SUM}, sum(cost_nanos IS NULL)"
            f" FROM events WHERE {where} GROUP BY b, {column}, cur ORDER BY b, {column}, cur"
        )
        return [
            UsageRow(r[0], r[1], r[2], r[3], split_nanos(r[4], r[5]), r[6])
            for r in self._reader().execute(sql, args)
        ]

    def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        self._db.close()
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()


def _window(
    tenant: str, since_us: int | None, until_us: int | None, **filters: Any
) -> tuple[str, list[Any]]:
    """``event_window`` plus the same window in hours, which the hour index can serve."""
    where, args = event_window(tenant, since_us, until_us, "?", **filters)
    if since_us is not None:
        where += f" AND {HOUR_EXPR} >= ?"
        args.append(_towards_zero(since_us, US_PER_HOUR))
    if until_us is not None:
        where += f" AND {HOUR_EXPR} <= ?"
        args.append(_towards_zero(until_us, US_PER_HOUR))
    return where, args


@contextlib.contextmanager
def _atomic(db: sqlite3.Connection) -> Iterator[None]:
    """A transaction, unless the caller is already in one."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _towards_zero(a: int, b: int) -> int:
    """``a / b`` as SQLite divides integers (Python's // floors)."""
    q = abs(a) // b
    return q if a >= 0 else -q


def _is_locked(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
