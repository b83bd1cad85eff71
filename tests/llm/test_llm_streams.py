"""Stream wrappers: every event unchanged, usage merged across events, tracked exactly once
at the end, on close, on an error or when abandoned. Events are the SDKs' own types (and the
same events as dicts), in the order each vendor's API sends them."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anthropic.types
import openai.types.chat
import openai.types.responses
import pydantic
import pytest
from google.genai import types as genai_types

from aicm_manual._llm.streams import AsyncLlmStream
from aicm_manual._llm.tracking import track_llm_stream_usage, track_llm_stream_usage_async
from aicm_manual.errors import LlmUsageError, TrackerClosedError

ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
ANTHROPIC_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_stream_01",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Output here is a placeholder: the real count comes in message_delta.
            "usage": {
                "input_tokens": 300,
                "cache_read_input_tokens": 1000,
                "cache_creation_input_tokens": 200,
                "output_tokens": 1,
            },
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Snow"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " falls"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 250},
    },
    {"type": "message_stop"},
]


def chat_chunk(content: str | None, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    choices = [] if usage else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    return {
        "id": "chatcmpl-stream-01",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": choices,
        "usage": usage,
    }


CHAT_EVENTS = [
    chat_chunk("Snow"),
    chat_chunk(" falls"),
    # Sent only with stream_options={"include_usage": True}: no choices, just usage.
    chat_chunk(
        None,
        {
            "prompt_tokens": 40,
            "completion_tokens": 120,
            "total_tokens": 160,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    ),
]


def response_body(status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": "resp_stream_01",
        "object": "response",
        "created_at": 1741476542,
        "model": "gpt-4.1-2025-04-14",
        "status": status,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


RESPONSES_EVENTS = [
    {
        "type": "response.created",
        "sequence_number": 0,
        "response": response_body("in_progress", None),
    },
    {
        "type": "response.output_text.delta",
        "sequence_number": 1,
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Snow",
        "logprobs": [],
    },
    {
        "type": "response.completed",
        "sequence_number": 2,
        "response": response_body(
            "completed",
            {
                "input_tokens": 500,
                "input_tokens_details": {"cached_tokens": 128, "cache_write_tokens": 0},
                "output_tokens": 70,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 570,
            },
        ),
    },
]


def gemini_chunk(text: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "response_id": "gemini-stream-01",
        "create_time": "2025-09-28T21:16:04.811473Z",
        "model_version": "gemini-2.5-flash",
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}],
        "usage_metadata": usage,
    }


GEMINI_EVENTS = [
    gemini_chunk("Snow", {"prompt_token_count": 20, "candidates_token_count": 5}),
    gemini_chunk(" falls", {"prompt_token_count": 20, "candidates_token_count": 12}),
    gemini_chunk(
        ".",
        {"prompt_token_count": 20, "candidates_token_count": 30, "thoughts_token_count": 64},
    ),
]


@dataclass
class StreamCase:
    api_id: str
    raw: list[dict[str, Any]]
    build: Callable[[dict[str, Any]], Any]
    expected: dict[str, Any]
    response_id: str
    service_id: str

    def sdk_events(self) -> list[Any]:
        return [self.build(e) for e in self.raw]


STREAMS = [
    StreamCase(
        "anthropic",
        ANTHROPIC_EVENTS,
        pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent).validate_python,
        {
            "input_tokens": 1500,
            "output_tokens": 250,
            "cache_read_tokens": 1000,
            "cache_write_tokens": 200,
            "model": ANTHROPIC_MODEL,
        },
        "msg_stream_01",
        f"anthropic::{ANTHROPIC_MODEL}",
    ),
    StreamCase(
        "openai_chat",
        CHAT_EVENTS,
        openai.types.chat.ChatCompletionChunk.model_validate,
        {
            "input_tokens": 40,
            "output_tokens": 120,
            "cache_read_tokens": 0,
            "reasoning_tokens": 0,
            "model": "gpt-4o-mini-2024-07-18",
        },
        "chatcmpl-stream-01",
        "openai::gpt-4o-mini-2024-07-18",
    ),
    StreamCase(
        "openai_responses",
        RESPONSES_EVENTS,
        pydantic.TypeAdapter(openai.types.responses.ResponseStreamEvent).validate_python,
        {
            "input_tokens": 500,
            "output_tokens": 70,
            "cache_read_tokens": 128,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "model": "gpt-4.1-2025-04-14",
        },
        "resp_stream_01",
        "openai::gpt-4.1-2025-04-14",
    ),
    StreamCase(
        "gemini",
        GEMINI_EVENTS,
        genai_types.GenerateContentResponse.model_validate,
        # The last chunk's usage_metadata wins; thoughts are output.
        {
            "input_tokens": 20,
            "output_tokens": 94,
            "reasoning_tokens": 64,
            "model": "gemini-2.5-flash",
        },
        "gemini-stream-01",
        "google::gemini-2.5-flash",
    ),
]
IDS = [c.api_id for c in STREAMS]
ANTHROPIC = STREAMS[0]


class Recorder:
    """A plain ``track`` callable, safe to call from a finalizer on any thread."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, usage: dict[str, Any], **kwargs: Any) -> str:
        if self.fail is not None:
            raise self.fail
        with self.lock:
            self.calls.append((usage, kwargs))
        return str(kwargs["response_id"])

    @property
    def usages(self) -> list[dict[str, Any]]:
        return [usage for usage, _ in self.calls]


