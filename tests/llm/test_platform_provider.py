"""PlatformProvider and OpenaiProvider (any-llm's usage-event batching): the real ``openai``
SDK calls a loopback OpenAI-compatible endpoint, and the usage travels through a real
Tracker and delivery engine to the collector stand-in on loopback HTTP (conftest's
``config_server``), or to the embedded collector for priced records. No mocks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai_server import CREATED, USAGE, OpenAIServer, openai_server

from aicm_manual import (
    AicmError,
    ConfigError,
    OpenaiProvider,
    PlatformProvider,
    Tracker,
    TrackerClosedError,
    UsageEventBatchQueue,
    get_global_delivery_health,
)
from aicm_manual.server._embedded import embedded_collector

KEY = "aicm_platform_key"
NO_INI = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}
MESSAGES = [{"role": "user", "content": "Hello!"}]
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
BOUND = 20.0  # seconds any wait below may take at most; none is a timing assertion


@pytest.fixture
def llm() -> Iterator[OpenAIServer]:
    with openai_server() as server:
        yield server


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AICM_INI_PATH", "/nonexistent/AICM.INI")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback")  # what OpenaiProvider reads


def platform(config_server: Any, llm: OpenAIServer, **kwargs: Any) -> PlatformProvider:
    provider = PlatformProvider(
        api_key=KEY, aicm_api_base=config_server.url, api_base=llm.base_url, **kwargs
    )
    provider.provider = OpenaiProvider
    return provider


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.01)


async def async_wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, "not within the bound"
        await asyncio.sleep(0.01)


# -- the call and its record ------------------------------------------------------------------


def test_acompletion_calls_the_endpoint_and_records_its_usage(
    config_server: Any, llm: OpenAIServer
) -> None:
    async def main() -> tuple[Any, int, int]:
        provider = platform(config_server, llm, client_name="billing-job")
        completion = await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
        queued = len(provider.batch_queue._queue)
        left = await provider.flush_usage_events()
        await provider.shutdown()
        return completion, queued, left

    completion, queued, left = asyncio.run(main())
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == "Snow falls, soft and slow."
    assert llm.requests == [{"model": "gpt-4o-mini", "messages": MESSAGES}]
    assert (queued, left) == (1, 0)
    [record] = config_server.collector.records_for(KEY)
    assert record["service_id"] == "openai::gpt-4o-mini"
    assert record["config_id"] == "llm"
    assert record["response_id"] == completion.id == "chatcmpl-1"
    assert record["usage"] == {"input_tokens": 12, "output_tokens": 17, "model": "gpt-4o-mini"}
    assert record["timestamp"].startswith("2025-03-10T01:25:52")  # the response's `created`
    assert record["context"] == {"client_name": "billing-job"}


def test_records_arrive_at_the_collector_priced(llm: OpenAIServer, tmp_path: Path) -> None:
    with embedded_collector(f"sqlite:///{tmp_path / 'c.db'}", SCHEMAS, [f"t:{KEY}"]) as c:

        async def main() -> None:
            async with PlatformProvider(
                api_key=KEY, aicm_api_base=c.url, api_base=llm.base_url
            ) as provider:
                provider.provider = OpenaiProvider
                await provider.acompletion(model="gpt-4", messages=MESSAGES)

        asyncio.run(main())
        import requests

        answer = requests.get(
            f"{c.url}/api/v1/events", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        )
        [event] = answer.json()["events"]
    assert event["service_id"] == "openai::gpt-4"
    assert event["cost"] == "0.001380000"  # 12 x $30/M + 17 x $60/M


def test_a_stream_is_recorded_once_it_has_been_read(config_server: Any, llm: OpenAIServer) -> None:
    async def main() -> tuple[list[Any], int, int]:
        async with platform(config_server, llm) as provider:
            stream = await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            before = len(provider.batch_queue)
            chunks = [chunk async for chunk in stream]
            return chunks, before, len(provider.batch_queue)

    chunks, before, after = asyncio.run(main())
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["Snow", " falls"]
    assert llm.requests[0]["stream_options"] == {"include_usage": True}  # added for usage
    assert (before, after) == (0, 1)
    [record] = config_server.collector.records_for(KEY)
    assert record["usage"]["input_tokens"] == USAGE["prompt_tokens"]
    assert record["usage"]["output_tokens"] == USAGE["completion_tokens"]


def test_a_provider_instance_of_your_own_and_a_tracker_of_your_own(
    config_server: Any, llm: OpenAIServer
) -> None:
    tracker = Tracker(
        aicm_api_key=KEY,
        aicm_api_base=config_server.url,
        client_customer_key="acme",
        environ=NO_INI,
    )

    async def main() -> None:
        async with PlatformProvider(tracker=tracker) as provider:
            provider.provider = OpenaiProvider(api_key="sk-mine", api_base=llm.base_url)
            assert repr(provider.provider).startswith("<OpenaiProvider base_url='http://127.")
            await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)

    asyncio.run(main())
    [record] = config_server.collector.records_for(KEY)
    assert record["client_customer_key"] == "acme"
    assert not tracker.closed  # flushed, never closed: it is yours
    tracker.close()


# -- batching ---------------------------------------------------------------------------------


def test_the_queue_is_handed_over_when_it_holds_batch_size_records(
    config_server: Any, llm: OpenAIServer
) -> None:
    async def main() -> list[int]:
        provider = platform(config_server, llm, batch_size=3, flush_interval=3600)
        seen = []
        for _ in range(3):
            await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
            seen.append(len(provider.batch_queue._queue))
        assert provider.batch_queue.batches == 1
        await provider.tracker.aflush(BOUND)  # the engine's own flush: the queue is empty
        await provider.shutdown()
        return seen

    assert asyncio.run(main()) == [1, 2, 0]
    assert len(config_server.collector.records_for(KEY)) == 3


def test_nothing_leaves_before_a_trigger(config_server: Any, llm: OpenAIServer) -> None:
    async def main() -> tuple[int, int]:
        provider = platform(config_server, llm, batch_size=3, flush_interval=3600)
        for _ in range(2):
            await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
        engine_left = await provider.tracker.aflush(BOUND)  # nothing was handed over yet
        stored = len(config_server.collector.records())
        await provider.shutdown()
        return engine_left, stored

    assert asyncio.run(main()) == (0, 0)
    assert len(config_server.collector.records_for(KEY)) == 2  # shutdown flushed them


def test_the_queue_is_handed_over_flush_interval_after_its_first_record(
    config_server: Any, llm: OpenAIServer
) -> None:
    async def main() -> None:
        provider = platform(config_server, llm, batch_size=50, flush_interval=0.05)
        await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
        await async_wait_for(lambda: provider.batch_queue.batches == 1)  # no flush called
        assert len(provider.batch_queue) == 0
        await provider.tracker.aflush(BOUND)
        assert len(config_server.collector.records_for(KEY)) == 1
        await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)  # a new timer
        await async_wait_for(lambda: provider.batch_queue.batches == 2)
        await provider.shutdown()

    asyncio.run(main())
    assert len(config_server.collector.records_for(KEY)) == 2


def test_concurrent_completions_are_each_recorded_once(
    config_server: Any, llm: OpenAIServer
) -> None:
    async def main() -> None:
        async with platform(config_server, llm, batch_size=7, flush_interval=3600) as provider:
            calls = [
                provider.acompletion(model="gpt-4o-mini", messages=MESSAGES) for _ in range(20)
            ]
            await asyncio.gather(*calls)
            assert provider.batch_queue.batches == 2  # 14 handed over; shutdown takes the 6 left
            assert len(provider.batch_queue) == 6

    asyncio.run(main())
    ids = sorted(r["response_id"] for r in config_server.collector.records_for(KEY))
    assert ids == sorted(f"chatcmpl-{n}" for n in range(1, 21))


def test_batches_make_few_requests(config_server: Any, llm: OpenAIServer) -> None:
    """The page's table: N events in batches of B take at most N / B requests."""
    tracker = Tracker(
        aicm_api_key=KEY,
        aicm_api_base=config_server.url,
        environ=NO_INI,
        # The engine leaves a batch only when flushed, so its own timing cannot split one.
        delivery_options={"batch_interval": 3600},
    )

    async def main() -> None:
        async with PlatformProvider(tracker=tracker, batch_size=10, flush_interval=3600) as p:
            p.provider = OpenaiProvider(api_key="sk-loopback", api_base=llm.base_url)
            for _ in range(30):
                await p.acompletion(model="gpt-4o-mini", messages=MESSAGES)
            assert p.batch_queue.batches == 3

    asyncio.run(main())
    tracker.close()
    assert len(config_server.collector.records_for(KEY)) == 30
    assert len(config_server.collector.requests) <= 3
    assert sum(n for _, n in config_server.collector.requests) == 30


