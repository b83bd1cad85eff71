"""Database URLs: ``sqlite:///path/to/file.db`` or ``postgresql://user@host/db``."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ._storage import Storage


def open_storage(url: str) -> Storage:
    if url.startswith("sqlite:///"):
        from ._sqlite import SqliteStorage

        return SqliteStorage(Path(url[len("sqlite:///") :]))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from ._postgres import PostgresStorage
        except ImportError as exc:
            raise ConfigError(
                "PostgreSQL storage needs its extra: pip install 'aicm-manual[postgres]'"
            ) from exc
        return PostgresStorage(url)
    raise ConfigError(f"database URL {url!r} must start with sqlite:/// or postgresql://")
