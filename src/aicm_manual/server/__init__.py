"""The collector: the HTTP service trackers send to (install with ``aicm-manual[server]``).

from aicm_manual.server import create_app, open_storage
storage = open_storage("sqlite:///data/collector.db")
"""

from __future__ import annotations

try:
    import msgspec  # noqa: F401  # the collector's dependencies, checked up front
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("the collector needs its extra: pip install 'aicm-manual[server]'") from exc

from .._secret import key_digest as hash_key
from ._app import create_app
from ._auth import new_key, parse_key_spec
from ._storage import open_storage
from ._storage.protocol import NewEvent, Storage, StoredEvent
from ._storage.sqlite import SqliteStorage

__all__ = [
    "NewEvent",
    "SqliteStorage",
    "Storage",
    "StoredEvent",
    "create_app",
    "hash_key",
    "new_key",
    "open_storage",
    "parse_key_spec",
]
