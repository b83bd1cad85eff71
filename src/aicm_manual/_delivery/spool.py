"""The persistent spool: a SQLite file where records wait until the collector has them.

    spool = Spool(path, owner=owner_id())
    spool.put(key_ref, api_base, response_id, body)      # committed before it returns
    spool.take_in(10_000)                                # the worker: inbox -> records
    rows = spool.claim({key_ref}, limit=1000, lease_seconds=60)
    spool.ack([r.id for r in rows])                      # delete once delivered

Guarantees: WAL with ``synchronous=NORMAL``, so a committed ``put`` survives the process
being killed (not a power cut). Claims are atomic (``BEGIN IMMEDIATE``) and leased to an
owner until an expiry; a process never takes rows another live process holds, but rows of
an owner that died on this host are taken back at once. Callers write to an inbox table
that the workers (any process's) move into ``records`` in batches; rows count, and a full
spool's backpressure can drop them, while they wait there. Rows store a key *reference* (a
SHA-256), never the key. Rejected records move to ``dead_letters`` with the reason. Each
Spool is one connection behind its own lock: give each thread role its own Spool."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from .._migrations import NewerSchemaError, apply_migrations, retry_while_locked
from ..errors import SpoolError
from .owners import owner_alive, owner_id
from .spool_admin import SpoolAdmin
from .spool_schema import MIGRATIONS, SpoolRow

_BUSY_MS = 30_000  # how long a statement waits for another connection's write


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


class Spool(SpoolAdmin):
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
        self._inbox = True  # False only for a spool of schema 1 opened with create=False
        _open_spools.add(self)
        if not create and not self.path.is_file():
            raise SpoolError(f"no spool at {str(self.path)!r}")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False
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
            known = len(MIGRATIONS)
            raise SpoolError(f"spool {str(self.path)!r} has {NewerSchemaError(version, known)}")
        self._inbox = "inbox" in tables

    def _run(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._lock:
            try:
                return fn(self._db)
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {str(self.path)!r}: {exc}") from exc

    def _transaction(self, fn: Callable[[sqlite3.Connection], Any], wait: bool = True) -> Any:
        """``fn`` in one write transaction; ``wait=False`` fails at once (SpoolError,
        "locked") while another connection writes. Under the one lock, so no other statement
        of this connection runs without the usual busy timeout."""

        def run(db: sqlite3.Connection) -> Any:
            if not wait:
                db.execute("PRAGMA busy_timeout=0")
            try:
                db.execute("BEGIN IMMEDIATE")
            finally:
                if not wait:
                    db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
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
        """Store one record (in the inbox); committed when this returns."""
        now = self._clock()
        self._run(
            lambda db: db.execute(
                "INSERT INTO inbox (key_ref, api_base, response_id, body, enqueued_at)"
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
                "INSERT INTO inbox (key_ref, api_base, response_id, body, enqueued_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(key_ref, api_base, rid, body, now) for rid, body in rows],
            )
        )

    def count(self) -> int:
        sql = "SELECT count(*) FROM records"
        if self._inbox:
            sql = f"SELECT ({sql}) + (SELECT count(*) FROM inbox)"
        return int(self._run(lambda db: db.execute(sql).fetchone()[0]))

    def take_in(self, limit: int, wait: bool = True) -> int:
        """Move up to ``limit`` of the oldest inbox rows (any process's) into ``records``,
        in order, in one transaction; returns how many. Cheap when the inbox is empty.
        ``wait=False`` gives up at once (0) while another connection writes, instead of
        sleeping in SQLite's busy handler (up to 100 ms a turn) behind a stream of puts."""
        if not self._inbox or self._run(
            lambda db: db.execute("SELECT min(id) FROM inbox").fetchone()[0] is None
        ):
            return 0
        try:
            moved: int = self._transaction(lambda db: self._move(db, limit), wait)
        except SpoolError as exc:
            if wait or not _is_locked(exc.__cause__ or exc):
                raise
            return 0
        return moved

    def _move(self, db: sqlite3.Connection, limit: int) -> int:
        """take_in's statements, inside the caller's write transaction."""
        first = db.execute("SELECT min(id) FROM inbox").fetchone()[0] if self._inbox else None
        if first is None:
            return 0
        # Inbox ids grow (a row moved or dropped leaves a gap): the ids below first + limit.
        top = first + limit
        db.execute(
            "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at)"
            " SELECT key_ref, api_base, response_id, body, enqueued_at FROM inbox"
            " WHERE id < ? ORDER BY id",
            (top,),
        )
        return int(db.execute("DELETE FROM inbox WHERE id < ?", (top,)).rowcount)

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
            if len(rows) < n and self._inbox:  # the rest from the inbox (newer rows)
                waiting = db.execute(
                    "SELECT -id, key_ref, api_base, response_id, body, enqueued_at, 0"
                    " FROM inbox WHERE key_ref = ? AND api_base = ? ORDER BY id LIMIT ?",
                    (key_ref, api_base, n - len(rows)),
                ).fetchall()
                db.executemany("DELETE FROM inbox WHERE id = ?", [(-r[0],) for r in waiting])
                rows += waiting
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
        args: tuple[Any, ...] = (self.owner, now, key_ref, api_base)
        if self._inbox:  # inbox rows are nobody's yet: claimable by any process
            sql += " UNION ALL SELECT NULL, count(*) FROM inbox WHERE key_ref = ? AND api_base = ?"
            args += (key_ref, api_base)
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

        lease = (self.owner, now + lease_seconds)

        def run(db: sqlite3.Connection) -> list[SpoolRow]:
            rows = db.execute(
                f"UPDATE records SET lease_owner = ?, lease_expires = ?, attempts = attempts + 1"
                f" WHERE id IN (SELECT id FROM records NOT INDEXED WHERE key_ref IN ({marks})"
                f" AND lease_expires < ?{skip} ORDER BY id LIMIT ?)"
                f" RETURNING id, key_ref, api_base, response_id, body, enqueued_at, attempts",
                (*lease, *key_refs, now, *pairs, limit),
            ).fetchall()
            if len(rows) < limit and self._inbox:
                # Then the inbox's (newer) rows of these keys, moved in already leased: one
                # write per row instead of a move and a claim (the drain's hot path).
                pick = f"SELECT id FROM inbox WHERE key_ref IN ({marks}){skip} ORDER BY id LIMIT ?"
                args = (*key_refs, *pairs, limit - len(rows))
                rows += db.execute(
                    "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at,"
                    " lease_owner, lease_expires, attempts) SELECT key_ref, api_base,"
                    f" response_id, body, enqueued_at, ?, ?, 1 FROM inbox WHERE id IN ({pick})"
                    " ORDER BY id"
                    " RETURNING id, key_ref, api_base, response_id, body, enqueued_at, attempts",
                    (*lease, *args),
                ).fetchall()
                db.execute(f"DELETE FROM inbox WHERE id IN ({pick})", args)
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

    # -- inspection (health, CLI; listing and changing rows: SpoolAdmin) -------------------

    def stats(self) -> dict[str, Any]:
        now = self._clock()

        def run(db: sqlite3.Connection) -> dict[str, Any]:
            rows = "records"
            if self._inbox:
                rows = (
                    "(SELECT key_ref, enqueued_at, lease_owner, lease_expires FROM records"
                    " UNION ALL SELECT key_ref, enqueued_at, NULL, 0 FROM inbox)"
                )
            per_key = db.execute(
                "SELECT key_ref, count(*), min(enqueued_at),"
                " sum(CASE WHEN lease_expires >= ? AND lease_owner IS NOT NULL THEN 1 ELSE 0 END)"
                f" FROM {rows} GROUP BY key_ref",
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
