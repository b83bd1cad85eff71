"""Resending is idempotent: a record's identity is what it bills (config, service, id,
usage, customer, and the timestamp only when the caller gave one); context never makes a
conflict; events stored before this rule keep their identity. On both backends."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from aicm_manual import Tracker
from aicm_manual.server._embedded import embedded_collector

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY = "aicm_resend_key_0123456789"


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    path = tmp_path / "resend.db"
    with embedded_collector(f"sqlite:///{path}", SCHEMAS, [f"t:{KEY}"]) as c:
        yield c.url, path


def post(url: str, records: list[dict[str, Any]]) -> list[str]:
    r = requests.post(
        f"{url}/api/v1/track",
        json={"tracked": records},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert r.status_code in (200, 207), r.text
    return [x["status"] for x in r.json()["results"]]


def test_rerunning_a_batch_job_with_defaulted_timestamps_answers_duplicate(
    collector: tuple[str, Path],
) -> None:
    """The same records tracked twice by a tracker (timestamps filled in by the client, so
    different each time) are duplicates the second time, not conflicts."""
    url, _ = collector
    results = []
    for _ in range(2):
        with Tracker(
            "heygen",
            "heygen::streaming-avatar",
            schemas_dir=SCHEMAS,
            aicm_api_base=url,
            aicm_api_key=KEY,
            delivery_type="immediate",
            environ={"AICM_INI_PATH": "/nonexistent"},
        ) as tracker:
            answer = tracker.track_batch(
                [{"usage": {"duration": 5.0}, "response_id": f"job-{n}"} for n in range(3)]
            )
            results.append(answer["summary"])
    assert results == [{"accepted": 3}, {"duplicate": 3}]


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"context": {"run": 2}}, "duplicate"),  # metadata
        ({"timestamp": "2026-11-24T11:00:00Z", "timestamp_defaulted": True}, "duplicate"),
        ({"timestamp": "2026-11-24T11:00:00Z"}, "conflict"),  # the caller's own timestamp
        ({"usage": {"duration": 6.0}}, "conflict"),
        ({"client_customer_key": "globex"}, "conflict"),
    ],
)
def test_what_makes_a_conflict_is_what_is_billed(
    collector: tuple[str, Path], change: dict[str, Any], status: str
) -> None:
    """Only a billed difference is a conflict."""
    url, _ = collector
    first = {
        "config_id": "heygen",
        "service_id": "heygen::streaming-avatar",
        "response_id": "r1",
        "timestamp": "2026-11-24T10:00:00Z",
        "usage": {"duration": 5.0},
        "client_customer_key": "acme",
        "context": {"run": 1},
    }
    if "timestamp_defaulted" in change:
        first["timestamp_defaulted"] = True
    assert post(url, [first]) == ["accepted"]
    assert post(url, [{**first, **change}]) == [status]


def test_an_event_stored_by_an_earlier_version_keeps_its_identity(
    collector: tuple[str, Path],
) -> None:
    """An event whose stored hash is the earlier whole-record hash answers duplicate to an
    unchanged resend (and conflict to a billed change)."""
    url, path = collector
    record = {
        "config_id": "heygen",
        "service_id": "heygen::streaming-avatar",
        "response_id": "old-1",
        "timestamp": "2026-11-24T10:00:00Z",
        "usage": {"duration": 5.0},
        "context": {"run": 1},
    }
    assert post(url, [record]) == ["accepted"]
    earlier = _earlier_hash(record)
    with sqlite3.connect(path) as db:  # as an earlier version stored it
        db.execute("UPDATE events SET payload_hash = ? WHERE response_id = 'old-1'", (earlier,))
    db.close()
    assert post(url, [record]) == ["duplicate"]
    assert post(url, [{**record, "usage": {"duration": 7.0}}]) == ["conflict"]


def _earlier_hash(record: dict[str, Any]) -> str:
    import hashlib

    import msgspec

    from aicm_manual._records import normalise_timestamp

    canonical = msgspec.json.Encoder(order="sorted").encode(
        [
            record["config_id"],
            record["service_id"],
            record["response_id"],
            normalise_timestamp(record["timestamp"]),
            record["usage"],
            record.get("client_customer_key"),
            record.get("context"),
        ]
    )
    return hashlib.sha256(canonical).hexdigest()