def generator(events: list[Any], fail_after: int | None = None) -> Iterator[Any]:
    for index, event in enumerate(events):
        if index == fail_after:
            raise ConnectionResetError("peer went away")
        yield event


@pytest.mark.parametrize("sdk", [True, False], ids=["sdk", "dict"])
@pytest.mark.parametrize("case", STREAMS, ids=IDS)
def test_every_event_passes_unchanged_and_usage_is_tracked_once_at_the_end(
    case: StreamCase, sdk: bool
) -> None:
    events = case.sdk_events() if sdk else case.raw
    track = Recorder()
    stream = track_llm_stream_usage(track, case.api_id, generator(events), context={"k": "v"})
    seen = []
    for event in stream:
        seen.append(event)
        assert track.calls == []  # nothing before the end
    assert all(a is b for a, b in zip(seen, events, strict=True))
    [(usage, kwargs)] = track.calls
    assert isinstance(kwargs.pop("timestamp"), datetime)
    assert (usage, kwargs) == (
        case.expected,
        {
            "service_id": case.service_id,
            "config_id": "llm",
            "client_customer_key": None,
            "context": {"k": "v"},
            "response_id": case.response_id,
        },
    )
    assert stream.usage == case.expected
    assert stream.response_id == case.response_id
    stream.close()
    del stream
    gc.collect()
    assert len(track.calls) == 1


def test_stream_records_carry_the_vendors_creation_time() -> None:
    created = {
        "openai_chat": datetime(2025, 3, 10, 1, 25, 52, tzinfo=timezone.utc),
        "openai_responses": datetime(2025, 3, 8, 23, 29, 2, tzinfo=timezone.utc),
        "gemini": datetime(2025, 9, 28, 21, 16, 4, 811473, tzinfo=timezone.utc),
    }
    for case in STREAMS[1:]:
        track = Recorder()
        list(track_llm_stream_usage(track, case.api_id, case.sdk_events()))
        assert track.calls[0][1]["timestamp"] == created[case.api_id], case.api_id


def test_gemini_rest_json_stream_in_camel_case() -> None:
    camel = [
        {
            "responseId": "g-1",
            "modelVersion": "models/gemini-2.0-flash",
            "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": n},
        }
        for n in (1, 4, 9)
    ]
    track = Recorder()
    list(track_llm_stream_usage(track, "gemini", camel))
    assert track.usages == [{"input_tokens": 8, "output_tokens": 9, "model": "gemini-2.0-flash"}]
    assert track.calls[0][1]["service_id"] == "google::gemini-2.0-flash"


def test_anthropic_stream_records_the_250_output_tokens_of_message_delta_not_1() -> None:
    """The SDK this project replaces recorded message_start's placeholder (1 token)."""
    track = Recorder()
    for _ in track_llm_stream_usage(track, "anthropic", ANTHROPIC.sdk_events()):
        pass
    [usage] = track.usages
    assert usage["output_tokens"] == 250
    assert usage["input_tokens"] == 1500


