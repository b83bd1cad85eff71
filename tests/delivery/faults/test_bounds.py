"""The bounds the engine promises (batch size, memory, backoff,
exit budget, immediate mode's deadline) hold.

The assertions on time here are on the bound the bug violates, each with a generous margin.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aicm_manual import QueueFullError
from faults.scripted import (
    CONFIG_ID,
    SERVICE_ID,
    USAGE,
    Collector,
    Reply,
    child_env,
    closed_port_url,
    make_tracker,
    run_python,
)

# -- item 8: the batch size recovers after a 400 or a 413 -------------------------------------


def largest_request_after(collector: Collector, start: int) -> int:
    with collector.lock:
        return max((len(h.ids) for h in collector.hits[start:] if h.status == 200), default=0)


def test_batch_size_recovers_after_a_400_for_one_bad_record(
    schemas_dir: Path, collector: Collector
) -> None:
    """After one 400 (bisected down to the bad record) later requests carry many records again."""
    collector.hook = lambda key, ids: Reply(400) if "bad-400" in ids else None
    tracker = make_tracker(schemas_dir, collector.url, delivery_options={"batch_interval": 0.5})
    for i in range(15):
        tracker.track(USAGE, response_id=f"first-{i}")
    tracker.track(USAGE, response_id="bad-400")
    assert tracker.flush(10) == 0
    start = len(collector.hits)
    for round_ in range(10):  # up to 1000 more records, 100 at a time
        for i in range(100):
            tracker.track(USAGE, response_id=f"r{round_}-{i}")
        assert tracker.flush(15) == 0
        if largest_request_after(collector, start) > 10:
            break
    with collector.lock:
        sizes = [len(h.ids) for h in collector.hits[start:]]
    assert max(sizes) > 10, f"{len(sizes)} requests for {sum(sizes)} records, at most {max(sizes)}"


def test_batch_size_recovers_after_a_413(schemas_dir: Path, collector: Collector) -> None:
    """After one 413 halves a 200-record batch, later batches grow past 100 records again."""
    collector.script.append(Reply(413))
    tracker = make_tracker(schemas_dir, collector.url, delivery_options={"batch_interval": 0.5})
    for i in range(200):
        tracker.track(USAGE, response_id=f"first-{i}")
    assert tracker.flush(10) == 0
    with collector.lock:
        assert [h.status for h in collector.hits[:1]] == [413]
    start = len(collector.hits)
    for round_ in range(8):  # up to 2400 more records, 300 at a time
        for i in range(300):
            tracker.track(USAGE, response_id=f"r{round_}-{i}")
        assert tracker.flush(15) == 0
        if largest_request_after(collector, start) > 100:
            break
    assert largest_request_after(collector, start) > 100


# -- item 9: memory is bounded by bytes at submit time ----------------------------------------


def test_queue_bytes_bounds_memory_at_submit_time(schemas_dir: Path) -> None:
    """With ~2.2 KB records and queue_bytes=500 kB, on_full="raise" triggers near 500 kB."""
    queue_bytes = 500_000
    usage = {"units": 1, "note": "x" * 2100}
    tracker = make_tracker(
        schemas_dir,
        closed_port_url(),
        delivery_on_full="raise",
        delivery_options={
            "queue_bytes": queue_bytes,
            "queue_size": 100_000,
            "batch_size": 100,
            "batch_bytes": 100_000,
            "batch_interval": 60,
            "backoff_initial": 60,
            "backoff_max": 60,
        },
    )
    accepted, raised = 0, False
    for _ in range(1000):  # about 2.3 MB in all
        try:
            tracker.track(usage)
        except QueueFullError:
            raised = True
            break
        accepted += 1
    assert raised, f"all {accepted} records (~2.3 MB) queued under queue_bytes={queue_bytes}"
    record_bytes = len(json.dumps(usage))
    assert accepted * record_bytes <= 1.25 * queue_bytes, (
        f"{accepted} records (~{accepted * record_bytes} bytes) queued under "
        f"queue_bytes={queue_bytes}"
    )


# -- item 10: Retry-After 0 keeps a minimum backoff; exit keeps its budget --------------------


def test_retry_after_zero_keeps_a_minimum_backoff(schemas_dir: Path, collector: Collector) -> None:
    """429 with Retry-After: 0 is retried no faster than the backoff floor (0.5 s here).

    Bound: at most 10 requests in 2 s (a 0.25 s floor would allow 9); the bug sends hundreds.
    """
    collector.hook = lambda key, ids: Reply(429, {"Retry-After": "0"})
    tracker = make_tracker(
        schemas_dir,
        collector.url,
        delivery_options={"backoff_initial": 0.5, "backoff_max": 30, "batch_interval": 0.01},
    )
    tracker.track(USAGE)
    time.sleep(2.0)
    hits = len(collector.hits_for("sk-a"))
    assert hits <= 10, f"{hits} requests in 2 s for one record answered 429 Retry-After: 0"


EXIT_CHILD = """
import json, sys, time
from aicm_manual import Tracker
p = json.loads(sys.argv[1])
t = Tracker(p["config_id"], p["service_id"], schemas_dir=p["schemas"], aicm_api_base=p["url"],
            aicm_api_key="sk-exit", environ={"AICM_INI_PATH": "/nonexistent/AICM.INI"},
            delivery_options={"exit_budget": 1.0, "batch_interval": 0.01})
