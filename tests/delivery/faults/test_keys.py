"""An API key that cannot travel in an HTTP header is refused at Tracker
construction with a ConfigError that does not show it; no message ever contains a key."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import (
    AicmError,
    ConfigError,
    Tracker,
    get_global_delivery_health,
    reset_global_delivery,
)
from faults.scripted import USAGE, Collector, make_tracker, wait_for

# The secret part of each key is what must never be shown.
NON_LATIN1_KEY = "sk-live-\u20acSECRETPART1"  # the euro sign is outside Latin-1
NEWLINE_KEY = "sk-live-abc\nSECRETPART2"


def construct(schemas_dir: Path, url: str, **kwargs: Any) -> Tracker | ConfigError:
    """The tracker, or the ConfigError its construction raised."""
    try:
        return make_tracker(schemas_dir, url, **kwargs)
    except ConfigError as exc:
        return exc


@pytest.mark.parametrize("key", [NON_LATIN1_KEY, NEWLINE_KEY], ids=["non-latin1", "newline"])
def test_unsendable_key_is_refused_at_construction(
    schemas_dir: Path, collector: Collector, key: str
) -> None:
    """Tracker() raises ConfigError for a key no HTTP header can carry, without the key."""
    with pytest.raises(ConfigError) as info:
        make_tracker(schemas_dir, collector.url, key=key)
    assert "SECRETPART" not in str(info.value)
    assert "SECRETPART" not in repr(info.value)


def test_non_latin1_key_records_are_never_lost_silently(
    schemas_dir: Path, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """Records of such a key are refused up front or stay accounted for; the key is never shown."""
    caplog.set_level(logging.DEBUG, logger="aicm_manual")
    discarded: list[str] = []
    tracker = construct(
        schemas_dir,
        collector.url,
        key=NON_LATIN1_KEY,
        on_discard=lambda records, reason: discarded.extend(r["response_id"] for r in records),
    )
    if isinstance(tracker, ConfigError):  # the expected outcome once fixed
        assert "SECRETPART" not in str(tracker)
        return
    for _ in range(3):
        tracker.track(USAGE)
    tracker.flush(1)
    health = get_global_delivery_health()
    reset_global_delivery(timeout=0)  # what is left is discarded ("shutdown") and reported
    accounted = health["total_delivered"] + health["total_rejected"] + len(set(discarded))
    assert accounted == 3, (
        f"3 tracked, {accounted} delivered, rejected or reported to on_discard; "
        f"last_error={health['last_error']!r}"
    )
    assert "SECRETPART" not in json.dumps(health) + caplog.text


def test_newline_key_is_never_printed(
    schemas_dir: Path, collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    """A key with a newline never appears in health(), logs or a DeliveryError."""
    caplog.set_level(logging.DEBUG, logger="aicm_manual")
    options = {"retry_budget": 0.1}
    immediate = construct(
        schemas_dir,
        collector.url,
        key=NEWLINE_KEY,
        delivery_type="immediate",
        delivery_options=options,
    )
    if isinstance(immediate, ConfigError):  # the expected outcome once fixed
        assert "SECRETPART" not in str(immediate)
        return
    texts: list[str] = []
    with pytest.raises(AicmError) as info:
        immediate.track(USAGE)
    texts += [str(info.value), repr(info.value)]
    queued = make_tracker(schemas_dir, collector.url, key=NEWLINE_KEY, delivery_options=options)
    queued.track(USAGE)
    wait_for(lambda: get_global_delivery_health()["last_error"] is not None, timeout=5)
    texts += [json.dumps(get_global_delivery_health()), caplog.text]
    leaked = [text for text in texts if "SECRETPART" in text]
    assert not leaked, leaked[0][:500]
