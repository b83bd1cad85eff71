"""Usage records, where they go, and the small protocol a delivery implements.

Pure: no I/O. A record is built on the caller's thread and handed over as an object;
turning it into JSON (``to_wire``) is the delivery worker's job, done a batch at a time.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from ._secret import Secret
from .errors import InvalidRecordError

MAX_ID_LENGTH = 255
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
# Event times are kept to years 1000-9999 (UTC): every one prints as RFC 3339 with a
# four-digit year, which both storage backends and every RFC 3339 parser read back.
MIN_TIMESTAMP_US = (datetime(1000, 1, 1, tzinfo=timezone.utc) - _EPOCH) // _MICROSECOND
END_TIMESTAMP_US = (datetime(9999, 12, 31, tzinfo=timezone.utc) - _EPOCH) // _MICROSECOND + (
    86_400_000_000
)
# What no id may hold: control characters (C0, DEL, C1: NUL is text no PostgreSQL column
# stores), lone surrogates, and the invisible format and direction characters that make
# two ids look alike or an id print reversed.
BAD_ID_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ud800-\udfff]"
)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a record goes and with which credentials. Shared by all records of a tracker;
    the delivery groups records by (api_base, api_key), so keys are never mixed.
    ``on_discard`` (the tracker's callback) rides along without taking part in grouping."""

    api_base: str
    api_key: Secret | None
    on_discard: Callable[[list[dict[str, Any]], str], None] | None = field(
        default=None, compare=False, hash=False
    )

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "[secure]"
        return f"Target(api_base={self.api_base!r}, api_key={key})"


# Not frozen: a frozen dataclass sets each field through object.__setattr__, which made
# building a record the costliest step of track(). Treat records as read-only.
@dataclass(slots=True)
class UsageRecord:
    config_id: str | None  # None: sent without one; the collector finds the service's config
    service_id: str
    response_id: str
    timestamp_us: int  # microseconds since the Unix epoch, UTC: cheap to take and to format
    usage: dict[str, Any]
    client_customer_key: str | None = None
    context: dict[str, Any] | None = None
    timestamp_defaulted: bool = False  # the caller gave none: the client's clock filled it

    @property
    def timestamp(self) -> datetime:
        """The record's time as an aware UTC datetime."""
        return _EPOCH + timedelta(microseconds=self.timestamp_us)

    def to_wire(self) -> dict[str, Any]:
        """The record as POST /api/v1/track expects it."""
        out: dict[str, Any] = {
            "config_id": self.config_id,
            "service_id": self.service_id,
            "response_id": self.response_id,
            "timestamp": format_timestamp_us(self.timestamp_us),
            "usage": self.usage,
        }
        if self.config_id is None:
            del out["config_id"]
        if self.client_customer_key is not None:
            out["client_customer_key"] = self.client_customer_key
        if self.context is not None:
            out["context"] = self.context
        if self.timestamp_defaulted:
            out["timestamp_defaulted"] = True
        return out


class Delivery(Protocol):
    """What a Tracker hands records to.

    ``submit`` must not block on I/O (except an ``immediate`` delivery) and must never
    drop a record silently. ``flush`` waits up to ``timeout`` seconds for everything
    submitted so far to be delivered and returns how many records are still pending.
    """

    def submit(self, record: UsageRecord, target: Target) -> None: ...

    def flush(self, timeout: float | None = None) -> int: ...


def format_timestamp_us(us: int) -> str:
    """RFC 3339 in UTC with a ``Z`` and microseconds: ``2026-11-24T02:35:41.123456Z``."""
    seconds, micros = divmod(us, 1_000_000)
    prefix = _second_prefixes.get(seconds)
    if prefix is None:
        # Records of one batch mostly share their second: format it once.
        if len(_second_prefixes) > 4096:
            _second_prefixes.clear()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        prefix = _second_prefixes[seconds] = stamp
    return f"{prefix}.{micros:06d}Z"


_second_prefixes: dict[int, str] = {}


def normalise_timestamp(value: object) -> int:
    """Microseconds since the epoch: now for None; a datetime (naive means UTC) or an ISO
    8601 string otherwise."""
    if value is None:
        return time.time_ns() // 1000
    given = value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"  # Python 3.10's fromisoformat has no 'Z'
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRecordError(
                f"timestamp {value!r} is not an ISO 8601 date-time such as '2026-11-24T10:00:00Z'"
            ) from None
    if not isinstance(value, datetime):
        raise InvalidRecordError(
            f"timestamp must be a datetime or an ISO 8601 string, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=timezone.utc)
    return check_timestamp_us((value - _EPOCH) // _MICROSECOND, given)


def check_timestamp_us(us: int, shown: object = None) -> int:
    """``us`` when it lies in years 1000-9999 (UTC), else InvalidRecordError."""
    if not MIN_TIMESTAMP_US <= us < END_TIMESTAMP_US:
        raise InvalidRecordError(
            f"timestamp {shown if shown is not None else us!r} is outside years 1000-9999 (UTC)"
        )
    return us


def check_id(name: str, value: object) -> str:
    """An id (config_id, service_id, response_id, client_customer_key): a non-empty str of
    at most 255 characters, none of them a control, format or direction character."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise InvalidRecordError(
            f"{name} must be a non-empty string of at most {MAX_ID_LENGTH} characters, "
            f"got {value!r}"[:300]
        )
    bad = BAD_ID_CHARACTERS.search(value)
    if bad is not None:
        raise InvalidRecordError(
            f"{name} must not contain control, invisible or direction characters, got"
            f" {bad.group()!r} at position {bad.start()} of {value!r}"[:300]
        )
    return value


def find_nul(value: Any, path: str = "") -> str | None:
    """Where JSON-like ``value`` holds a NUL character in a string or a key (a path such as
    ``usage["note"][2]``), or None. No storage keeps NUL in text, so the collector refuses
    such records; the client can refuse them at ``track()``."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}[{key!r}]"
            if isinstance(key, str) and "\x00" in key:
                return where
            found = find_nul(item, where)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for n, item in enumerate(value):
            found = find_nul(item, f"{path}[{n}]")
            if found is not None:
                return found
    return None


_IMMUTABLE = frozenset({str, int, float, bool, type(None)})


def copy_value(value: Any) -> Any:
    """A deep copy of JSON-like data, several times faster than ``copy.deepcopy``.

    Containers are rebuilt, immutable scalars shared; anything else (possible only in
    ``Any`` fields) falls back to ``copy.deepcopy``.
    """
    cls = type(value)
    if cls is dict:
        return {k: v if type(v) in _IMMUTABLE else copy_value(v) for k, v in value.items()}
    if cls is list:
        return [v if type(v) in _IMMUTABLE else copy_value(v) for v in value]
    if cls in _IMMUTABLE:
        return value
    if cls is tuple:
        return tuple(copy_value(v) for v in value)
    return copy.deepcopy(value)
