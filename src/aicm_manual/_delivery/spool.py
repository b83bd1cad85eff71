"""The persistent spool: a SQLite file where records wait until the collector has them.

    spool = Spool(path, owner=owner_id())
    spool.put(key_ref, api_base, response_id, body)      # committed before it returns
    rows = spool.claim({key_ref}, limit=1000, lease_seconds=60)
    spool.ack([r.id for r in rows])                      # delete once delivered

Guarantees: WAL with ``synchronous=NORMAL``, so a committed ``put`` survives the process
being killed (not a power cut). Claims are atomic (``BEGIN IMMEDIATE``) and leased to an
owner until an expiry; a process never takes rows another live process holds, but rows of
an owner that died on this host are taken back at once. Rows store a key *reference* (a
SHA-256), never the key. Rejected records move to ``dead_letters`` with the reason. Each
Spool is one connection behind its own lock: give each thread role its own Spool."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._migrations import NewerSchemaError, apply_migrations, retry_while_locked
from ..errors import SpoolError
from .owners import owner_alive, owner_id
from .spool_schema import MIGRATIONS


def _is_locked(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


@dataclass(frozen=True, slots=True)
class SpoolRow:
    id: int
    key_ref: str
    api_base: str
    response_id: str
    body: bytes
    enqueued_at: float
    attempts: int = 0
    reason: str | None = None  # dead letters only


class Spool:
    def __init__(
        self,
        path: str | Path,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        create: bool = True,
        checkpoints: bool = True,
    ) -> None:
        """Open (and with ``create``, make) a spool. ``create=False`` opens only an existing
        spool file and changes nothing in it on opening (for inspection).
        ``checkpoints=False`` leaves WAL checkpoints to other connections (the worker's),
        so callers' commits never pay for copying the log back into the file."""
        self.path = Path(path).expanduser()
        self.owner = owner or owner_id()
        self._clock = clock
        self._lock = threading.Lock()
        _open_spools.add(self)
        if not create and not self.path.is_file():
            raise SpoolError(f"no spool at {str(self.path)!r}")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            if not checkpoints:
                self._db.execute("PRAGMA wal_autocheckpoint=0")
            if create:
                self._create()
            elif not self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'records'"
            ).fetchone():
                self._db.close()
                raise SpoolError(f"{str(self.path)!r} is not an aicm-manual spool")
            self._check_version(create)
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"cannot open spool {str(self.path)!r}: {exc}") from exc

    def _create(self) -> None:
        retry_while_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"), _is_locked)
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Inside a write transaction, so processes starting on a fresh file take turns.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            apply_migrations(self._db.execute, MIGRATIONS, self._clock())
            self._db.execute("COMMIT")
        except NewerSchemaError as exc:
            self._db.execute("ROLLBACK")
            raise SpoolError(f"spool {str(self.path)!r} has {exc}") from None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _check_version(self, create: bool) -> None:
        if create:
            return  # _create applied (or refused) the migrations
        tables = {
            name
            for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        version = 1  # a spool from before schema_migrations
        if "schema_migrations" in tables:
            version = self._db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        if version is not None and version > len(MIGRATIONS):
            raise SpoolError(f"spool {str(self.path)!r} has {NewerSchemaError(version, 1)}")

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {str(self.path)!r}: {exc}") from exc

    def _transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        def run(db: sqlite3.Connection) -> Any:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return self._run(run)

    # -- callers ---------------------------------------------------------------------------

    def put(self, key_ref: str, api_base: str, response_id: str, body: bytes) -> None:
        """Store one record; committed when this returns."""
        now = self._clock()
        self._run(
            lambda db: db.execute(
                "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key_ref, api_base, response_id, body, now),
            )
        )

    def put_many(self, key_ref: str, api_base: str, rows: Sequence[tuple[str, bytes]]) -> None:
        """Store (response_id, body) rows in one transaction; all committed when this
        returns, or none."""
        now = self._clock()
        self._transaction(
            lambda db: db.executemany(
                "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(key_ref, api_base, rid, body, now) for rid, body in rows],
            )
        )

    def count(self) -> int:
        return int(self._run(lambda db: db.execute("SELECT count(*) FROM records").fetchone()[0]))

    def drop_oldest(self, n: int, key_ref: str, api_base: str) -> list[SpoolRow]:
        """Delete and return the ``n`` oldest unleased records of one (endpoint, key) (the
        backpressure policy never reaches into another owner's rows)."""
        now = self._clock()

        def run(db: sqlite3.Connection) -> list[SpoolRow]:
            rows = db.execute(
                "SELECT id, key_ref, api_base, response_id, body, enqueued_at, attempts"
                " FROM records WHERE key_ref = ? AND api_base = ? AND lease_expires < ?"
                " ORDER BY id LIMIT ?",
                (key_ref, api_base, now, n),
            ).fetchall()
            db.executemany("DELETE FROM records WHERE id = ?", [(r[0],) for r in rows])
            return [SpoolRow(*r) for r in rows]

        result: list[SpoolRow] = self._transaction(run)
        return result

    # -- the worker ------------------------------------------------------------------------

    def count_for(self, key_ref: str, api_base: str) -> int:
        """Rows of one (endpoint, key) this process holds or may claim: all but those a live
        process of another owner holds (rows of an owner that died count: they are taken
        back, so a flush waits for them)."""
        now = self._clock()
        # One statement, so the rows are counted from one snapshot of the file.
        sql = (
            "SELECT CASE WHEN lease_owner IS NULL OR lease_owner = ? OR lease_expires < ?"
            " THEN NULL ELSE lease_owner END AS holder, count(*) FROM records"
            " WHERE key_ref = ? AND api_base = ? GROUP BY holder"
        )
        args = (self.owner, now, key_ref, api_base)
        held: list[tuple[str | None, int]] = self._run(lambda db: db.execute(sql, args).fetchall())
        return sum(n for holder, n in held if holder is None or not owner_alive(holder))

    def claim(
        self,
        key_refs: Collection[str],
        limit: int,
        lease_seconds: float,
        exclude: Collection[tuple[str, str]] = (),
    ) -> list[SpoolRow]:
        """Lease up to ``limit`` ready rows whose key this process knows, oldest first,
        leaving out the (key_ref, api_base) pairs in ``exclude`` (backing off, or full).

        Read in id order without the index: the oldest ready rows are usually near the
        head, so the scan stops after about ``limit`` rows, where the index would find
        every ready row of the key and sort them all (20 ms at 50,000 rows)."""
        if not key_refs or limit <= 0:
            return []
        now = self._clock()
        marks = ",".join("?" * len(key_refs))
        skip = ""
        pairs: list[str] = []
        if exclude:
            skip = (
                " AND (key_ref, api_base) NOT IN (VALUES "
                + ",".join("(?, ?)" for _ in exclude)
                + ")"
            )
            for ref, base in exclude:
                pairs += [ref, base]

        def run(db: sqlite3.Connection) -> list[SpoolRow]:
            rows = db.execute(
                f"UPDATE records SET lease_owner = ?, lease_expires = ?, attempts = attempts + 1"
                f" WHERE id IN (SELECT id FROM records NOT INDEXED WHERE key_ref IN ({marks})"
                f" AND lease_expires < ?{skip} ORDER BY id LIMIT ?)"
                f" RETURNING id, key_ref, api_base, response_id, body, enqueued_at, attempts",
                (self.owner, now + lease_seconds, *key_refs, now, *pairs, limit),
            ).fetchall()
            return sorted((SpoolRow(*r) for r in rows), key=lambda r: r.id)

        result: list[SpoolRow] = self._transaction(run)
        return result

    def ack(self, ids: Sequence[int]) -> None:
        """Delete delivered rows this owner holds (a row whose lease passed to another
        process is left to that process, which will find it delivered)."""
        if ids:
            self._transaction(
                lambda db: db.executemany(
                    "DELETE FROM records WHERE id = ? AND lease_owner = ?",
                    [(i, self.owner) for i in ids],
                )
            )

    def release(self, ids: Sequence[int], not_before: float) -> None:
        """Give rows back, claimable by anyone from ``not_before`` (wall clock)."""
        if ids:
            self._transaction(
                lambda db: db.executemany(
                    "UPDATE records SET lease_owner = NULL, lease_expires = ? WHERE id = ?",
                    [(not_before, i) for i in ids],
                )
            )

    def dead_letter(self, rows: Iterable[tuple[SpoolRow, str]]) -> None:
        """Move rows to dead_letters with their reasons."""
        items = list(rows)
        if not items:
            return
        now = self._clock()

        def run(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO dead_letters (key_ref, api_base, response_id, body, reason,"
                " failed_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.key_ref, r.api_base, r.response_id, r.body, why, now) for r, why in items],
            )
            db.executemany("DELETE FROM records WHERE id = ?", [(r.id,) for r, _ in items])

        self._transaction(run)

    def add_dead_letters(self, items: Iterable[tuple[str, str, str, bytes, str]]) -> None:
        """Store dead letters of records that never were in the spool (memory queue)."""
        rows = list(items)
        if rows:
            now = self._clock()
            self._transaction(
                lambda db: db.executemany(
                    "INSERT INTO dead_letters (key_ref, api_base, response_id, body, reason,"
                    " failed_at) VALUES (?, ?, ?, ?, ?, ?)",
                    [(*r, now) for r in rows],
                )
            )

    def free_dead_owners(self) -> int:
        """Release leases held by processes of this host that no longer exist."""
        now = self._clock()
        owners = self._run(
            lambda db: db.execute(
                "SELECT DISTINCT lease_owner FROM records"
                " WHERE lease_owner IS NOT NULL AND lease_expires >= ?",
                (now,),
            ).fetchall()
        )
        dead = [o for (o,) in owners if o != self.owner and not owner_alive(o)]
        freed = 0
        for owner in dead:

            def free(db: sqlite3.Connection, owner: str = owner) -> int:
                cursor = db.execute(
                    "UPDATE records SET lease_owner = NULL, lease_expires = 0"
                    " WHERE lease_owner = ?",
                    (owner,),
                )
                return int(cursor.rowcount)

            freed += self._transaction(free)
        return freed

    # -- inspection (health, CLI) ----------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = self._clock()

        def run(db: sqlite3.Connection) -> dict[str, Any]:
            per_key = db.execute(
                "SELECT key_ref, count(*), min(enqueued_at),"
                " sum(CASE WHEN lease_expires >= ? AND lease_owner IS NOT NULL THEN 1 ELSE 0 END)"
                " FROM records GROUP BY key_ref",
                (now,),
            ).fetchall()
            dead = db.execute(
                "SELECT key_ref, count(*) FROM dead_letters GROUP BY key_ref"
            ).fetchall()
            return {
                "path": str(self.path),
                "records": sum(r[1] for r in per_key),
                "dead_letters": sum(r[1] for r in dead),
                "oldest_enqueued_at": min((r[2] for r in per_key), default=None),
                "by_key": {
                    r[0]: {"records": r[1], "leased": r[3], "oldest_enqueued_at": r[2]}
                    for r in per_key
                },
                "dead_by_key": {r[0]: r[1] for r in dead},
            }

        result: dict[str, Any] = self._run(run)
        return result

    def rows(self, table: str = "records", limit: int = 50) -> list[SpoolRow]:
        if table == "records":
            sql = (
                "SELECT id, key_ref, api_base, response_id, body, enqueued_at, attempts"
                " FROM records ORDER BY id LIMIT ?"
            )
            return [
                SpoolRow(*r) for r in self._run(lambda db: db.execute(sql, (limit,)).fetchall())
            ]
        if table == "dead_letters":
            sql = (
                "SELECT id, key_ref, api_base, response_id, body, failed_at, 0, reason"
                " FROM dead_letters ORDER BY id LIMIT ?"
            )
            return [
                SpoolRow(*r) for r in self._run(lambda db: db.execute(sql, (limit,)).fetchall())
            ]
        raise ValueError(f"unknown table {table!r}")

    def requeue(self, ids: Sequence[int] | None) -> int:
        """Move dead letters (all when ``ids`` is None) back to the queue."""
        now = self._clock()
        where, args = _selection(ids)

        def run(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at)"
                f" SELECT key_ref, api_base, response_id, body, ? FROM dead_letters{where}",
                (now, *args),
            )
            db.execute(f"DELETE FROM dead_letters{where}", args)
            return int(cursor.rowcount)

        result: int = self._transaction(run)
        return result

    def purge(self, table: str, ids: Sequence[int] | None) -> int:
        """Delete rows of ``table`` (all when ``ids`` is None); an empty list deletes nothing."""
        if table not in ("records", "dead_letters"):
            raise ValueError(f"unknown table {table!r}")
        where, args = _selection(ids)
        cursor = self._transaction(lambda db: db.execute(f"DELETE FROM {table}{where}", args))
        return int(cursor.rowcount)

    def insert_rows(self, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run one INSERT for many rows in one transaction (salvage)."""
        self._transaction(lambda db: db.executemany(sql, rows))

    def close(self) -> None:
        with self._lock:
            self._db.close()


# SQLite is not safe across fork() while another thread is inside it: a child could inherit
# its mutexes held and hang on its first statement. Every spool's lock is taken before a
# fork, so no thread of this process is inside SQLite at that moment, and given back after.
_open_spools: weakref.WeakSet[Spool] = weakref.WeakSet()
_held: list[threading.Lock] = []  # the locks taken for the fork in progress


def _before_fork() -> None:
    for spool in sorted(list(_open_spools), key=id):
        spool._lock.acquire()
        _held.append(spool._lock)


def _after_fork() -> None:
    while _held:
        _held.pop().release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork
    )


def _selection(ids: Sequence[int] | None) -> tuple[str, tuple[int, ...]]:
    if ids is None:
        return "", ()
    if not ids:
        return " WHERE 0", ()
    return f" WHERE id IN ({','.join('?' * len(ids))})", tuple(int(i) for i in ids)
