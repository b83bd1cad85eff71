"""Schema migrations in one style for every database the project writes (the client's
spool, the collector's SQLite file and its PostgreSQL schema).

    apply_migrations(execute, [["CREATE TABLE ...", "CREATE INDEX ..."]], now=time.time())

A migration is a list of statements; migration N is recorded as version N in
``schema_migrations`` once applied. The caller holds the transaction and whatever lock
keeps two processes from migrating at once. Pure: the connection comes in as ``execute``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

Execute = Callable[[str, Sequence[object]], Iterable[Sequence[Any]]]
_T = TypeVar("_T")


class NewerSchemaError(Exception):
    """The database was migrated by a newer version; each backend words it as its own error."""

    def __init__(self, found: int, known: int) -> None:
        self.found, self.known = found, known
        super().__init__(f"schema version {found}; this aicm-manual understands up to {known}")


def apply_migrations(
    execute: Execute, migrations: Sequence[Sequence[str]], now: float, param: str = "?"
) -> list[int]:
    """Apply the migrations not yet recorded, in order; returns the versions applied."""
    execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)",
        (),
    )
    done = {int(row[0]) for row in execute("SELECT version FROM schema_migrations", ())}
    if done and max(done) > len(migrations):
        raise NewerSchemaError(max(done), len(migrations))
    applied = []
    for version, statements in enumerate(migrations, start=1):
        if version in done:
            continue
        for statement in statements:
            execute(statement, ())
        execute(f"INSERT INTO schema_migrations VALUES ({param}, {param})", (version, now))
        applied.append(version)
    return applied


def split_statements(script: str) -> list[str]:
    """A script without triggers or quoted semicolons, as its statements."""
    return [s.strip() for s in script.split(";") if s.strip()]


def retry_while_locked(
    action: Callable[[], _T], is_locked: Callable[[Exception], bool], attempts: int = 300
) -> _T:
    """Run ``action``, again every 10 ms (up to ``attempts`` times) while it fails because
    another process holds the file: switching SQLite to WAL needs a moment alone with the
    file and fails at once, whatever the busy timeout, while another process starts."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception as exc:
            if not is_locked(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01)
    raise AssertionError("unreachable")  # pragma: no cover