def test_anthropic_cumulative_delta_counts_replace_earlier_ones() -> None:
    events = ANTHROPIC.sdk_events()
    delta = dict(ANTHROPIC_EVENTS[5])
    server_tool_round = {
        **delta,
        "usage": {"output_tokens": 90, "input_tokens": 420, "cache_read_input_tokens": 1000},
    }
    events[5:5] = [ANTHROPIC.build(server_tool_round)]
    track = Recorder()
    list(track_llm_stream_usage(track, "anthropic", events))
    # Input 420 (latest cumulative) + 1000 read + 200 written; output from the last delta.
    assert track.usages[0]["input_tokens"] == 1620
    assert track.usages[0]["output_tokens"] == 250


def test_response_id_is_known_from_the_first_event() -> None:
    stream = track_llm_stream_usage(Recorder(), "anthropic", ANTHROPIC.sdk_events())
    assert stream.response_id is None
    assert stream.usage is None
    next(stream)
    assert stream.response_id == "msg_stream_01"
    assert stream.usage is not None
    assert stream.usage["output_tokens"] == 1  # the placeholder, until message_delta
    stream.close()


def test_closing_early_tracks_what_was_seen_once_and_closes_the_wrapped_stream() -> None:
    track = Recorder()
    inner = generator(ANTHROPIC.sdk_events())
    stream = track_llm_stream_usage(track, "anthropic", inner)
    next(stream)
    next(stream)
    stream.close()
    assert inspect.getgeneratorstate(inner) == inspect.GEN_CLOSED
    assert track.usages == [
        {
            "input_tokens": 1500,
            "output_tokens": 1,
            "cache_read_tokens": 1000,
            "cache_write_tokens": 200,
            "model": ANTHROPIC_MODEL,
        }
    ]
    stream.close()
    assert len(track.calls) == 1


def test_leaving_a_with_block_early_tracks_once() -> None:
    track = Recorder()
    with track_llm_stream_usage(track, "gemini", GEMINI_EVENTS) as stream:
        for event in stream:
            if event is GEMINI_EVENTS[1]:
                break
    assert track.usages == [{"input_tokens": 20, "output_tokens": 12, "model": "gemini-2.5-flash"}]


def test_an_abandoned_stream_is_tracked_when_collected() -> None:
    track = Recorder()
    stream = track_llm_stream_usage(track, "openai_chat", generator(CHAT_EVENTS))
    for _ in range(3):
        next(stream)  # the usage chunk was the last event, but the end was never reached
    assert track.calls == []
    del stream
    gc.collect()
    assert track.usages == [STREAMS[1].expected]


def test_an_abandoned_stream_without_usage_logs_and_tracks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    track = Recorder()
    stream = track_llm_stream_usage(track, "openai_chat", generator(CHAT_EVENTS))
    next(stream)
    with caplog.at_level(logging.WARNING, logger="aicm_manual.llm"):
        del stream
        gc.collect()
    assert track.calls == []
    assert "openai_chat stream chatcmpl-stream-01 abandoned before reporting usage" in caplog.text


