"""The spool file's tables: records waiting for delivery (leased by one process at a time),
the inbox where callers write them, and dead letters. Each migration runs once per file
(``schema_migrations``)."""

from __future__ import annotations

from dataclasses import dataclass

from .._migrations import split_statements


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


# Spools made before migrations were recorded hold a ``meta`` table with schema_version 1;
# migration 1 creates only what is missing, so they are taken up unchanged.
MIGRATIONS = [
    split_statements(
        """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_ref TEXT NOT NULL,
    api_base TEXT NOT NULL,
    response_id TEXT NOT NULL,
    body BLOB NOT NULL,
    enqueued_at REAL NOT NULL,
    lease_owner TEXT,
    lease_expires REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS records_ready ON records (key_ref, lease_expires, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_ref TEXT NOT NULL,
    api_base TEXT NOT NULL,
    response_id TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""
    ),
    # Callers write to ``inbox``, a table with neither an index nor AUTOINCREMENT: a commit
    # then writes one b-tree page instead of three (the row, its records_ready entry and
    # sqlite_sequence), about half of put()'s time. Workers move inbox rows into
    # ``records`` in batches (Spool.take_in, Spool.claim), where ids are never reused and
    # leases live. The records' index loses lease_expires: a claim or a release then
    # rewrites rows only, not their index entries (nothing searched by lease through it).
    split_statements(
        """
DROP INDEX IF EXISTS records_ready;
CREATE INDEX IF NOT EXISTS records_key ON records (key_ref);
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY,
    key_ref TEXT NOT NULL,
    api_base TEXT NOT NULL,
    response_id TEXT NOT NULL,
    body BLOB NOT NULL,
    enqueued_at REAL NOT NULL
);
"""
    ),
]
