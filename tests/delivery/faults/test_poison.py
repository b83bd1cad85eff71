"""A record the collector cannot store (a 5xx for any request that holds
it) is isolated by bisection and dead-lettered; the rest of its batch is delivered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aicm_manual import get_global_delivery_health
from faults.scripted import USAGE, Collector, make_tracker, wait_for

POISON = "poison-1"


def test_poison_record_in_memory_queue_sinks_only_itself(
    schemas_dir: Path, collector: Collector
) -> None:
    """mem_queue: the 19 good records of a batch with one poison record are delivered."""
    collector.poison = {POISON: 500}
    discarded: list[str] = []
    tracker = make_tracker(
        schemas_dir,
        collector.url,
        on_discard=lambda records, reason: discarded.extend(r["response_id"] for r in records),
        delivery_options={"retry_budget": 3, "batch_interval": 0.5},
    )
    good = {tracker.track(USAGE, response_id=f"good-{i}") for i in range(19)}
    tracker.track(USAGE, response_id=POISON)
    wait_for(lambda: good <= collector.ids_for("sk-a") or bool(set(discarded) & good), 15)
    assert good <= collector.ids_for("sk-a"), (
        f"{len(good & collector.ids_for('sk-a'))} of 19 good records delivered; "
        f"discarded: {len(discarded)}"
    )
    assert not set(discarded) & good
    assert POISON not in collector.ids_for("sk-a")
    # The poison record leaves as a dead letter (or a reported discard), never silently.
    assert wait_for(
        lambda: get_global_delivery_health()["dead_letters"] >= 1 or POISON in discarded,
        timeout=10,
    )


def test_poison_record_in_spool_does_not_block_later_records(
    schemas_dir: Path, collector: Collector, tmp_path: Path
) -> None:
    """persistent_queue: the poison row is dead-lettered; earlier and later rows arrive."""
    collector.poison = {POISON: 500}
    tracker = make_tracker(
        schemas_dir,
        collector.url,
        delivery_type="persistent_queue",
        db_path=tmp_path / "spool.db",
        delivery_options={"batch_interval": 0.5},
    )
    first = {tracker.track(USAGE, response_id=f"early-{i}") for i in range(19)}
    tracker.track(USAGE, response_id=POISON)
    wait_for(lambda: bool(collector.hits), timeout=5)  # the poisoned batch has been tried
    later = {tracker.track(USAGE, response_id=f"late-{i}") for i in range(10)}
    expected = first | later
    assert wait_for(lambda: expected <= collector.ids_for("sk-a"), timeout=15), (
        f"{len(expected & collector.ids_for('sk-a'))} of 29 good records delivered"
    )
    health: dict[str, Any] = get_global_delivery_health()
    assert wait_for(lambda: get_global_delivery_health()["spool"]["dead_letters"] == 1, 10), health
