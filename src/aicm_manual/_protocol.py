"""The wire contract of ``POST /api/v1/track``, shared by the client, the collector and
the test double: limits, record keys, statuses, the answer's shape and the one JSON
encoding policy.

Pure: no I/O. Records are encoded one by one so a batch can be cut by bytes and the spool
can store them as they will be sent; a batch body is then a concatenation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._records import UsageRecord

MAX_RECORDS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 5 * 1024 * 1024
# What a record may hold; ``service_id``, ``response_id``, ``timestamp`` and ``usage`` are
# required. ``timestamp_defaulted: true`` says the client filled the timestamp in (the
# caller gave none), so a resent record is the same record whatever its new timestamp.
RECORD_KEYS = frozenset(
    {
        "timestamp_defaulted",
        "config_id",
        "service_id",
        "response_id",
        "timestamp",
        "usage",
        "client_customer_key",
        "context",
    }
)
DELIVERED = frozenset({"accepted", "duplicate"})
PERMANENT = frozenset({"rejected", "conflict"})

# The one encoding policy: compact UTF-8, and no NaN or infinity (not JSON; a collector
# would refuse the whole body).
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_SCALARS = frozenset({str, int, bool, type(None)})
_to_json: Callable[[Any], bytes] | None = None


def _load_to_json() -> Callable[[Any], bytes]:
    # Imported with the first record encoded, not with aicm_manual (28 ms).
    global _to_json
    from pydantic_core import to_json

    _to_json = to_json
    return to_json


def encode_json(value: Any) -> bytes:
    """``value`` as compact JSON; raises ValueError/TypeError for data JSON cannot hold."""
    if _plain(value):
        # pydantic-core's encoder writes the same JSON 3-6x faster (track() of a
        # persistent_queue, a batch body), but also encodes datetimes, sets, bytes and
        # more that this policy refuses: it gets only plain data, the rest goes to json.
        return (_to_json or _load_to_json())(value)
    return _encoder.encode(value).encode()


def _plain(value: Any) -> bool:
    """Only str-keyed dicts, lists, tuples, str, int, bool, None and finite floats."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _SCALARS and not _plain(item)):
                return False
        return True
    if kind in _SCALARS:
        return True
    if kind is float:
        return bool(value - value == 0.0)  # NaN and infinities give NaN
    if kind is list or kind is tuple:
        return all(type(item) in _SCALARS or _plain(item) for item in value)
    return False


def encode_kept(value: Any) -> bytes:
    """``value`` under the same policy, for keeping what could not be sent (dead letters):
    anything JSON cannot hold is kept as its ``repr`` text instead of failing."""
    try:
        return encode_json(value)
    except (ValueError, TypeError):
        return encode_json(_as_text(value))


def _as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_text(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return value
    return repr(value)


def encode_record(record: UsageRecord) -> bytes:
    """One record as compact JSON; raises ValueError/TypeError for data JSON cannot hold."""
    if _plain_record(record):
        return (_to_json or _load_to_json())(record.to_wire())
    return _encoder.encode(record.to_wire()).encode()


def _plain_record(record: UsageRecord) -> bool:
    # The builder checks that ids are strings and formats the timestamp itself: only the
    # caller's usage and context can hold what the policy refuses.
    return _plain(record.usage) and (record.context is None or _plain(record.context))


def encode_batch(bodies: Sequence[bytes]) -> bytes:
    """A request body from records already encoded one by one (the spool's)."""
    return b'{"tracked":[' + b",".join(bodies) + b"]}"


def encode_records(records: Sequence[UsageRecord]) -> bytes:
    """A request body from records, encoded in one call (cheaper per record)."""
    wire = [r.to_wire() for r in records]
    if all(_plain_record(r) for r in records):
        return b'{"tracked":' + (_to_json or _load_to_json())(wire) + b"}"
    return b'{"tracked":' + _encoder.encode(wire).encode() + b"}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the collector said about one record."""

    status: str  # accepted | duplicate | rejected | conflict
    errors: tuple[str, ...] = ()
    cost: str | None = None  # exact decimal string, when the collector priced the record
    currency: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status in DELIVERED


DELIVERED_OUTCOME = Outcome("accepted")


def parse_results(answer: Any, response_ids: Sequence[str]) -> list[Outcome] | None:
    """One Outcome per sent record, in order; None when the answer does not fit the batch
    (then nothing can be known and the whole batch is retried)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        return None
    results = answer["results"]
    if len(results) != len(response_ids):
        return None
    out: list[Outcome] = [Outcome("missing")] * len(response_ids)
    for position, item in enumerate(results):
        if not isinstance(item, dict):
            return None
        index = item.get("index", position)
        status = item.get("status")
        if not isinstance(index, int) or not 0 <= index < len(response_ids):
            return None
        if item.get("response_id", response_ids[index]) != response_ids[index]:
            return None
        if status not in DELIVERED and status not in PERMANENT:
            return None
        errors = item.get("errors") or ()
        cost, currency = item.get("cost"), item.get("currency")
        out[index] = Outcome(
            status,
            tuple(str(e) for e in errors) if isinstance(errors, list) else (),
            cost if isinstance(cost, str) else None,
            currency if isinstance(currency, str) else None,
        )
    if any(o.status == "missing" for o in out):
        return None
    return out


def answer(results: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """The collector's answer to a request whose records have ``results`` (in input order):
    200 when every record was delivered, 207 when any was rejected or in conflict, and a
    summary counting records by status."""
    summary: dict[str, int] = {}
    for result in results:
        status = result["status"]
        summary[status] = summary.get(status, 0) + 1
    return (200 if summary.keys() <= DELIVERED else 207), {"results": results, "summary": summary}


def result_of(index: int, response_id: str | None, outcome: Outcome) -> dict[str, Any]:
    """One record's entry in an answer."""
    result: dict[str, Any] = {"index": index, "response_id": response_id, "status": outcome.status}
    if outcome.errors:
        result["errors"] = list(outcome.errors)
    if outcome.cost is not None:
        result["cost"] = outcome.cost
        result["currency"] = outcome.currency
    return result
