"""The collector's storage: one protocol and its backends, opened from a database URL.

    storage = open_storage("sqlite:///data/collector.db")   # or postgresql://user@host/db

``protocol`` is the contract every backend keeps (pure types); ``sqlite`` (with its
``sqlite_writer``) and ``postgres`` implement it, each the only importer of its driver,
and translate the driver's exceptions into ``StorageError`` before they leave. May import
``errors`` and the collector's pure helpers; never the app, the CLI or the client's parts.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import ConfigError, StorageError
from .protocol import Storage


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def check_url(url: str) -> None:
    """Refuse a URL naming no backend we have, before anything else is opened."""
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(
            f"database URL {redact(url)!r} must start with sqlite:/// or postgresql://"
        )


def open_storage(url: str, *, create: bool = True) -> Storage:
    """Open (and migrate) the database a URL names; failures are StorageError.

    ``create=False`` refuses a SQLite file that does not exist yet (for read-only
    commands, where a typo must not leave an empty database behind).
    """
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStorage

        opener: type = SqliteStorage
        target: object = Path(url[len("sqlite:///") :]).expanduser()
        if not create and not Path(str(target)).is_file():
            raise StorageError(f"no database at {target}")
    elif url.startswith(("postgresql://", "postgres://")):
        try:
            from .postgres import PostgresStorage
        except ImportError as exc:
            raise ConfigError(
                "PostgreSQL storage needs its extra: pip install 'aicm-manual[postgres]'"
            ) from exc
        opener, target = PostgresStorage, url
    else:
        raise ConfigError(
            f"database URL {redact(url)!r} must start with sqlite:/// or postgresql://"
        )
    try:
        storage: Storage = opener(target)
    except Exception as exc:  # sqlite3 or psycopg errors: name the database, keep the cause
        raise StorageError(f"cannot open {redact(url)}: {exc}") from exc
    return storage
