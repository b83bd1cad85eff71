"""The spool file's tables: records waiting for delivery (leased by one process at a time)
and dead letters. Each migration runs once per file (``schema_migrations``)."""

from __future__ import annotations

from .._migrations import split_statements

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
    )
]