def test_a_failing_track_in_a_finalizer_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pytest turns an exception escaping a finalizer into an error; none must escape."""
    stream = track_llm_stream_usage(
        Recorder(fail=TrackerClosedError("closed")), "anthropic", ANTHROPIC.sdk_events()
    )
    next(stream)
    with caplog.at_level(logging.ERROR, logger="aicm_manual.llm"):
        del stream
        gc.collect()
    assert "anthropic stream msg_stream_01 (abandoned): usage could not be tracked" in caplog.text


def test_an_error_mid_stream_tracks_what_was_seen_once_and_is_reraised() -> None:
    track = Recorder()
    stream = track_llm_stream_usage(track, "anthropic", generator(ANTHROPIC.sdk_events(), 3))
    got: list[Any] = []
    with pytest.raises(ConnectionResetError, match="peer went away"):
        got.extend(stream)
    assert len(got) == 3
    assert [u["output_tokens"] for u in track.usages] == [1]
    stream.close()
    del stream
    gc.collect()
    assert len(track.calls) == 1


def test_a_failing_track_never_hides_the_stream_error(caplog: pytest.LogCaptureFixture) -> None:
    stream = track_llm_stream_usage(
        Recorder(fail=TrackerClosedError("closed")),
        "anthropic",
        generator(ANTHROPIC.sdk_events(), 2),
    )
    with pytest.raises(ConnectionResetError), caplog.at_level(logging.ERROR):
        list(stream)
    assert "(failed): usage could not be tracked" in caplog.text


def test_a_failing_track_at_the_end_raises() -> None:
    stream = track_llm_stream_usage(
        Recorder(fail=TrackerClosedError("closed")), "gemini", GEMINI_EVENTS
    )
    with pytest.raises(TrackerClosedError):
        list(stream)


def test_an_openai_chat_stream_without_include_usage_fails_loudly_at_the_end() -> None:
    no_usage = [openai.types.chat.ChatCompletionChunk.model_validate(c) for c in CHAT_EVENTS[:2]]
    track = Recorder()
    stream = track_llm_stream_usage(track, "openai_chat", no_usage)
    assert next(stream) is no_usage[0]
    assert next(stream) is no_usage[1]
    with pytest.raises(LlmUsageError, match=r'stream_options=\{"include_usage": True\}'):
        next(stream)
    assert track.calls == []


def test_closing_before_any_usage_warns_and_tracks_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    track = Recorder()
    stream = track_llm_stream_usage(track, "openai_responses", RESPONSES_EVENTS)
    next(stream)
    with caplog.at_level(logging.WARNING, logger="aicm_manual.llm"):
        stream.close()
    assert track.calls == []
    assert "openai_responses stream resp_stream_01 closed before reporting usage" in caplog.text


def test_incomplete_responses_are_billed_too() -> None:
    events = [dict(e) for e in RESPONSES_EVENTS]
    done = events[2]
    done["type"] = "response.incomplete"
    done["response"] = {**done["response"], "status": "incomplete"}
    track = Recorder()
    list(track_llm_stream_usage(track, "openai_responses", events))
    assert track.usages[0]["output_tokens"] == 70


def test_other_attributes_are_the_wrapped_streams() -> None:
    class VendorStream:
        response = "the http response"

        def __init__(self) -> None:
            self.closed = False

        def __iter__(self) -> Iterator[Any]:
            return iter(CHAT_EVENTS)

        def close(self) -> None:
            self.closed = True

    inner = VendorStream()
    stream = track_llm_stream_usage(Recorder(), "openai_chat", inner)
    assert stream.response == "the http response"
    with pytest.raises(AttributeError):
        stream.no_such_attribute  # noqa: B018
    stream.close()
    assert inner.closed
    assert "LlmStream openai_chat" in repr(stream)


def test_wrong_kind_of_stream_is_refused_with_a_pointer() -> None:
    async def agen() -> AsyncIterator[Any]:
        yield 1

    with pytest.raises(LlmUsageError, match="track_llm_stream_usage_async"):
        track_llm_stream_usage(Recorder(), "gemini", agen())  # type: ignore[arg-type]
    with pytest.raises(LlmUsageError, match="not an async iterable"):
        track_llm_stream_usage_async(Recorder(), "gemini", [1])  # type: ignore[arg-type]
    with pytest.raises(LlmUsageError, match="unknown api_id 'claude'"):
        track_llm_stream_usage(Recorder(), "claude", [])


def test_close_racing_the_end_tracks_once() -> None:
    for _ in range(200):
        track = Recorder()
        stream = track_llm_stream_usage(track, "gemini", GEMINI_EVENTS)
        for _ in range(3):
            next(stream)
        closer = threading.Thread(target=stream.close)
        closer.start()
        with pytest.raises(StopIteration):
            next(stream)
        closer.join()
        assert len(track.calls) == 1


# --- async -------------------------------------------------------------------------------


async def agenerator(events: list[Any], fail_after: int | None = None) -> AsyncIterator[Any]:
    for index, event in enumerate(events):
        await asyncio.sleep(0)
        if index == fail_after:
            raise ConnectionResetError("peer went away")
        yield event


class AsyncRecorder(Recorder):
    async def track_async(self, usage: dict[str, Any], **kwargs: Any) -> str:
        await asyncio.sleep(0)
        return self(usage, **kwargs)


@pytest.mark.parametrize("case", STREAMS, ids=IDS)
def test_async_streams_track_once_at_the_end_with_an_async_track(case: StreamCase) -> None:
    track = AsyncRecorder()
    events = case.sdk_events()

    async def main() -> list[Any]:
        stream = track_llm_stream_usage_async(track.track_async, case.api_id, agenerator(events))
        seen = [event async for event in stream]
        assert stream.response_id == case.response_id
        return seen

    seen = asyncio.run(main())
    assert all(a is b for a, b in zip(seen, events, strict=True))
    assert track.usages == [case.expected]
    assert track.calls[0][1]["service_id"] == case.service_id


def test_async_stream_accepts_a_plain_track_and_async_with_closes_early() -> None:
    track = Recorder()

    async def main() -> None:
        inner = agenerator(ANTHROPIC.sdk_events())
        async with track_llm_stream_usage_async(track, "anthropic", inner) as stream:
            async for event in stream:
                if event.type == "content_block_start":
                    break
        assert inner.ag_frame is None  # closed
        await stream.aclose()

    asyncio.run(main())
    assert [u["output_tokens"] for u in track.usages] == [1]


def test_async_error_mid_stream_tracks_what_was_seen_and_reraises() -> None:
    track = AsyncRecorder()

    async def main() -> None:
        stream = track_llm_stream_usage_async(
            track.track_async, "anthropic", agenerator(ANTHROPIC.sdk_events(), 6)
        )
        with pytest.raises(ConnectionResetError):
            async for _ in stream:
                pass

    asyncio.run(main())
    assert [u["output_tokens"] for u in track.usages] == [250]


def test_abandoned_async_stream_inside_a_running_loop_is_tracked_by_a_task() -> None:
    track = AsyncRecorder()

    async def main() -> None:
        stream: AsyncLlmStream[Any] | None = track_llm_stream_usage_async(
            track.track_async, "anthropic", agenerator(ANTHROPIC.sdk_events())
        )
        assert stream is not None
        await stream.__anext__()
        stream = None
        gc.collect()
        for _ in range(5):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert [u["input_tokens"] for u in track.usages] == [1500]


def test_abandoned_async_stream_outside_a_loop_runs_its_track_to_completion() -> None:
    track = AsyncRecorder()
    events = ANTHROPIC.sdk_events()

    class Events:
        """An async iterable that needs no loop to be dropped (unlike an async generator)."""

        def __init__(self) -> None:
            self.items = iter(events)

        def __aiter__(self) -> Events:
            return self

        async def __anext__(self) -> Any:
            return next(self.items)

    async def start() -> AsyncLlmStream[Any]:
        stream = track_llm_stream_usage_async(track.track_async, "anthropic", Events())
        await stream.__anext__()
        return stream

    stream = asyncio.run(start())
    assert track.calls == []
    del stream
    gc.collect()
    assert [u["output_tokens"] for u in track.usages] == [1]


def test_anthropic_stream_keeps_one_hour_cache_writes_and_web_searches() -> None:
    events = [dict(e) for e in ANTHROPIC_EVENTS]
    start = {**events[0], "message": dict(events[0]["message"])}
    start["message"]["usage"] = {
        **start["message"]["usage"],
        "cache_creation": {"ephemeral_1h_input_tokens": 200, "ephemeral_5m_input_tokens": 0},
    }
    events[0] = start
    delta = dict(events[5])
    tools = {"web_search_requests": 2, "web_fetch_requests": 0}
    delta["usage"] = {**delta["usage"], "server_tool_use": tools}
    events[5] = delta
    track = Recorder()
    list(track_llm_stream_usage(track, "anthropic", [ANTHROPIC.build(e) for e in events]))
    [usage] = track.usages
    assert usage["cache_write_1h_tokens"] == 200
    assert usage["web_searches"] == 2
    assert usage["output_tokens"] == 250
