"""A lane that delivers without failures keeps two requests out at once; an answer to a
request sent before the lane's latest failure never cuts that failure's backoff short."""

from __future__ import annotations

import threading
from pathlib import Path

from aicm_manual import get_global_delivery_health
from faults.scripted import USAGE, Collector, Reply, make_tracker, wait_for

RECORDS = 3000  # three full batches


def first_fails_second_is_slow(
    collector: Collector, failure: Reply
) -> tuple[list[list[str]], threading.Lock]:
    """Script the collector: the first request gets ``failure``, the second (out at the same
    time) is stored and answered 200 after 0.8 s, later ones at once. Returns the ids of each
    request as they arrive, and the lock that guards that list."""
    calls: list[list[str]] = []
    lock = threading.Lock()

    def hook(key: str | None, ids: list[str]) -> Reply | None:
        with lock:
            calls.append(ids)
            n = len(calls)
        if n == 1:
            return failure
        if n == 2:
            threading.Event().wait(0.8)
        return None

    collector.hook = hook
    return calls, lock


def test_a_healthy_lane_sends_its_next_batch_while_the_first_is_out(
    schemas_dir: Path, collector: Collector
) -> None:
    """The collector holds the first request until a second one arrives (or 10 s pass)."""
    second = threading.Event()
    calls: list[int] = []
    lock = threading.Lock()

    def hook(key: str | None, ids: list[str]) -> Reply | None:
        with lock:
            calls.append(len(ids))
            n = len(calls)
        if n == 1:
            second.wait(10)
        else:
            second.set()
        return None  # then stored and answered 200

    collector.hook = hook
    tracker = make_tracker(schemas_dir, collector.url)
    ids = tracker.track_batch([{"usage": USAGE}] * RECORDS)["response_ids"]
    assert tracker.flush(30) == 0
    assert collector.ids_for("sk-a") == set(ids)
    with lock:
        first_waited_for_second = calls[0] == 1000 and second.is_set()
    assert first_waited_for_second, calls
    assert len(calls) == 3, calls  # three requests, none repeated


def test_a_success_sent_before_a_failure_keeps_the_failures_retry_after(
    schemas_dir: Path, collector: Collector
) -> None:
    """Request 1 is answered 503 Retry-After: 30 after 0.3 s; request 2, sent while 1 was
    out, is answered 200 after 0.8 s. Request 1's records must then wait out the 30 s,
    not be sent again at once because a request of the same lane went through."""
    calls, lock = first_fails_second_is_slow(
        collector, Reply(503, {"Retry-After": "30"}, delay=0.3)
    )
    tracker = make_tracker(schemas_dir, collector.url, delivery_options={"backoff_max": 60})
    ids = tracker.track_batch([{"usage": USAGE}] * 2000)["response_ids"]
    assert wait_for(lambda: len(collector.ids_for("sk-a")) == 1000, timeout=10)
    threading.Event().wait(1.0)  # time enough for a wrong resend
    with lock:
        sent = len(calls)
    assert sent == 2, f"{sent} requests: the 503's batch was resent before its Retry-After"
    # Either batch may reach the collector first: the one answered 200 is stored.
    assert collector.ids_for("sk-a") == set(calls[1])
    assert set(calls[0]) | set(calls[1]) == set(ids)
    [lane] = get_global_delivery_health()["per_key"].values()
    assert lane["backoff_remaining_s"] > 20, lane
    assert lane["pending"] == 1000


def test_a_refused_key_sends_nothing_more_while_its_other_request_is_out(
    schemas_dir: Path, collector: Collector
) -> None:
    """Request 1 is refused (401) at once; request 2, out at the same time, is answered 200
    after 0.8 s. The parked lane must not send its third batch meanwhile or after."""
    calls, lock = first_fails_second_is_slow(
        collector, Reply(401, body=b'{"detail": "unknown key"}')
    )
    tracker = make_tracker(schemas_dir, collector.url)
    tracker.track_batch([{"usage": USAGE}] * RECORDS)
    assert wait_for(lambda: len(collector.ids_for("sk-a")) == 1000, timeout=10)
    threading.Event().wait(1.0)
    with lock:
        sent = len(calls)
    assert sent == 2, f"{sent} requests: the refused key kept sending"
    [lane] = get_global_delivery_health()["per_key"].values()
    assert lane["parked"] is True
    assert lane["pending"] == 2000
