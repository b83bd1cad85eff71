"""Tracker: config loading, validation, record building, lifecycle and key masking."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from aicm_manual import (
    ConfigNotFoundError,
    InvalidRecordError,
    Secret,
    Tracker,
    TrackerClosedError,
    UsageValidationError,
)
from aicm_manual.testing import CapturingDelivery
from conftest import ConfigServer

NO_ENV: dict[str, str] = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}
CHAT = {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 97}


@pytest.fixture
def delivery() -> CapturingDelivery:
    return CapturingDelivery()


@pytest.fixture
def tracker(schemas_dir: Path, delivery: CapturingDelivery) -> Tracker:
    return Tracker(
        "openai-chat",
        "openai::gpt-4o-mini",
        schemas_dir=schemas_dir,
        delivery=delivery,
        environ=NO_ENV,
    )


def test_track_builds_the_wire_record(tracker: Tracker, delivery: CapturingDelivery) -> None:
    rid = tracker.track(CHAT, client_customer_key="acme", context={"env": "prod"})
    assert uuid.UUID(hex=rid).version == 4
    [wire] = delivery.wire()
    assert wire["response_id"] == rid
    assert wire["config_id"] == "openai-chat"
    assert wire["service_id"] == "openai::gpt-4o-mini"
    assert wire["usage"] == CHAT
    assert wire["client_customer_key"] == "acme"
    assert wire["context"] == {"env": "prod"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", wire["timestamp"])
    stamped = delivery.records[0].timestamp
    assert abs(datetime.now(timezone.utc) - stamped) < timedelta(seconds=5)


def test_optional_keys_are_absent_from_the_wire_when_not_given(
    tracker: Tracker, delivery: CapturingDelivery
) -> None:
    tracker.track(CHAT)
    tracker.track(CHAT, timestamp="2026-11-24T10:00:00Z")
    defaulted, given = delivery.wire()
    # The client says when it filled the timestamp in: resending is then idempotent.
    assert set(defaulted) == {
        "config_id",
        "service_id",
        "response_id",
        "timestamp",
        "timestamp_defaulted",
        "usage",
    }
    assert defaulted["timestamp_defaulted"] is True
    assert set(given) == {"config_id", "service_id", "response_id", "timestamp", "usage"}


def test_payload_and_context_are_copied(tracker: Tracker, delivery: CapturingDelivery) -> None:
    usage = {**CHAT, "tool_calls": {"search": 2}}
    context = {"tags": ["a"]}
    tracker.track(usage, context=context)
    usage["tool_calls"]["search"] = 99  # type: ignore[index]
    usage["input_tokens"] = 0
    context["tags"].append("b")
    record = delivery.records[0]
    assert record.usage["tool_calls"] == {"search": 2}
    assert record.usage["input_tokens"] == 812
    assert record.context == {"tags": ["a"]}


def test_invalid_payload_raises_and_nothing_is_submitted(
    tracker: Tracker, delivery: CapturingDelivery
) -> None:
    with pytest.raises(UsageValidationError) as info:
        tracker.track({"model": "m", "input_tokens": "812", "outptu_tokens": 3})
    err = info.value
    assert err.missing_fields == ["output_tokens"]
    assert err.extra_fields == ["outptu_tokens"]
    assert err.errors["input_tokens"] == ["input_tokens: expected int, got str '812'"]
    assert "did you mean 'output_tokens'?" in err.errors["outptu_tokens"][0]
    assert len(delivery) == 0


def test_given_response_id_and_timestamps_are_used(
    tracker: Tracker, delivery: CapturingDelivery
) -> None:
    tracker.track(CHAT, response_id="sess-1", timestamp="2026-11-24T10:00:00Z")
    tracker.track(CHAT, response_id="sess-2", timestamp=datetime(2026, 11, 24, 10, 0, 0))
    plus_two = timezone(timedelta(hours=2))
    tracker.track(CHAT, response_id="sess-3", timestamp=datetime(2026, 11, 24, 12, tzinfo=plus_two))
    tracker.track(CHAT, response_id="sess-4", timestamp="2026-11-24T12:00:00+02:00")
    wires = delivery.wire()
    assert [w["response_id"] for w in wires] == ["sess-1", "sess-2", "sess-3", "sess-4"]
    assert {w["timestamp"] for w in wires} == {"2026-11-24T10:00:00.000000Z"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamp": "yesterday"}, "not an ISO 8601 date-time"),
        ({"timestamp": 1700000000}, "must be a datetime or an ISO 8601 string"),
        ({"response_id": ""}, "response_id must be a non-empty string"),
        ({"response_id": "x" * 256}, "at most 255 characters"),
        ({"client_customer_key": 42}, "client_customer_key must be a non-empty string"),
        ({"context": ["env", "prod"]}, "context must be a mapping"),
    ],
)
def test_bad_record_arguments_raise_and_nothing_is_submitted(
    tracker: Tracker, delivery: CapturingDelivery, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        tracker.track(CHAT, **kwargs)  # type: ignore[arg-type]
    assert len(delivery) == 0


def test_track_after_close_fails_loudly(tracker: Tracker, delivery: CapturingDelivery) -> None:
    assert tracker.close() == 0
    assert tracker.close() == 0  # idempotent
    with pytest.raises(TrackerClosedError):
        tracker.track(CHAT)
    assert len(delivery) == 0


def test_context_manager_closes(schemas_dir: Path, delivery: CapturingDelivery) -> None:
    with Tracker(
        "heygen", "heygen::streaming-avatar", schemas_dir=schemas_dir, delivery=delivery
    ) as t:
        t.track({"duration": 12.3})
    assert t.closed
    assert delivery.wire()[0]["usage"] == {"duration": 12.3}


def test_create_async_and_async_context_manager(
    schemas_dir: Path, delivery: CapturingDelivery
) -> None:
    async def main() -> str:
        tracker = await Tracker.create_async(
            "heygen", "heygen::streaming-avatar", schemas_dir=schemas_dir, delivery=delivery
        )
        async with tracker:
            return tracker.track({"duration": 3})

    rid = asyncio.run(main())
    assert delivery.records[0].response_id == rid


def test_unknown_config_and_service_raise_not_found(
    schemas_dir: Path, delivery: CapturingDelivery
) -> None:
    with pytest.raises(ConfigNotFoundError, match="config 'nope'"):
        Tracker("nope", "svc", schemas_dir=schemas_dir, delivery=delivery)
    with pytest.raises(ConfigNotFoundError, match="service 'openai::gpt-9'"):
        Tracker("openai-chat", "openai::gpt-9", schemas_dir=schemas_dir, delivery=delivery)


def test_schemas_dir_from_environment(schemas_dir: Path, delivery: CapturingDelivery) -> None:
    env = {**NO_ENV, "AICM_SCHEMAS_DIR": str(schemas_dir)}
    t = Tracker("internal-api", "internal::geocoder", delivery=delivery, environ=env)
    assert t.config.source.endswith("internal-api.json")


def test_trackers_load_config_over_http_once_and_keep_their_own_keys(
    config_server: ConfigServer, delivery: CapturingDelivery
) -> None:
    env = {**NO_ENV, "AICM_API_BASE": config_server.url}
    a = Tracker("heygen", "heygen::streaming-avatar", delivery=delivery, environ=env)
    b = Tracker("heygen", "heygen::streaming-avatar", delivery=delivery, environ=env)
    assert len(config_server.seen) == 1  # one fetch per TTL per process
    keyed = Tracker(
        "heygen",
        "heygen::streaming-avatar",
        aicm_api_key="sk-customer-b",
        delivery=delivery,
        environ=env,
    )
    for t in (a, b, keyed):
        t.track({"duration": 1.5})
    targets = delivery.targets
    assert targets[0] == targets[1]
    assert targets[2].api_key == Secret("sk-customer-b")
    assert targets[0].api_key is None
    assert all(t.api_base == config_server.url for t in targets)


def test_api_key_never_appears_in_reprs(schemas_dir: Path, delivery: CapturingDelivery) -> None:
    t = Tracker(
        "heygen",
        "heygen::streaming-avatar",
        schemas_dir=schemas_dir,
        aicm_api_key="sk-live-abcdef123456",
        delivery=delivery,
        environ=NO_ENV,
    )
    t.track({"duration": 1})
    for text in (repr(t), repr(t.settings), repr(delivery.targets[0]), str(delivery.records)):
        assert "sk-live-abcdef123456" not in text
    assert "[secure]" in repr(t)


def test_customer_key_is_the_sdks_name_for_client_customer_key(schemas_dir: Path) -> None:
    """track(customer_key=) files the record under that customer; both names must agree."""
    from aicm_manual.testing import CapturingDelivery

    captured = CapturingDelivery()
    with Tracker(
        "heygen", "heygen::streaming-avatar", schemas_dir=schemas_dir, delivery=captured
    ) as t:
        t.track({"duration": 1.0}, customer_key="acme")
        t.track({"duration": 1.0}, customer_key="acme", client_customer_key="acme")
        with pytest.raises(InvalidRecordError, match="disagree"):
            t.track({"duration": 1.0}, customer_key="acme", client_customer_key="globex")
    assert [r.client_customer_key for r in captured.records] == ["acme", "acme"]


def test_delivery_stats_is_the_health_with_total_failed(schemas_dir: Path) -> None:
    """tracker.delivery.stats() answers the engine's health plus the SDK's total_failed."""
    with Tracker("heygen", "heygen::streaming-avatar", schemas_dir=schemas_dir) as t:
        stats = t.delivery.stats()  # type: ignore[attr-defined]
    assert stats["total_failed"] == stats["total_rejected"] + stats["total_discarded"]
    assert "queued" in stats