for _ in range(10):
    t.track({"units": 1})
time.sleep(0.5)  # the request is sent (and hangs) before the exit starts
print(json.dumps({"exit_started": time.time()}), flush=True)
"""


def test_exit_keeps_its_budget_when_the_collector_never_answers(
    schemas_dir: Path, collector: Collector
) -> None:
    """The exit drain ends within exit_budget (1 s) + slack while a request hangs.

    Bound: 4 s from the end of the script to the process's exit; the bug waits the
    10 s request timeout.
    """
    collector.hang_keys = {"sk-exit"}
    params: dict[str, Any] = {
        "config_id": CONFIG_ID,
        "service_id": SERVICE_ID,
        "schemas": str(schemas_dir),
        "url": collector.url,
    }
    proc = run_python(EXIT_CHILD, json.dumps(params), timeout=60, env=child_env())
    ended = time.time()
    assert proc.returncode == 0, proc.stderr
    started = json.loads(proc.stdout.strip().splitlines()[-1])["exit_started"]
    assert collector.hits_for("sk-exit"), "the request never reached the collector"
    assert ended - started <= 4.0, f"exit took {ended - started:.1f} s with exit_budget=1"


# -- item 11: immediate mode has a bounded total deadline ------------------------------------


IMMEDIATE_CHILD = """
import json, os, sys, threading
from aicm_manual import Tracker, get_global_delivery_health
p = json.loads(sys.argv[1])
t = Tracker(p["config_id"], p["service_id"], schemas_dir=p["schemas"], aicm_api_base=p["url"],
            aicm_api_key="sk-now", environ={"AICM_INI_PATH": "/nonexistent/AICM.INI"},
            delivery_type="immediate")
outcome = []

def call():
    try:
        t.track({"units": 1})
        outcome.append(None)
    except BaseException as exc:
        outcome.append(type(exc).__name__)

caller = threading.Thread(target=call, daemon=True)
caller.start()
caller.join(15)
report = {"finished": not caller.is_alive(), "outcome": outcome,
          "attempts": get_global_delivery_health()["total_requests"]}
print(json.dumps(report), flush=True)
os._exit(0)  # a caller still retrying is not waited for
"""


def test_immediate_mode_gives_up_within_a_bounded_deadline(schemas_dir: Path) -> None:
    """immediate track() against a dead collector raises DeliveryError after <= 4 attempts,
    within ~10 s with the default settings (bound: 15 s; the bug retries 8 times over ~60 s).
    """
    params: dict[str, Any] = {
        "config_id": CONFIG_ID,
        "service_id": SERVICE_ID,
        "schemas": str(schemas_dir),
        "url": closed_port_url(),
    }
    proc = run_python(IMMEDIATE_CHILD, json.dumps(params), timeout=60, env=child_env())
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["finished"], f"track() still retrying after 15 s ({report['attempts']} attempts)"
    assert report["outcome"] == ["DeliveryError"], report
    assert report["attempts"] <= 4, (
        f"{report['attempts']} attempts (expected at most 1 + 3 retries)"
    )
