"""A tracker's delivery settings must not be silently ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aicm_manual import ConfigError, QueueFullError, get_global_delivery_health
from faults.scripted import USAGE, Collector, closed_port_url, make_tracker, wait_for

# The worker stays quiet while the queue fills: a long backoff after the first failure.
QUIET: dict[str, object] = {
    "queue_size": 1000,
    "batch_interval": 60,
    "backoff_initial": 60,
    "backoff_max": 60,
}


def test_second_tracker_on_full_raise_is_honoured(schemas_dir: Path) -> None:
    """A later tracker's delivery_on_full="raise" raises QueueFullError instead of dropping."""
    url = closed_port_url()
    first = make_tracker(
        schemas_dir, url, key="k1", delivery_on_full="backpressure", delivery_options=QUIET
    )
    dropped: list[Any] = []
    second = make_tracker(
        schemas_dir,
        url,
        key="k2",
        delivery_on_full="raise",
        on_discard=lambda records, reason: dropped.append((len(records), reason)),
        delivery_options=QUIET,
    )
    assert second.delivery_settings.on_full.value == "raise"
    for _ in range(1000):
        first.track(USAGE)
    with pytest.raises(QueueFullError):
        second.track(USAGE)
    health = get_global_delivery_health()
    assert health["discarded_by_reason"].get("queue_full", 0) == 0, health["discarded_by_reason"]
    assert dropped == []


def test_health_before_any_tracker_does_not_freeze_defaults(schemas_dir: Path) -> None:
    """get_global_delivery_health() first, then a tracker's queue_size and on_full still apply."""
    get_global_delivery_health()
    tracker = make_tracker(
        schemas_dir, closed_port_url(), delivery_on_full="raise", delivery_options=QUIET
    )
    for _ in range(1000):
        tracker.track(USAGE)
    with pytest.raises(QueueFullError):
        tracker.track(USAGE)


def test_second_tracker_retry_budget_is_honoured(schemas_dir: Path) -> None:
    """A later tracker's retry_budget gives its records up in time, with its on_discard."""
    url = closed_port_url()
    make_tracker(schemas_dir, url, key="k1")  # defaults: retry_budget 600 s
    seen: list[tuple[int, str]] = []
    second = make_tracker(
        schemas_dir,
        url,
        key="k2",
        on_discard=lambda records, reason: seen.append((len(records), reason)),
        delivery_options={"retry_budget": 0.2},
    )
    for _ in range(3):
        second.track(USAGE)
    # Bounded wait: 0.2 s budget plus fast backoff; the bug keeps them for 600 s.
    assert wait_for(lambda: sum(n for n, _ in seen) == 3, timeout=8), seen
    assert {reason for _, reason in seen} == {"retry_budget_exhausted"}


def test_second_tracker_timeout_is_honoured(schemas_dir: Path, collector: Collector) -> None:
    """A later tracker's per-request timeout cuts a hung request short and retries it.

    Bound: timeout 0.3 s, so a second attempt within 8 s; the bug waits the first
    tracker's 30 s timeout.
    """
    collector.hang_keys = {"k-hung"}
    make_tracker(schemas_dir, collector.url, key="k1", delivery_options={"timeout": 30})
    second = make_tracker(
        schemas_dir, collector.url, key="k-hung", delivery_options={"timeout": 0.3}
    )
    second.track(USAGE)
    assert wait_for(lambda: len(collector.hits_for("k-hung")) >= 2, timeout=8), (
        f"{len(collector.hits_for('k-hung'))} attempt(s) in 8 s with a 0.3 s timeout"
    )


def test_conflicting_process_wide_setting_raises_naming_both(schemas_dir: Path) -> None:
    """A tracker asking for another queue_size than the running engine's gets ConfigError."""
    url = closed_port_url()
    make_tracker(schemas_dir, url, key="k1", delivery_options={"queue_size": 1000})
    with pytest.raises(ConfigError) as info:
        make_tracker(schemas_dir, url, key="k2", delivery_options={"queue_size": 5000})
    message = str(info.value)
    assert "1000" in message.replace(",", "").replace("_", "")
    assert "5000" in message.replace(",", "").replace("_", "")


def test_leaving_a_process_wide_setting_out_is_not_a_conflict(schemas_dir: Path) -> None:
    """A later tracker that does not give queue_size runs on the engine's value."""
    url = closed_port_url()
    make_tracker(schemas_dir, url, key="k1", delivery_options={"queue_size": 1000})
    later = make_tracker(schemas_dir, url, key="k2")
    assert later.delivery_settings.queue_size != 1000  # its own resolution: the default
    assert get_global_delivery_health()["queue_capacity"] <= 1000
