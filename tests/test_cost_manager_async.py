"""AsyncCostManager with the real AsyncOpenAI and AsyncAnthropic clients against the
loopback vendor of test_cost_manager, one asyncio.run per test."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import requests

from aicm_manual._cost_manager import AsyncCostManager
from aicm_manual.server._embedded import embedded_collector
from aicm_manual.testing import CapturingDelivery
from test_cost_manager import (
    ANTHROPIC_CANONICAL,
    CHAT_CANONICAL,
    MESSAGES,
    NO_INI,
    VendorServer,
    copy_schemas,
    vendor_server,
)


@pytest.fixture
def vendor() -> Iterator[VendorServer]:
    with vendor_server() as server:
        yield server


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    return copy_schemas(tmp_path)


@pytest.fixture
def delivery() -> CapturingDelivery:
    return CapturingDelivery()


def async_openai(vendor: VendorServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{vendor.url}/v1", api_key="test", max_retries=0)


def async_anthropic(vendor: VendorServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=vendor.url, api_key="test", max_retries=0)


def manager(client: Any, schemas: Path, delivery: CapturingDelivery) -> AsyncCostManager:
    return AsyncCostManager(client, schemas_dir=schemas, delivery=delivery, environ=NO_INI)


def test_async_openai_calls_and_streams_are_tracked(
    vendor: VendorServer,
    schemas: Path,
    delivery: CapturingDelivery,
) -> None:
    async def main() -> tuple[str, list[str]]:
        async with manager(async_openai(vendor), schemas, delivery) as cm:
            assert cm.config_id == "openai"
            completion = await cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            stream = await cm.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True
            )
            ids = [chunk.id async for chunk in stream]
        await cm.unwrapped.close()
        return completion.id, ids

    completion_id, ids = asyncio.run(main())
    assert completion_id == "chatcmpl-1"
    assert set(ids) == {"chatcmpl-2"}
    assert vendor.requests[-1][1]["stream_options"] == {"include_usage": True}
    first, second = delivery.wire()
    assert first["usage"] == second["usage"] == CHAT_CANONICAL
    assert [first["response_id"], second["response_id"]] == ["chatcmpl-1", "chatcmpl-2"]


def test_async_anthropic_stream_closed_early_and_abandoned(
    vendor: VendorServer,
    schemas: Path,
    delivery: CapturingDelivery,
) -> None:
    async def main() -> None:
        cm = manager(async_anthropic(vendor), schemas, delivery)
        kwargs: dict[str, Any] = {"max_tokens": 64, "messages": MESSAGES, "stream": True}
        async with await cm.messages.create(model="claude-haiku-4-5", **kwargs) as stream:
            async for event in stream:
                if event.type == "content_block_start":
                    break
        whole = await cm.messages.create(model="claude-haiku-4-5", **kwargs)
        async for _ in whole:
            pass
        dropped = await cm.messages.create(model="claude-haiku-4-5", **kwargs)
        await dropped.__anext__()
        inner = dropped._stream
        del dropped
        gc.collect()
        for _ in range(5):  # the finalizer's track_async runs as a task on this loop
            await asyncio.sleep(0)
        await inner.close()  # the test's own cleanup: the wrapper was dropped, not closed
        await cm.close()
        await cm.unwrapped.close()

    asyncio.run(main())
    records = {r["response_id"]: r["usage"] for r in delivery.wire()}
    assert records["msg_1"]["output_tokens"] == 1  # closed after message_start
    assert records["msg_2"] == ANTHROPIC_CANONICAL
    assert records["msg_3"]["input_tokens"] == 1500


def test_a_failed_async_call_raises_and_tracks_nothing(
    vendor: VendorServer,
    schemas: Path,
    delivery: CapturingDelivery,
) -> None:
    async def main() -> None:
        cm = manager(async_openai(vendor), schemas, delivery)
        with pytest.raises(openai.InternalServerError):
            await cm.responses.create(model="explode", input="x")
        await cm.flush()
        await cm.unwrapped.close()

    asyncio.run(main())
    assert len(delivery) == 0


def test_async_immediate_mode_reaches_the_collector(
    vendor: VendorServer,
    schemas: Path,
    tmp_path: Path,
) -> None:
    key = "aicm_async_cost_manager_key"
    with embedded_collector(f"sqlite:///{tmp_path / 'c.db'}", schemas, [f"t:{key}"]) as c:

        async def main() -> str:
            async with AsyncCostManager(
                async_anthropic(vendor),
                aicm_api_base=c.url,
                aicm_api_key=key,
                delivery_type="immediate",
                environ=NO_INI,
                strict=True,
            ) as cm:
                message = await cm.messages.create(
                    model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
                )
                await cm.unwrapped.close()
                return str(message.id)

        rid = asyncio.run(main())
        answer = requests.get(
            f"{c.url}/api/v1/events/{rid}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()
    [event] = answer["events"]
    assert event["usage"] == ANTHROPIC_CANONICAL
    assert event["priced"] is True


def test_an_async_client_in_a_sync_manager_is_pointed_to_async_cost_manager(
    vendor: VendorServer,
    schemas: Path,
    delivery: CapturingDelivery,
) -> None:
    from aicm_manual._cost_manager import CostManager

    async def main() -> str:
        client = async_openai(vendor)
        cm = CostManager(client, schemas_dir=schemas, delivery=delivery, environ=NO_INI)
        completion = await cm.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await client.close()
        assert completion.id == "chatcmpl-1"  # the call itself still works
        assert cm.errors == 1
        return str(cm.last_error)

    assert "wrap async clients with AsyncCostManager" in asyncio.run(main())
    assert len(delivery) == 0
