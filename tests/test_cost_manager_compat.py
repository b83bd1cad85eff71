"""The AICostManager SDK's CostManager names: delivery_* arguments, queue.Full on a full
queue, AsyncCostManagerClient, and its handling-config spellings ("config", "static")."""

from __future__ import annotations

import asyncio
import json
import queue
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import (
    AicmError,
    AsyncCostManager,
    AsyncCostManagerClient,
    ConfigError,
    CostManager,
    DirectoryConfigSource,
    QueueFull,
    QueueFullError,
    Tracker,
)
from aicm_manual._batch_input import sdk_tracker_kwargs
from aicm_manual._records import Target, UsageRecord
from aicm_manual.testing import CapturingDelivery

# The handling config of the reference CostManager page, as written there.
SDK_HANDLING = {
    "tracked_methods": ["add"],
    "request_fields": ["a", "b"],
    "response_fields": [{"key": "value", "path": ""}],
    "payload_mapping": {
        "config": "config_identifier",
        "timestamp": "timestamp",
        "usage": "response_data.value",
    },
    "static_payload_fields": {"static": 1},
}


class Calculator:
    """A client whose ``add`` answers a usage-shaped dict."""

    def add(self, a: int, b: int) -> dict[str, int]:
        return {"sum": a + b}


def calculator_config(tmp_path: Path, handling: dict[str, Any]) -> DirectoryConfigSource:
    config = {
        "config_id": "calculator",
        "manual_usage_schema": {"sum": "int"},
        "services": [{"service_id": "calculator::add"}],
        "handling_config": handling,
    }
    (tmp_path / "calculator.json").write_text(json.dumps(config))
    return DirectoryConfigSource(tmp_path)


def calculator_tracker(source: DirectoryConfigSource, delivery: Any) -> Tracker:
    return Tracker("calculator", "calculator::add", config_source=source, delivery=delivery)


def test_the_sdk_handling_config_is_accepted_with_config_and_static_aliases(
    tmp_path: Path,
) -> None:
    """ "config" restates the manager's config; a non-record static key goes to context."""
    delivery = CapturingDelivery()
    tracker = calculator_tracker(calculator_config(tmp_path, SDK_HANDLING), delivery)
    with CostManager(Calculator(), tracker=tracker) as manager:
        assert manager.add(a=1, b=2) == {"sum": 3}
    [record] = delivery.wire()
    assert record["config_id"] == "calculator"
    assert record["usage"] == {"sum": 3}
    assert record["context"] == {"static": 1}
    tracker.close()


def test_a_config_alias_mapped_from_elsewhere_is_refused(tmp_path: Path) -> None:
    """The record's config cannot be taken from the call's data."""
    handling = {**SDK_HANDLING, "payload_mapping": {"config": "method", "usage": "response_data"}}
    tracker = Tracker(
        config_source=calculator_config(tmp_path, handling), delivery=CapturingDelivery()
    )
    with pytest.raises(ConfigError, match=r"payload_mapping\['config'\]: the record's config"):
        tracker.config_source.get("calculator")
    tracker.close()


def test_sdk_delivery_arguments_become_delivery_options() -> None:
    """delivery_batch_interval, delivery_max_batch_size, delivery_timeout are aliases."""
    assert sdk_tracker_kwargs(
        {
            "delivery_mode": "async",
            "delivery_batch_interval": 0.5,
            "delivery_max_batch_size": 20,
            "delivery_timeout": 3.0,
            "delivery_options": {"queue_size": 100},
        }
    ) == {
        "delivery_options": {
            "queue_size": 100,
            "batch_interval": 0.5,
            "batch_size": 20,
            "timeout": 3.0,
        }
    }
    with pytest.raises(ConfigError, match="delivery_mode must be 'sync' or 'async'"):
        sdk_tracker_kwargs({"delivery_mode": "eventlet"})
    with pytest.raises(ConfigError, match="disagree"):
        sdk_tracker_kwargs({"delivery_timeout": 1, "delivery_options": {"timeout": 2}})


def test_cost_manager_takes_the_sdk_delivery_arguments(tmp_path: Path) -> None:
    """CostManager(..., delivery_mode=, delivery_batch_interval=, ...) builds its Tracker."""
    manager = CostManager(
        Calculator(),
        config_id="calculator",
        schemas_dir=calculator_config(tmp_path, SDK_HANDLING).path,
        aicm_api_key="sk-test",
        aicm_api_base="http://127.0.0.1:9",
        environ={"AICM_INI_PATH": "/nonexistent/AICM.INI"},
        delivery_type="immediate",
        delivery_mode="sync",
        delivery_batch_interval=0.05,
        delivery_max_batch_size=10,
        delivery_timeout=1.0,
    )
    settings = manager.tracker.delivery_settings
    assert (settings.batch_interval, settings.batch_size, settings.timeout) == (0.05, 10, 1.0)
    manager.close(timeout=0)


class FullDelivery:
    """A delivery whose queue is always full under the "raise" policy."""

    def submit(self, record: UsageRecord, target: Target) -> None:
        raise QueueFullError("delivery queue is full (1 records); delivery_on_full='raise'")

    def flush(self, timeout: float | None = None) -> int:
        return 0


def test_a_full_queue_reaches_the_caller_as_queue_full(tmp_path: Path) -> None:
    """With the raise policy the call raises an error that is AicmError and queue.Full."""
    source = calculator_config(tmp_path, SDK_HANDLING)
    tracker = calculator_tracker(source, FullDelivery())
    manager = CostManager(Calculator(), tracker=tracker, config_id="calculator")
    with pytest.raises(queue.Full) as info:
        manager.add(a=1, b=2)
    assert isinstance(info.value, AicmError)
    assert isinstance(info.value, QueueFull)
    assert isinstance(info.value.__cause__, QueueFullError)
    assert manager.errors == 1
    manager.close()
    tracker.close()


def test_async_cost_manager_client_is_the_async_cost_manager() -> None:
    """AsyncCostManagerClient is a name for AsyncCostManager, not a second class."""
    assert AsyncCostManagerClient is AsyncCostManager


def test_async_cost_manager_raises_queue_full_too(tmp_path: Path) -> None:
    """The async wrapper reports a full queue the same way."""

    class AsyncCalculator:
        async def add(self, a: int, b: int) -> dict[str, int]:
            return {"sum": a + b}

    source = calculator_config(tmp_path, SDK_HANDLING)
    tracker = calculator_tracker(source, FullDelivery())

    async def run() -> None:
        manager = AsyncCostManagerClient(AsyncCalculator(), tracker=tracker, config_id="calculator")
        with pytest.raises(queue.Full):
            await manager.add(a=1, b=2)
        await manager.close()

    asyncio.run(run())
    tracker.close()
