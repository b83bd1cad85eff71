"""The delivery engine against a real loopback collector: batching, results, retries, keys."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import (
    DeliveryError,
    QueueFullError,
    Tracker,
    get_global_delivery,
    get_global_delivery_health,
)
from aicm_manual.testing import Scripted
from conftest import ConfigServer

CHAT = {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 97}
NO_INI = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05, "batch_interval": 0.01}


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make_tracker(schemas_dir: Path, url: str, key: str | None = "sk-a", **kwargs: Any) -> Tracker:
    options = {**FAST, **kwargs.pop("delivery_options", {})}
    return Tracker(
        "openai-chat",
        "openai::gpt-4o-mini",
        schemas_dir=schemas_dir,
        aicm_api_base=url,
        aicm_api_key=key,
        environ=NO_INI,
        delivery_options=options,
        **kwargs,
    )


def test_records_arrive_once_in_batches(schemas_dir: Path, config_server: ConfigServer) -> None:
    tracker = make_tracker(schemas_dir, config_server.url)
    ids = [tracker.track(CHAT) for _ in range(2500)]
    assert tracker.flush(10) == 0
    stored = config_server.collector.records()
    assert sorted(r["response_id"] for r in stored) == sorted(ids)
    sizes = [n for _, n in config_server.collector.requests]
    assert max(sizes) <= 1000
    assert sum(sizes) == 2500
    health = get_global_delivery_health()
    assert health["total_enqueued"] == 2500
    assert health["total_delivered"] == 2500
    assert health["queued"] == 0
    assert health["total_discarded"] == 0
    assert health["worker_alive"] is True
    assert health["last_success_at"] is not None


def test_one_worker_thread_whatever_the_number_of_trackers(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    import threading

    trackers = [make_tracker(schemas_dir, config_server.url, key=f"k{i}") for i in range(5)]
    for t in trackers:
        t.track(CHAT)
    assert trackers[0].flush(5) == 0
    workers = [th for th in threading.enumerate() if th.name == "aicm-delivery"]
    assert len(workers) == 1


def test_two_keys_are_never_mixed(schemas_dir: Path, config_server: ConfigServer) -> None:
    a = make_tracker(schemas_dir, config_server.url, key="key-a")
    b = make_tracker(schemas_dir, config_server.url, key="key-b")
    ids_a, ids_b = [], []
    for _ in range(600):
        ids_a.append(a.track(CHAT))
        ids_b.append(b.track(CHAT))
    assert a.flush(10) == 0
    assert b.flush(10) == 0  # a's flush waits for a's records only
    got_a = {r["response_id"] for r in config_server.collector.records_for("key-a")}
    got_b = {r["response_id"] for r in config_server.collector.records_for("key-b")}
    assert got_a == set(ids_a)
    assert got_b == set(ids_b)


def test_closing_one_tracker_leaves_delivery_running(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    a = make_tracker(schemas_dir, config_server.url)
    b = make_tracker(schemas_dir, config_server.url)
    a.track(CHAT)
    assert a.close(5) == 0
    rid = b.track(CHAT)
    assert b.flush(5) == 0
    assert rid in {r["response_id"] for r in config_server.collector.records()}


def test_5xx_and_429_are_retried_until_delivered(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    config_server.collector.script.extend(
        [
            Scripted(status=503, headers={"Retry-After": "0.05"}),
            Scripted(status=429, headers={"Retry-After": "0"}),
            Scripted(status=500),
        ]
    )
    tracker = make_tracker(schemas_dir, config_server.url)
    ids = [tracker.track(CHAT) for _ in range(10)]
    assert tracker.flush(10) == 0
    assert {r["response_id"] for r in config_server.collector.records()} == set(ids)
    health = get_global_delivery_health()
    assert health["total_retries"] == 30
    assert health["total_delivered"] == 10
    assert health["total_discarded"] == 0


def test_dropped_connection_is_retried(schemas_dir: Path, config_server: ConfigServer) -> None:
    config_server.collector.script.append(Scripted(drop=True))
    tracker = make_tracker(schemas_dir, config_server.url)
    rid = tracker.track(CHAT)
    assert tracker.flush(10) == 0
    assert [r["response_id"] for r in config_server.collector.records()] == [rid]


def test_rejected_records_are_dead_lettered_and_the_rest_delivered(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    config_server.collector.reject_ids = {"bad-1"}
    tracker = make_tracker(schemas_dir, config_server.url)
    tracker.track(CHAT, response_id="good-1")
    tracker.track(CHAT, response_id="bad-1")
    tracker.track(CHAT, response_id="good-2")
    assert tracker.flush(10) == 0
    assert {r["response_id"] for r in config_server.collector.records()} == {"good-1", "good-2"}
    health = get_global_delivery_health()
    assert health["total_rejected"] == 1
    assert health["total_delivered"] == 2
    assert health["total_retries"] == 0  # a rejection is never retried
    [(wire, reason)] = get_global_delivery().dead_letters
    assert wire["response_id"] == "bad-1"
    assert "scripted rejection" in reason


def test_413_splits_the_batch(schemas_dir: Path, config_server: ConfigServer) -> None:
    config_server.collector.script.append(Scripted(status=413))
    tracker = make_tracker(schemas_dir, config_server.url, delivery_options={"batch_interval": 1})
    ids = [tracker.track(CHAT) for _ in range(8)]
    assert tracker.flush(10) == 0
    assert {r["response_id"] for r in config_server.collector.records()} == set(ids)
    assert [n for _, n in config_server.collector.requests] == [4, 4]


def test_refused_key_is_parked_while_other_keys_flow(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    config_server.collector.keys = {"good-key"}
    good = make_tracker(schemas_dir, config_server.url, key="good-key")
    bad = make_tracker(schemas_dir, config_server.url, key="revoked-key")
    bad_ids = [bad.track(CHAT) for _ in range(5)]
    good_ids = [good.track(CHAT) for _ in range(5)]
    assert wait_for(lambda: get_global_delivery_health()["total_delivered"] == 5)
    # The refused key's answer may come after the good key's: wait for it too.
    assert wait_for(
        lambda: any(v["parked"] for v in get_global_delivery_health()["per_key"].values())
    )
    assert {r["response_id"] for r in config_server.collector.records()} == set(good_ids)
    health = get_global_delivery_health()
    assert health["queued"] == len(bad_ids)  # kept, not discarded
    assert health["total_discarded"] == 0
    parked = [v for v in health["per_key"].values() if v["parked"]]
    assert len(parked) == 1
    assert parked[0]["pending"] == 5
    assert "revoked-key" not in repr(health)


def test_unreachable_collector_keeps_records_and_reports(schemas_dir: Path) -> None:
    tracker = make_tracker(schemas_dir, closed_port_url())
    for _ in range(20):
        tracker.track(CHAT)
    assert tracker.flush(0.5) == 20  # returns in time, reports what is left
    health = get_global_delivery_health()
    assert health["queued"] == 20
    assert health["total_discarded"] == 0
    assert health["total_retries"] >= 20
    assert "failed" in health["last_error"]


def test_retry_budget_exhaustion_discards_with_reason(schemas_dir: Path) -> None:
    seen: list[tuple[int, str]] = []
    tracker = make_tracker(
        schemas_dir,
        closed_port_url(),
        on_discard=lambda records, reason: seen.append((len(records), reason)),
        delivery_options={"retry_budget": 0.1},
    )
    for _ in range(3):
        tracker.track(CHAT)
    assert wait_for(lambda: bool(seen))
    assert seen == [(3, "retry_budget_exhausted")]
    health = get_global_delivery_health()
    assert health["discarded_by_reason"] == {"retry_budget_exhausted": 3}
    assert health["queued"] == 0


def test_on_full_raise(schemas_dir: Path) -> None:
    tracker = make_tracker(
        schemas_dir,
        closed_port_url(),
        delivery_on_full="raise",
        delivery_options={"queue_size": 1000, "batch_interval": 60},
    )
    for _ in range(1000):
        tracker.track(CHAT)
    with pytest.raises(QueueFullError, match="full"):
        tracker.track(CHAT)
    assert get_global_delivery_health()["total_discarded"] == 0


def test_on_full_backpressure_drops_oldest_and_reports(schemas_dir: Path) -> None:
    dropped: list[str] = []
    tracker = make_tracker(
        schemas_dir,
        closed_port_url(),
        delivery_on_full="backpressure",
        on_discard=lambda records, reason: dropped.extend(r["response_id"] for r in records),
        # A long backoff after the first failure keeps the worker quiet while it fills.
        delivery_options={
            "queue_size": 2000,
            "batch_interval": 60,
            "backoff_initial": 60,
            "backoff_max": 60,
        },
    )
    ids = [tracker.track(CHAT, response_id=f"r{i}") for i in range(2010)]
    assert wait_for(lambda: get_global_delivery().health()["oldest_queued_age_s"] is not None)
    assert wait_for(lambda: len(get_global_delivery()._queue) == 0)
    health = get_global_delivery_health()
    assert health["total_discarded"] == 10
    assert health["discarded_by_reason"] == {"queue_full": 10}
    assert health["queued"] == 2000
    # Old records made room: the newest 1000 all survive. (Which old ones go depends on
    # what is in flight at that instant; a record being sent cannot be taken back.)
    assert set(dropped) <= set(ids[:1010])


def test_on_full_block_times_out_with_an_error(schemas_dir: Path) -> None:
    tracker = make_tracker(
        schemas_dir,
        closed_port_url(),
        delivery_on_full="block",
        delivery_options={"queue_size": 1000, "block_timeout": 0.2, "batch_interval": 60},
    )
    for _ in range(1000):
        tracker.track(CHAT)
    started = time.monotonic()
    with pytest.raises(QueueFullError, match="stayed full"):
        tracker.track(CHAT)
    assert 0.15 < time.monotonic() - started < 5


def test_immediate_mode_delivers_before_returning(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    tracker = make_tracker(schemas_dir, config_server.url, delivery_type="immediate")
    rid = tracker.track(CHAT)
    assert [r["response_id"] for r in config_server.collector.records()] == [rid]
    assert get_global_delivery_health()["worker_alive"] is False


def test_immediate_mode_failure_raises_with_the_record(schemas_dir: Path) -> None:
    tracker = make_tracker(
        schemas_dir,
        closed_port_url(),
        delivery_type="immediate",
        delivery_options={"retry_budget": 0.1},
    )
    with pytest.raises(DeliveryError) as info:
        tracker.track(CHAT, response_id="keep-me")
    assert info.value.record is not None
    assert info.value.record["response_id"] == "keep-me"
    assert info.value.permanent is False


def test_immediate_mode_rejection_is_permanent(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    config_server.collector.reject_ids = {"nope"}
    tracker = make_tracker(schemas_dir, config_server.url, delivery_type="immediate")
    with pytest.raises(DeliveryError, match="rejected: scripted rejection") as info:
        tracker.track(CHAT, response_id="nope")
    assert info.value.permanent is True


def test_persistent_queue_commits_before_track_returns(
    schemas_dir: Path, config_server: ConfigServer, tmp_path: Path
) -> None:
    db = tmp_path / "spool.db"
    tracker = make_tracker(
        schemas_dir, closed_port_url(), delivery_type="persistent_queue", db_path=db
    )
    rid = tracker.track(CHAT)
    with sqlite3.connect(db) as other:  # another connection sees the committed row
        rows = other.execute(
            "SELECT response_id, key_ref FROM inbox UNION ALL"
            " SELECT response_id, key_ref FROM records"
        ).fetchall()
    assert rows[0][0] == rid
    assert "sk-a" not in rows[0][1]  # a reference to the key, never the key
    assert len(rows[0][1]) == 64


def test_persistent_queue_delivers_and_empties_the_spool(
    schemas_dir: Path, config_server: ConfigServer, tmp_path: Path
) -> None:
    db = tmp_path / "spool.db"
    tracker = make_tracker(
        schemas_dir, config_server.url, delivery_type="persistent_queue", db_path=db
    )
    ids = [tracker.track(CHAT) for _ in range(1500)]
    assert tracker.flush(10) == 0
    assert {r["response_id"] for r in config_server.collector.records()} == set(ids)
    with sqlite3.connect(db) as other:
        for table in ("records", "inbox"):
            assert other.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
    health = get_global_delivery_health()
    assert health["spool"]["records"] == 0
    assert health["total_delivered"] == 1500


def test_persistent_rejections_go_to_the_dead_letter_table(
    schemas_dir: Path, config_server: ConfigServer, tmp_path: Path
) -> None:
    db = tmp_path / "spool.db"
    config_server.collector.reject_ids = {"bad"}
    tracker = make_tracker(
        schemas_dir, config_server.url, delivery_type="persistent_queue", db_path=db
    )
    tracker.track(CHAT, response_id="bad")
    tracker.track(CHAT, response_id="fine")
    assert tracker.flush(10) == 0
    with sqlite3.connect(db) as other:
        dead = other.execute("SELECT response_id, reason FROM dead_letters").fetchall()
    assert dead == [("bad", "rejected: scripted rejection")]


def test_gzip_for_large_bodies(schemas_dir: Path, config_server: ConfigServer) -> None:
    tracker = make_tracker(
        schemas_dir, config_server.url, delivery_options={"gzip_min_bytes": 1000}
    )
    ids = [tracker.track(CHAT) for _ in range(200)]
    assert tracker.flush(10) == 0
    assert {r["response_id"] for r in config_server.collector.records()} == set(ids)
    assert "gzip" in config_server.collector.encodings
