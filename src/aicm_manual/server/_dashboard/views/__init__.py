"""The dashboard's views: one module per page, each a ``build`` function that reads the
storage for one tenant and window and returns what its template shows.

    context = overview.build(storage, "acme", window, query)   # then overview.html

Synchronous (the web layer runs them in the thread pool) and free of HTTP: they import the
storage protocol and the dashboard's pure helpers, never Starlette or Jinja2. A view that
needs a storage method a collector version may lack checks for it and says so on the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...._records import format_timestamp_us


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A panel a page shows instead of data its collector's storage cannot give yet."""

    what: str  # "Rejection reasons"
    method: str  # the storage method it needs, e.g. "rejection_reasons"


def when(us: int | None) -> str:
    """An event time as people read it in a table: ``2026-11-24 10:00:00Z``."""
    if us is None:
        return "-"
    text = format_timestamp_us(us)
    return text[:10] + " " + text[11:19] + "Z"


def field(row: Any, name: str) -> Any:
    """A field of a row that a storage method returns as an object or a mapping."""
    if isinstance(row, Mapping):
        return row.get(name)
    return getattr(row, name, None)


__all__ = ["Unavailable", "field", "when"]
