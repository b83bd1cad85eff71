"""The one JSON encoding policy: the fast encoder for plain data and the standard
library's for the rest write the same JSON and refuse the same values."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
from typing import Any

import pytest

from aicm_manual._protocol import encode_json, encode_record, encode_records
from aicm_manual._records import UsageRecord


class Colour(enum.IntEnum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: int


PLAIN: list[Any] = [
    {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 97},
    {"big": 10**40, "neg": -(10**30), "f": [0.1, 1e16, 1.5e-7, -0.0, 1e308, 5e-324]},
    {"text": 'é ü \u2028 \x00\x1f " \\ 😀', "nested": {"a": [[], {}, [None, True, False]]}},
    ("tuple", 1, [2.5]),
    "",
    0,
]


@pytest.mark.parametrize("value", PLAIN, ids=range(len(PLAIN)))
def test_plain_data_encodes_to_what_the_standard_library_writes(value: Any) -> None:
    stdlib = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    ours = encode_json(value)
    assert json.loads(ours) == json.loads(stdlib)
    # Byte for byte too, except where floats may be spelt otherwise (1.5e-07 / 1.5e-7).
    if value is not PLAIN[1]:
        assert ours == stdlib.encode()


@pytest.mark.parametrize(
    "value",
    [
        {"x": math.nan},
        {"x": [math.inf]},
        {"x": -math.inf},
        {"x": datetime.datetime(2026, 1, 1)},
        {"x": {1, 2}},
        {"x": b"bytes"},
        {"x": decimal.Decimal("1.5")},
        {"x": uuid.uuid4()},
        {"x": Point(1)},
        {"x": "\ud800"},  # a lone surrogate cannot be UTF-8
    ],
    ids=lambda v: type(next(iter(v.values()))).__name__,
)
def test_what_json_cannot_hold_is_refused_as_before(value: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode_json(value)


def test_values_only_the_standard_library_encodes_keep_its_output() -> None:
    """int keys, enum members and str subclasses are not "plain": json writes them."""
    assert encode_json({1: Colour.RED}) == b'{"1":1}'


def test_a_batch_body_holds_every_record() -> None:
    records = [
        UsageRecord("c", "s", f"r{i}", 1_795_478_400_000_000 + i, {"n": i}) for i in range(3)
    ]
    body = json.loads(encode_records(records))
    assert [r["response_id"] for r in body["tracked"]] == ["r0", "r1", "r2"]
    assert body["tracked"][2]["timestamp"] == "2026-11-24T00:00:00.000002Z"


def test_a_record_whose_context_json_cannot_hold_is_refused_alone_or_in_a_batch() -> None:
    bad = UsageRecord("c", "s", "r", 0, {"n": 1}, context={"at": datetime.datetime(2026, 1, 1)})
    with pytest.raises(TypeError):
        encode_record(bad)
    with pytest.raises(TypeError):
        encode_records([UsageRecord("c", "s", "ok", 0, {"n": 1}), bad])
    nan = UsageRecord("c", "s", "r", 0, {"n": math.nan})
    with pytest.raises(ValueError, match="Out of range float"):
        encode_record(nan)
