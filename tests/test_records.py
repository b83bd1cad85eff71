"""Records and their helpers: copying, ids, timestamps and masked secrets."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import uuid
from datetime import datetime, timezone

import pytest

from aicm_manual import Secret
from aicm_manual._ids import new_response_id
from aicm_manual._records import copy_value, format_timestamp_us, normalise_timestamp


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
