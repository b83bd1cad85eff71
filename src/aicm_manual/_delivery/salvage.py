"""Salvage: the readable rows of a damaged spool copied into a new one.

    counts = salvage("~/.cache/aicm/spool.db", "rescued.db")   # {"records", "dead_letters",
                                                                #  "unreadable"}

Part of the spool (the one place of the client that opens SQLite files), kept apart
because a damaged file is read differently: by id ranges, halved around what fails.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ..errors import SpoolError
from .spool import Spool

_RECORD_COLUMNS = "key_ref, api_base, response_id, body, enqueued_at"
# source table -> (table it is copied into, columns); records still in the inbox are
# copied as queued records. A spool of schema 1 has no inbox (its lookup fails: no rows).
_SALVAGE_TABLES = {
    "records": ("records", _RECORD_COLUMNS),
    "inbox": ("records", _RECORD_COLUMNS),
    "dead_letters": ("dead_letters", "key_ref, api_base, response_id, body, reason, failed_at"),
}


def salvage(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Copy the rows of a damaged spool that can still be read into a new spool ``dst``.

    Rows are read by id in ranges; a range that fails is halved until the ids that cannot
    be read stand alone. Leases are not copied (every row is ready again). Returns counts:
    ``records``, ``dead_letters`` copied and ``unreadable`` row ids.
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_file():
        raise SpoolError(f"no spool at {str(src)!r}")
    if dst.exists():
        raise SpoolError(f"{str(dst)!r} exists; salvage writes a new file")
    try:
        db = sqlite3.connect(src, timeout=30.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot open {str(src)!r}: {exc}") from exc
    out = Spool(dst)
    counts = {"records": 0, "dead_letters": 0, "unreadable": 0}
    try:
        for table, (into, columns) in _SALVAGE_TABLES.items():
            top = _highest_id(db, table)
            rows: list[tuple[Any, ...]] = []
            bad = _read_ids(db, f"SELECT id, {columns} FROM {table}", 1, top, rows)
            counts["unreadable"] += bad
            counts[into] += len(rows)
            marks = ", ".join("?" * len(columns.split(",")))
            insert = f"INSERT INTO {into} ({columns}) VALUES ({marks})"
            out.insert_rows(insert, rows)
    finally:
        db.close()
        out.close()
    return counts


def _highest_id(db: sqlite3.Connection, table: str) -> int:
    found: list[int] = []
    for sql in (f"SELECT max(id) FROM {table}", "SELECT seq FROM sqlite_sequence WHERE name = ?"):
        try:
            args: tuple[str, ...] = (table,) if "?" in sql else ()
            row = db.execute(sql, args).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row and row[0] is not None:
            found.append(int(row[0]))
    return max(found, default=0)


def _read_ids(
    db: sqlite3.Connection, select: str, low: int, high: int, rows: list[tuple[Any, ...]]
) -> int:
    """Append the readable rows with ids in [low, high] to ``rows`` (without the id);
    return how many ids could not be read. A damaged page can also yield garbage rows:
    only rows with an id in range, seen once, and fields of the right types are kept."""
    pending = [(low, high)]
    bad = 0
    seen: set[int] = set()
    while pending:
        lo, hi = pending.pop()
        if lo > hi:
            continue
        if hi - lo >= 512:  # whole ranges first: one query per 512 ids on a sound file
            mid = lo + 511
            pending += [(mid + 1, hi), (lo, mid)]
            continue
        try:
            found = db.execute(f"{select} WHERE id BETWEEN ? AND ? ORDER BY id", (lo, hi))
            for row in found.fetchall():
                if _plausible(row, lo, hi) and row[0] not in seen:
                    seen.add(row[0])
                    rows.append(tuple(row[1:]))
        except sqlite3.DatabaseError:
            if lo == hi:
                bad += 1
            else:
                mid = (lo + hi) // 2
                pending += [(mid + 1, hi), (lo, mid)]
    return bad


def _plausible(row: tuple[Any, ...], lo: int, hi: int) -> bool:
    rid, key_ref, api_base, response_id, body, *rest = row
    return (
        isinstance(rid, int)
        and lo <= rid <= hi
        and all(isinstance(v, str) for v in (key_ref, api_base, response_id))
        and isinstance(body, bytes)
        and isinstance(rest[-1], float | int)
    )