def test_each_provider_has_its_own_queue_and_key(config_server: Any, llm: OpenAIServer) -> None:
    async def main() -> None:
        first = platform(config_server, llm)
        second = PlatformProvider(
            api_key="aicm_other_key", aicm_api_base=config_server.url, api_base=llm.base_url
        )
        second.provider = OpenaiProvider
        await first.acompletion(model="gpt-4o-mini", messages=MESSAGES)
        for _ in range(2):
            await second.acompletion(model="gpt-4o-mini", messages=MESSAGES)
        assert (len(first.batch_queue), len(second.batch_queue)) == (1, 2)
        await first.shutdown()
        assert len(second.batch_queue) == 2  # untouched by the other's shutdown
        await second.shutdown()

    asyncio.run(main())
    assert len(config_server.collector.records_for(KEY)) == 1
    assert len(config_server.collector.records_for("aicm_other_key")) == 2


def test_the_end_of_the_event_loop_hands_the_queue_over(
    config_server: Any, llm: OpenAIServer
) -> None:
    """The page's "Default Behavior" example never flushes: asyncio.run ending cancels the
    timer, which hands the queue to the engine; nothing is lost."""
    provider = platform(config_server, llm, flush_interval=3600)

    async def main() -> None:
        await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
        assert isinstance(provider.provider, OpenaiProvider)
        await provider.provider.aclose()  # the LLM client; the usage queue is left as it is

    asyncio.run(main())
    assert len(provider.batch_queue) == 0
    assert provider.batch_queue.handed_over == 1
    assert provider.tracker.flush(BOUND) == 0
    assert len(config_server.collector.records_for(KEY)) == 1


