"""One (endpoint, key) never stalls, hides or drops another's."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aicm_manual import QueueFullError, get_global_delivery_health, reset_global_delivery
from faults.scripted import USAGE, Collector, child_env, closed_port_url, make_tracker, wait_for


def spool_rows(db: Path) -> list[dict[str, Any]]:
    """The queued rows of a spool, through the public CLI."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aicm_manual",
            "queue",
            "list",
            "--json",
            "--limit",
            "1000",
            "--db",
            str(db),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = json.loads(proc.stdout)["rows"]
    return rows


# -- item 2 ---------------------------------------------------------------------------------


def test_refused_key_does_not_stall_a_healthy_trackers_close(
    schemas_dir: Path, collector: Collector
) -> None:
    """close() of a healthy tracker waits only for its own records and reports 0 left."""
    collector.keys = {"good-key"}
    bad = make_tracker(schemas_dir, collector.url, key="revoked-key")
    good = make_tracker(schemas_dir, collector.url, key="good-key")
    for _ in range(5):
        bad.track(USAGE)
    good_ids = {good.track(USAGE) for _ in range(5)}
    left = good.close(3)
    assert collector.ids_for("good-key") == good_ids
    assert left == 0, f"good.close() reported {left} record(s) left (the refused key's)"


def test_refused_key_does_not_stall_a_healthy_trackers_flush(
    schemas_dir: Path, collector: Collector
) -> None:
    """flush() of a healthy tracker counts only its own (endpoint, key) records."""
    collector.keys = {"good-key"}
    bad = make_tracker(schemas_dir, collector.url, key="revoked-key")
    good = make_tracker(schemas_dir, collector.url, key="good-key")
    for _ in range(5):
        bad.track(USAGE)
    good.track(USAGE)
    assert good.flush(3) == 0
    assert bad.flush(0.2) == 5  # the refused key's records are kept and reported by it


def test_a_hung_key_never_delays_another_keys_delivery_or_flush(
    schemas_dir: Path, collector: Collector
) -> None:
    """A collector that accepts a key's request and never answers holds that (endpoint, key)
    only: another key's records are delivered, and its flush returns, while the hung
    request still waits for its timeout."""
    hung_timeout = 20.0
    collector.hang_keys = {"hung-key"}
    hung = make_tracker(
        schemas_dir, collector.url, key="hung-key", delivery_options={"timeout": hung_timeout}
    )
    ok = make_tracker(schemas_dir, collector.url, key="ok-key")
    hung.track(USAGE)
    assert wait_for(lambda: bool(collector.hits_for("hung-key")), timeout=10)
    started = time.monotonic()
    for round_ in range(2):  # and again: the next batch is not queued behind the hung one
        ids = {ok.track(USAGE) for _ in range(5)}
        assert ok.flush(hung_timeout) == 0, f"round {round_}"
        assert ids <= collector.ids_for("ok-key"), f"round {round_}"
    # Generous: only a worker that waited for the hung request could take this long.
    assert time.monotonic() - started < hung_timeout
    assert [h.status for h in collector.hits_for("hung-key")] == [None]  # still unanswered
    assert hung.flush(0.1) == 1  # and its record is still its own, pending


# -- item 5 ---------------------------------------------------------------------------------


def test_spooled_rows_for_a_gone_endpoint_do_not_block_the_live_one(
    schemas_dir: Path, collector: Collector, tmp_path: Path
) -> None:
    """Rows spooled for a dead endpoint leave the same key's records for a live one flowing."""
    db = tmp_path / "spool.db"
    gone = make_tracker(
        schemas_dir, closed_port_url(), key="sk-same", delivery_type="persistent_queue", db_path=db
    )
    for _ in range(5):
        gone.track(USAGE)
    reset_global_delivery(timeout=0)  # the rows stay on disk, as after a restart

    # A long backoff for the endpoint that is gone: the live one must not share it.
    live = make_tracker(
        schemas_dir,
        collector.url,
        key="sk-same",
        delivery_type="persistent_queue",
        db_path=db,
        delivery_options={"backoff_initial": 30, "backoff_max": 30},
    )
    # The old rows are tried (and fail) first; only then are new records tracked.
    assert wait_for(lambda: get_global_delivery_health()["last_error"] is not None, timeout=10)
    new_ids = {live.track(USAGE) for _ in range(3)}
    assert wait_for(lambda: new_ids <= collector.ids_for("sk-same"), timeout=10), (
        f"{len(new_ids & collector.ids_for('sk-same'))} of 3 new records delivered in 10 s"
    )
    assert live.flush(3) == 0


