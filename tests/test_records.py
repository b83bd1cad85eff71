"""Records and their helpers: copying, ids, timestamps and masked secrets."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aicm_manual import Secret, Tracker
from aicm_manual._ids import new_response_id
from aicm_manual._records import (
    END_TIMESTAMP_US,
    MIN_TIMESTAMP_US,
    check_id,
    copy_value,
    find_nul,
    format_timestamp_us,
    normalise_timestamp,
)
from aicm_manual.errors import InvalidRecordError
from aicm_manual.testing import CapturingDelivery


def test_copy_value_is_a_deep_copy_of_json_like_data() -> None:
    data = {"a": [1, {"b": [2.5, "x", None, True]}], "t": (1, [2]), "s": {1, 2}}
    copied = copy_value(data)
    assert copied == data
    assert copied["a"] is not data["a"]
    assert copied["a"][1]["b"] is not data["a"][1]["b"]
    assert copied["t"][1] is not data["t"][1]
    assert copied["s"] is not data["s"]


def test_copy_value_falls_back_to_deepcopy_for_other_objects() -> None:
    class Box:
        def __init__(self) -> None:
            self.items = [1]

    box = Box()
    copied = copy_value({"box": box})["box"]
    assert copied is not box
    assert copied.items == [1]
    assert copied.items is not box.items


def test_response_ids_are_uuid4_hex_and_unique() -> None:
    ids = [new_response_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for rid in ids[:100]:
        parsed = uuid.UUID(hex=rid)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == rid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_draws_different_response_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave without running pytest's teardown
        os.close(read)
        os.write(write, new_response_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_id) == 32
    assert child_id != new_response_id()


def test_timestamps_are_exact_microseconds_in_rfc3339_utc() -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)
    us = normalise_timestamp(ts)
    assert format_timestamp_us(us) == "2026-01-02T03:04:05.000006Z"
    assert normalise_timestamp("2026-01-02T03:04:05.000006Z") == us
    assert normalise_timestamp(datetime(2026, 1, 2, 3, 4, 5, 6)) == us  # naive is UTC
    assert format_timestamp_us(normalise_timestamp("1969-12-31T23:59:59.5Z")) == (
        "1969-12-31T23:59:59.500000Z"
    )
    assert format_timestamp_us(normalise_timestamp("2026-06-30T23:59:59.999999-02:00")) == (
        "2026-07-01T01:59:59.999999Z"
    )


def test_secret_masks_itself_everywhere_but_reveal() -> None:
    key = Secret("  sk-abc  ")
    assert key.reveal() == "sk-abc"
    assert "sk-abc" not in repr(key)
    assert "sk-abc" not in str(key)
    assert "sk-abc" not in f"{key}"
    assert "sk-abc" not in repr({"k": key})
    assert key == Secret("sk-abc")
    assert key != Secret("sk-abd")
    assert key.abbreviation == "sha256:" + hashlib.sha256(b"sk-abc").hexdigest()[:8]
    assert pickle.loads(pickle.dumps(key)) == key
    assert copy.deepcopy(key) == key
    with pytest.raises(ValueError, match="non-empty"):
        Secret(" ")


@pytest.mark.parametrize(
    "value",
    [
        "a\x00b",
        "tab\there",
        "new\nline",
        "del\x7f",
        "c1\x85",
        "zw\u200bsp",
        "rtl\u202eo",
        "\ufeffbom",
    ],
)
def test_ids_with_control_invisible_or_direction_characters_are_refused(value: str) -> None:
    """An id holding a control, zero-width or direction character is refused, with the
    character and its position (the collector refuses the same ids)."""
    with pytest.raises(InvalidRecordError, match="position"):
        check_id("response_id", value)


@pytest.mark.parametrize("value", ["order/123", "café", "order-😀", "  spaced  ", "שלום"])
def test_ids_with_other_unicode_are_kept(value: str) -> None:
    """Slashes, accents, emoji, spaces and right-to-left letters are ordinary id text."""
    assert check_id("response_id", value) == value


@pytest.mark.parametrize(
    "stamp",
    [
        "0999-12-31T23:59:59.999999Z",
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:30:00-01:00",
        datetime(1, 1, 1, tzinfo=timezone.utc),
    ],
)
def test_times_outside_years_1000_to_9999_are_refused(stamp: object) -> None:
    """A time outside years 1000-9999 (UTC, after its offset) is refused: it would not
    print as RFC 3339 with a four-digit year."""
    with pytest.raises(InvalidRecordError, match="outside years 1000-9999"):
        normalise_timestamp(stamp)


def test_the_ends_of_the_time_range_print_with_four_digit_years() -> None:
    """The first and last microsecond kept print as four-digit-year RFC 3339."""
    first = normalise_timestamp("1000-01-01T00:00:00Z")
    last = normalise_timestamp("9999-12-31T23:59:59.999999Z")
    assert (first, last) == (MIN_TIMESTAMP_US, END_TIMESTAMP_US - 1)
    assert format_timestamp_us(first) == "1000-01-01T00:00:00.000000Z"
    assert format_timestamp_us(last) == "9999-12-31T23:59:59.999999Z"


@pytest.mark.parametrize(
    "changes",
    [
        {"client_customer_key": "ac\x00me"},
        {"response_id": "order\n1"},
        {"timestamp": "0999-12-31T23:59:59Z"},
        {"timestamp": "9999-12-31T23:30:00-01:00"},
    ],
)
def test_track_refuses_what_the_collector_would_refuse(changes: dict[str, str]) -> None:
    """track() refuses, before anything is queued, an id with a control character and a
    time outside years 1000-9999: the collector would reject them."""
    delivery = CapturingDelivery()
    schemas = Path(__file__).resolve().parents[1] / "schemas"
    with (
        Tracker(
            "heygen", "heygen::streaming-avatar", schemas_dir=schemas, delivery=delivery, environ={}
        ) as tracker,
        pytest.raises(InvalidRecordError),
    ):
        tracker.track({"duration": 60.0}, **changes)
    assert delivery.records == []


def test_find_nul_names_where_a_nul_hides_in_json_like_data() -> None:
    """find_nul gives the path of the first NUL in a string or key, None when there is none
    (the check a client can make at track(), as the collector refuses such records)."""
    assert find_nul({"a": [1, "x", {"b": "ok"}]}) is None
    assert find_nul({"a": [1, "x", {"b": "o\x00k"}]}, "usage") == "usage['a'][2]['b']"
    assert find_nul({"k\x00": 1}, "context") == "context['k\\x00']"
    assert find_nul("\x00") == ""
