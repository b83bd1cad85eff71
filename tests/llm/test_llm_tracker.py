"""The LLM helpers through a real Tracker and the real collector on loopback HTTP: records
stored once under the response's own id, priced as genai-prices prices the raw response."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import genai_prices
import pytest
import requests
from test_llm import CASES, IDS, Case, camel
from test_llm_streams import ANTHROPIC

from aicm_manual import Tracker, UsageValidationError
from aicm_manual._llm.tracking import (
    track_llm_stream_usage,
    track_llm_stream_usage_async,
    track_llm_usage,
    track_llm_usage_async,
)
from aicm_manual.server._embedded import EmbeddedCollector, embedded_collector
from aicm_manual.server._pricing import NANOS_PER_UNIT, to_nanos
from aicm_manual.testing import CapturingDelivery

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY = "aicm_llm_tracker_key"
NO_INI = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[EmbeddedCollector]:
    with embedded_collector(f"sqlite:///{tmp_path / 'c.db'}", SCHEMAS, [f"t:{KEY}"]) as c:
        yield c


def tracker_for(c: EmbeddedCollector, **kwargs: Any) -> Tracker:
    return Tracker(aicm_api_base=c.url, aicm_api_key=KEY, environ=NO_INI, **kwargs)


def events(c: EmbeddedCollector, response_id: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{c.url}/api/v1/events/{response_id}",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()["events"]
    return found


def genai_prices_cost(case: Case) -> Decimal:
    """What genai-prices charges for the raw response, read by its own extractor."""
    raw = camel(case.raw) if case.api_id == "gemini" else case.raw
    extracted = genai_prices.extract_usage(
        raw, provider_id=case.genai_provider, api_flavor=case.genai_flavor
    )
    price = genai_prices.calc_price(
        extracted.usage, extracted.model.id, provider_id=case.genai_provider
    )
    return Decimal(to_nanos(price.total_price)) / NANOS_PER_UNIT


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_response_tracked_twice_is_stored_once_and_priced(
    collector: EmbeddedCollector, case: Case
) -> None:
    with tracker_for(collector, delivery_type="immediate") as tracker:
        first = track_llm_usage(tracker.track, case.api_id, case.sdk_type.model_validate(case.raw))
        # Immediate mode raises on a conflict: the same record again must be a duplicate.
        again = track_llm_usage(tracker.track, case.api_id, dict(case.raw))
    assert first == again == case.response_id
    [event] = events(collector, case.response_id)
    assert event["config_id"] == "llm"
    assert event["service_id"] == case.service_id
    assert event["usage"] == case.expected
    assert Decimal(event["cost"]) == genai_prices_cost(case)


def test_a_stream_through_a_queued_tracker_stores_the_merged_usage(
    collector: EmbeddedCollector,
) -> None:
    tracker = tracker_for(collector)
    stream = track_llm_stream_usage(
        tracker.track, "anthropic", ANTHROPIC.sdk_events(), client_customer_key="acme"
    )
    assert sum(1 for _ in stream) == len(ANTHROPIC.raw)
    assert tracker.close() == 0
    [event] = events(collector, "msg_stream_01")
    assert event["usage"]["output_tokens"] == 250
    assert event["client_customer_key"] == "acme"
    assert event["priced"] is True


def test_an_abandoned_stream_reaches_the_collector(collector: EmbeddedCollector) -> None:
    tracker = tracker_for(collector)
    stream = track_llm_stream_usage(tracker.track, "anthropic", iter(ANTHROPIC.sdk_events()))
    next(stream)
    del stream
    gc.collect()
    assert tracker.close() == 0
    [event] = events(collector, "msg_stream_01")
    assert event["usage"]["output_tokens"] == 1  # all that was seen before it was dropped


def test_async_twins_with_track_async(collector: EmbeddedCollector) -> None:
    async def events_of(items: list[Any]) -> AsyncIterator[Any]:
        for item in items:
            await asyncio.sleep(0)
            yield item

    async def main() -> str:
        async with tracker_for(collector, delivery_type="immediate") as tracker:
            stream = track_llm_stream_usage_async(
                tracker.track_async, "anthropic", events_of(ANTHROPIC.sdk_events())
            )
            async for _ in stream:
                pass
            case = CASES[0]
            return await track_llm_usage_async(tracker.track_async, case.api_id, case.raw)

    assert asyncio.run(main()) == CASES[0].response_id
    assert events(collector, "msg_stream_01")[0]["usage"]["input_tokens"] == 1500
    assert len(events(collector, CASES[0].response_id)) == 1


def test_records_are_checked_against_the_llm_config() -> None:
    delivery = CapturingDelivery()
    tracker = Tracker(schemas_dir=SCHEMAS, delivery=delivery, environ=NO_INI)
    case = CASES[3]
    track_llm_usage(tracker.track, case.api_id, case.raw, client_customer_key="acme")
    [wire] = delivery.wire()
    assert wire["config_id"] == "llm"
    assert wire["service_id"] == "google::gemini-2.5-flash"
    assert wire["timestamp"] == "2025-09-28T21:16:04.811473Z"
    assert wire["usage"] == case.expected
    # The llm config's schema checks the canonical record: a config with another
    # vocabulary refuses it rather than billing zero.
    with pytest.raises(UsageValidationError, match="cache_read_tokens: unexpected field"):
        track_llm_usage(
            tracker.track,
            "openai_chat",
            CASES[0].raw,
            config_id="openai-chat",
            service_id="openai::gpt-4o",
        )