# -- errors ------------------------------------------------------------------------------------


def test_a_failed_call_reaches_the_caller_and_records_nothing(
    config_server: Any, llm: OpenAIServer
) -> None:
    async def main() -> None:
        async with platform(config_server, llm, max_retries=0) as provider:
            with pytest.raises(openai.InternalServerError):
                await provider.acompletion(model="explode", messages=MESSAGES)
            assert len(provider.batch_queue) == 0

    asyncio.run(main())
    assert config_server.collector.records() == []


def test_a_completion_without_usage_is_returned_and_the_problem_logged(
    config_server: Any, llm: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> tuple[Any, UsageEventBatchQueue]:
        async with platform(config_server, llm) as provider:
            completion = await provider.acompletion(model="no-usage", messages=MESSAGES)
            return completion, provider.batch_queue

    with caplog.at_level(logging.ERROR, logger="aicm_manual.platform"):
        completion, queue = asyncio.run(main())
    assert completion.usage is None
    assert queue.failed == 1
    assert "could not be recorded" in caplog.text
    assert config_server.collector.records() == []


def test_refused_records_are_logged_and_the_others_still_go(
    config_server: Any, llm: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A tracker whose config cannot take LLM usage refuses the batch: logged, counted, and
    the completion is still the caller's."""
    tracker = Tracker("heygen", aicm_api_key=KEY, aicm_api_base=config_server.url, environ=NO_INI)

    async def main() -> UsageEventBatchQueue:
        async with PlatformProvider(tracker=tracker, batch_size=2) as provider:
            provider.provider = OpenaiProvider(api_key="sk-loopback", api_base=llm.base_url)
            for _ in range(3):
                completion = await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
                assert completion.choices[0].message.content
            return provider.batch_queue

    with caplog.at_level(logging.ERROR, logger="aicm_manual.platform"):
        queue = asyncio.run(main())
    tracker.close()
    assert (queue.failed, queue.handed_over) == (3, 0)
    assert "usage events dropped" in caplog.text
    assert config_server.collector.records() == []


def test_a_record_refused_in_a_batch_does_not_stop_the_others(
    config_server: Any, llm: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    too_long = "m" * 300  # the service_id would pass the 255-character limit

    async def main() -> UsageEventBatchQueue:
        async with platform(config_server, llm, batch_size=3) as provider:
            for model in ("gpt-4o-mini", too_long, "gpt-4o-mini"):
                await provider.acompletion(model=model, messages=MESSAGES)
            return provider.batch_queue

    with caplog.at_level(logging.ERROR, logger="aicm_manual.platform"):
        queue = asyncio.run(main())
    assert (queue.failed, queue.handed_over, queue.batches) == (1, 2, 1)
    assert "1 of a batch of 3 usage events dropped" in caplog.text
    ids = sorted(r["response_id"] for r in config_server.collector.records_for(KEY))
    assert ids == ["chatcmpl-1", "chatcmpl-3"]


def test_records_the_collector_rejects_do_not_stop_the_others(
    config_server: Any, llm: OpenAIServer
) -> None:
    config_server.collector.reject_ids.add("chatcmpl-2")

    async def main() -> int:
        async with platform(config_server, llm, batch_size=2) as provider:
            for _ in range(3):
                await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
            return await provider.flush_usage_events()

    assert asyncio.run(main()) == 0
    ids = sorted(r["response_id"] for r in config_server.collector.records_for(KEY))
    assert ids == ["chatcmpl-1", "chatcmpl-3"]
    assert get_global_delivery_health()["total_rejected"] == 1


def test_an_immediate_tracker_sends_each_batch_as_one_request(
    config_server: Any, llm: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With an ``immediate`` tracker a hand-over is the request, and the collector's
    refusals are known (logged and counted) at once."""
    config_server.collector.reject_ids.add("chatcmpl-2")
    tracker = Tracker(
        aicm_api_key=KEY,
        aicm_api_base=config_server.url,
        delivery_type="immediate",
        environ=NO_INI,
    )

    async def main() -> UsageEventBatchQueue:
        async with PlatformProvider(tracker=tracker, batch_size=2, flush_interval=3600) as p:
            p.provider = OpenaiProvider(api_key="sk-loopback", api_base=llm.base_url)
            for _ in range(2):
                await p.acompletion(model="gpt-4o-mini", messages=MESSAGES)
            assert config_server.collector.requests == [(KEY, 2)]  # sent when handed over
            return p.batch_queue

    with caplog.at_level(logging.ERROR, logger="aicm_manual.platform"):
        queue = asyncio.run(main())
    tracker.close()
    assert (queue.handed_over, queue.failed) == (2, 1)
    assert "the collector refused 1 of a batch of 2 usage events" in caplog.text


def test_an_unreachable_collector_never_fails_the_caller(llm: OpenAIServer) -> None:
    """Records wait in the engine (retried, never discarded); flush says how many."""

    tracker = Tracker(
        aicm_api_key=KEY, aicm_api_base="http://127.0.0.1:9", schemas_dir=SCHEMAS, environ=NO_INI
    )

    async def main() -> tuple[Any, int]:
        provider = PlatformProvider(tracker=tracker)
        provider.provider = OpenaiProvider(api_key="sk-loopback", api_base=llm.base_url)
        completion = await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
        left = await provider.flush_usage_events(timeout=0.2)
        await provider.shutdown(timeout=0)
        return completion, left

    completion, left = asyncio.run(main())
    assert completion.id == "chatcmpl-1"
    assert left == 1


# -- lifecycle and arguments -------------------------------------------------------------------


def test_shutdown_is_final_and_idempotent(config_server: Any, llm: OpenAIServer) -> None:
    async def main() -> None:
        provider = platform(config_server, llm)
        await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)
        assert await provider.shutdown() == 0
        assert await provider.shutdown() == 0
        assert provider.closed
        assert provider.tracker.closed
        assert provider.batch_queue.closed
        with pytest.raises(TrackerClosedError, match="shut down"):
            await provider.acompletion(model="gpt-4o-mini", messages=MESSAGES)

    asyncio.run(main())
    assert len(llm.requests) == 1  # the refused call never reached the endpoint
    assert len(config_server.collector.records_for(KEY)) == 1


def test_the_page_s_defaults_and_settings(config_server: Any) -> None:
    provider = PlatformProvider(api_key=KEY, aicm_api_base=config_server.url)
    assert (provider.batch_queue.batch_size, provider.batch_queue.flush_interval) == (50, 5.0)
    assert provider.batch_queue._queue == []
    assert provider.provider is None
    custom = PlatformProvider(
        api_key=KEY, aicm_api_base=config_server.url, batch_size=25, flush_interval=2.0
    )
    assert (custom.batch_queue.batch_size, custom.batch_queue.flush_interval) == (25, 2.0)
    assert custom.batch_queue is not provider.batch_queue
    assert repr(provider) == "<PlatformProvider provider=None queued=0>"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": True}, "batch_size must be a positive integer, got True"),
        ({"flush_interval": 0}, "flush_interval must be a positive number of seconds, got 0"),
        ({"flush_interval": "5"}, "flush_interval must be a positive number of seconds"),
    ],
)
def test_bad_settings_are_refused(config_server: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PlatformProvider(api_key=KEY, aicm_api_base=config_server.url, **kwargs)


def test_misuse_is_named(config_server: Any) -> None:
    provider = PlatformProvider(api_key=KEY, aicm_api_base=config_server.url)
    with pytest.raises(AicmError, match=r"set provider\.provider = OpenaiProvider"):
        asyncio.run(provider.acompletion(model="gpt-4o-mini", messages=MESSAGES))
    with pytest.raises(TypeError, match="is no LLM provider: it has no PROVIDER_NAME"):
        provider.provider = object()  # type: ignore[assignment]
    tracker = Tracker(aicm_api_key=KEY, aicm_api_base=config_server.url, environ=NO_INI)
    with pytest.raises(TypeError, match="not both"):
        PlatformProvider(api_key=KEY, tracker=tracker)


def test_openai_provider_reads_the_sdk_environment(
    llm: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
    provider = OpenaiProvider()

    async def main() -> Any:
        try:
            return await provider.acompletion("gpt-4o-mini", MESSAGES)
        finally:
            await provider.aclose()

    completion = asyncio.run(main())
    assert completion.created == CREATED
    assert str(provider.client.base_url).rstrip("/") == llm.base_url
