"""The track protocol's bodies and answers (DESIGN section 5), as bytes and plain data.

Pure: no I/O. Records are encoded one by one so a batch can be cut by bytes and the spool
can store them as they will be sent; a batch body is then a concatenation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._records import UsageRecord

MAX_RECORDS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 5 * 1024 * 1024
DELIVERED = frozenset({"accepted", "duplicate"})
PERMANENT = frozenset({"rejected", "conflict"})

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_record(record: UsageRecord) -> bytes:
    """One record as compact JSON; raises ValueError/TypeError for data JSON cannot hold."""
    return _encoder.encode(record.to_wire()).encode()


def encode_batch(bodies: Sequence[bytes]) -> bytes:
    """A request body from records already encoded one by one (the spool's)."""
    return b'{"tracked":[' + b",".join(bodies) + b"]}"


def encode_records(records: Sequence[UsageRecord]) -> bytes:
    """A request body from records, encoded in one call (a third cheaper per record)."""
    return b'{"tracked":' + _encoder.encode([r.to_wire() for r in records]).encode() + b"}"


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