# -- item 6 ---------------------------------------------------------------------------------


def test_spool_backpressure_stays_within_the_owner(
    schemas_dir: Path, collector: Collector, tmp_path: Path
) -> None:
    """A full shared spool under backpressure never deletes another key's rows nor hands them
    to this tracker's on_discard."""
    db = tmp_path / "shared.db"
    common: dict[str, Any] = {
        "delivery_type": "persistent_queue",
        "delivery_on_full": "backpressure",
        "db_path": db,
    }
    options = {"spool_size": 10, "timeout": 30, "backoff_initial": 60, "backoff_max": 60}
    # Tenant C's request hangs, so the worker holds still while A fills the spool.
    collector.hang_keys = {"tenant-c"}
    tenant_c = make_tracker(
        schemas_dir, collector.url, key="tenant-c", delivery_options=options, **common
    )
    tenant_c.track(USAGE)
    assert wait_for(lambda: bool(collector.hits_for("tenant-c")), timeout=10)

    a_discarded: list[str] = []
    tenant_a = make_tracker(
        schemas_dir,
        closed_port_url(),
        key="tenant-a",
        on_discard=lambda records, reason: a_discarded.extend(r["response_id"] for r in records),
        delivery_options=options,
        **common,
    )
    a_ids = [tenant_a.track(USAGE, response_id=f"a-{i}") for i in range(10)]

    b_discarded: list[str] = []
    tenant_b = make_tracker(
        schemas_dir,
        closed_port_url(),
        key="tenant-b",
        on_discard=lambda records, reason: b_discarded.extend(r["response_id"] for r in records),
        delivery_options=options,
        **common,
    )
    with contextlib.suppress(QueueFullError):  # refusing B's own record is within B too
        tenant_b.track(USAGE, response_id="b-0")

    assert not set(b_discarded) & set(a_ids), f"B's on_discard got A's records {b_discarded}"
    spooled = {row["response_id"] for row in spool_rows(db)}
    assert set(a_ids) <= spooled, f"A's rows deleted by B's backpressure: {set(a_ids) - spooled}"
    assert a_discarded == []
    assert "tenant-a" not in json.dumps(get_global_delivery_health())


def test_spooled_rows_past_spool_max_age_become_dead_letters_with_the_reason(
    schemas_dir: Path, tmp_path: Path
) -> None:
    """Rows whose endpoint stays unreachable past spool_max_age leave as dead letters."""
    tracker = make_tracker(
        schemas_dir,
        closed_port_url(),
        delivery_type="persistent_queue",
        db_path=tmp_path / "spool.db",
        delivery_options={"spool_max_age": 0},
    )
    for _ in range(3):
        tracker.track(USAGE)
    assert wait_for(lambda: get_global_delivery_health()["spool"]["dead_letters"] == 3)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aicm_manual",
            "queue",
            "list",
            "--dead",
            "--json",
            "--db",
            str(tmp_path / "spool.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    reasons = {row["reason"] for row in json.loads(proc.stdout)["rows"]}
    assert len(reasons) == 1
    [reason] = reasons
    assert "spool_max_age" in reason
    assert "refused" in reason.lower() or "failed" in reason.lower(), reason


def test_memory_backpressure_stays_within_the_owner(schemas_dir: Path) -> None:
    """A full memory queue under backpressure drops the tracker's own record, never another's."""
    quiet = {"queue_size": 1000, "batch_interval": 60, "backoff_initial": 60, "backoff_max": 60}
    url = closed_port_url()
    a_dropped: list[str] = []
    b_dropped: list[str] = []
    tenant_a = make_tracker(
        schemas_dir,
        url,
        key="tenant-a",
        delivery_on_full="backpressure",
        on_discard=lambda records, reason: a_dropped.extend(r["response_id"] for r in records),
        delivery_options=quiet,
    )
    tenant_b = make_tracker(
        schemas_dir,
        url,
        key="tenant-b",
        delivery_on_full="backpressure",
        on_discard=lambda records, reason: b_dropped.extend(r["response_id"] for r in records),
        delivery_options=quiet,
    )
    for i in range(1000):
        tenant_a.track(USAGE, response_id=f"a-{i}")
    tenant_b.track(USAGE, response_id="b-0")
    assert a_dropped == []
    assert b_dropped == ["b-0"]
    assert get_global_delivery_health()["discarded_by_reason"] == {"queue_full": 1}
