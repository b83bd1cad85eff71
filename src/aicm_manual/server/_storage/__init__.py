"""The collector's storage: one protocol and its backends, opened from a database URL.

    storage = open_storage("sqlite:///data/collector.db")   # or postgresql://user@host/db

``protocol`` is the contract every backend keeps (pure types); ``sqlite`` (with its
``sqlite_writer``) and ``postgres`` implement it, each the only importer of its driver,
and translate the driver's exceptions into ``StorageError`` before they leave. May import
``errors`` and the collector's pure helpers; never the app, the CLI or the client's parts.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
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
        hint = disk_full_hint(target) if isinstance(target, Path) else ""
        raise StorageError(f"cannot open {redact(url)}: {exc}{hint}") from exc
    return storage


# SQLite says "disk I/O error" or "database or disk is full" when it cannot grow the file
# or its WAL; with this little room left, that is the reason.
LOW_DISK_BYTES = 16 * 1024 * 1024


def disk_full_hint(
    path: Path, free_bytes: Callable[[Path], int] = lambda p: shutil.disk_usage(p).free
) -> str:
    """ " (the disk holding PATH is full: N bytes free)" when it nearly is, else ""."""
    folder = path.resolve().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = free_bytes(folder)
    except OSError:
        return ""
    if free >= LOW_DISK_BYTES:
        return ""
    return f" (the disk holding {path} is full: {free} bytes free; free some space)"
